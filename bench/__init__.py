"""Benchmarks: `python -m bench [--quick]` (or `make bench`).

Each benchmark runs its subject and its baseline in the same run, interleaved and repeated
after a warm-up, and reports min / median / max and the ratio of medians. Results print as a
table and are written to `bench/results/latest.json` with the machine's facts. Not tests: no
timing assertion lives in `make test` (tests/test_bench.py only checks every row is produced).
"""
