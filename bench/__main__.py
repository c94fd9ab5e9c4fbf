"""Run the benchmark suite: `python -m bench [--quick] [--only 1,3] [--out FILE]`.

Prints a markdown table (the README "Performance" section shows the latest) and writes the
rows with the machine's facts to `bench/results/latest.json`.
"""

from __future__ import annotations

import datetime as dt
import importlib
import importlib.util
import logging
import sys
import tempfile
from pathlib import Path

from bench._core import ROOT, add_stats, format_table, load_average, machine, not_judged
from oneneuron import cli
from oneneuron.fsio import atomic_write_json

logger = logging.getLogger(__name__)

# row number -> module; rows 1-2 share one module and also produce the artifacts rows 3-8 use.
SUITES = {
    "1,2": "bench.pipeline",
    "3": "bench.coldstart",
    "4": "bench.latency",
    "5": "bench.throughput",
    "6": "bench.serving",
    "7,8": "bench.batch",
    "9": "bench.optimize",
}
SELF_CONTAINED = {"9"}  # rows that build their own models (no article artifacts needed)


def run_suite(quick: bool, only: set[str] | None, artifacts: Path) -> list[dict]:
    rows: list[dict] = []
    from bench import pipeline

    if only is None or only & {"1", "2"}:
        logger.info("rows 1-2: training and main job (whole processes)")
        for row in pipeline.run(quick=quick, artifacts=artifacts):  # also writes the artifacts
            if only is None or row.row.split()[0] in only:
                rows.append(row.to_json())
    elif only - SELF_CONTAINED:
        pipeline.make_artifacts(artifacts)
    for key, module in list(SUITES.items())[1:]:
        if only is not None and not only & set(key.split(",")):
            continue
        if importlib.util.find_spec(module) is None:
            logger.warning("row %s: %s is not installed here; skipped", key, module)
            continue
        logger.info("row %s: %s", key, module)
        mod = importlib.import_module(module)
        result = mod.run(artifacts=artifacts, quick=quick)
        rows += [add_stats(r) if isinstance(r, dict) else r.to_json() for r in result]  # bench.serving: dicts
    return rows


def main() -> None:
    p = cli.parser(
        "Run the benchmarks side by side and print the table.", "python -m bench --quick", command="bench"
    )
    p.add_argument("--quick", action="store_true", help="reduced version (under a minute or two)")
    p.add_argument("--only", default=None, help="comma-separated row numbers, e.g. 3,4")
    p.add_argument("--out", type=Path, default=ROOT / "bench/results/latest.json", help="JSON output file")

    def _main(args) -> int:
        only = set(args.only.split(",")) if args.only else None
        load_before = load_average()
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            rows = run_suite(args.quick, only, Path(tmp) / "artifacts")
        if args.quick:
            rows = not_judged(rows)
        facts = {**machine(), "load_average_before": load_before}
        result = {
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "command": "python -m bench" + (" --quick" if args.quick else ""),
            "machine": facts,
            "rows": rows,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.out, result)
        print(
            f"machine: {facts['cpu']}, {facts['cores']} cores, Python {facts['python']}; load average "
            f"(1/5/15 min) {' '.join(map(str, load_before))} before, "
            f"{' '.join(map(str, facts['load_average']))} after"
        )
        if args.quick:
            print("--quick: shortened runs, figures reported but no target judged (quick: not judged)")
        print(format_table(rows))
        print(f"wrote {args.out}")
        return 0

    cli.run(_main, p.parse_args())


if __name__ == "__main__":
    sys.exit(main())
