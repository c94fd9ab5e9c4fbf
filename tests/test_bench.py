"""Smoke test of the benchmark suite: `--quick` produces every row. No timing assertions."""

import json
import shutil

import numpy as np
import pytest

from tests.conftest import run_cli


def test_quick_bench_produces_every_row(tmp_path):
    out = tmp_path / "bench.json"
    result = run_cli("-m", "bench", "--quick", "--out", str(out), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = {r["row"].split()[0] for r in report["rows"]}
    assert rows == {"1", "2", "3", "4", "5", "6", "7", "8", "9"}
    for r in report["rows"]:
        assert r["subject_values"] and r["baseline_values"] and r["ratio"] > 0
    assert report["machine"]["cores"] >= 1 and "onnxruntime" in report["machine"]["versions"]
    assert "| 5 throughput |" in result.stdout and "| 7 batch |" in result.stdout
    # --quick shortens every run (50 epochs, fewer repetitions): figures, but no target judged
    assert all(r["met"] is None and r["judged"] is False for r in report["rows"])
    table = [line for line in result.stdout.splitlines() if line.startswith("| ")][1:]
    assert len(table) == len(report["rows"]) and all(line.endswith("| quick: not judged |") for line in table)
    assert "load average" in result.stdout and len(report["machine"]["load_average"]) == 3


def test_optimize_rows_at_tiny_width(tmp_path):
    """Row 9's code path (bench/optimize.py) end to end at tiny widths: both models built with torch,
    brought in with export_byom, optimized with export.optimize (int8 and fp16), every row measured
    with its target. The figures are not judged (tiny widths are where int8 does not pay)."""
    from bench import optimize

    rows = [r.to_json() for r in optimize.run(tmp_path / "artifacts", quick=True)]
    names = [r["row"] for r in rows]
    for tag, shapes in (
        ("bert-32x2", ["b=1 s=32", "b=8 s=32", "b=1 s=64", "b=8 s=64"]),
        ("resnet18x0.125-32px", ["b=1", "b=8"]),
    ):
        assert [n for n in names if n.startswith(f"9 optimize {tag} ")] == [
            f"9 optimize {tag} {s}" for s in [*shapes, "size", "top-1", "fp16 size"]
        ]
    by = {r["row"]: r for r in rows}
    targets = {what: by[f"9 optimize bert-32x2 {what}"]["target"] for what in ("b=8 s=64", "size", "top-1")}
    assert targets == {"b=8 s=64": "<= 0.5x", "size": "<= 0.3x", "top-1": ">= 0.99"}
    assert by["9 optimize resnet18x0.125-32px fp16 size"]["target"] == "<= 0.55x"
    assert all(r["ratio"] > 0 and r["met"] in (True, False) for r in rows)
    size = by["9 optimize bert-32x2 size"]
    assert 0 < size["ratio"] < 0.6 and by["9 optimize bert-32x2 fp16 size"]["ratio"] < 0.8
    top1 = by["9 optimize resnet18x0.125-32px top-1"]
    assert 0 < top1["ratio"] <= 1 and top1["higher_is_better"] and "held-out rows" in top1["subject"]
    assert top1["extra"]["parent_distinct_classes"] >= 1
    # the cache of brought-in models is reused by a second run (no second build)
    stamp = tmp_path / "real_width" / "widths.json"
    assert stamp.is_file() and (tmp_path / "real_width" / "artifacts" / "manifest.json").is_file()


def test_architecture_rows_at_quick_sizes(architectures_dir):
    """Issue 20's rows (bench/latency.py `architecture_rows`, bench/serving_binary.py): the loader's
    `run` against a bare session on the CNN and the transformer at batch 1 and 8, and a real
    `python -m serve` answering V2 binary-tensor requests for the CNN, each with its target, on the
    suite's own exports (bench/architectures.py builds them for both). No timing assertions."""
    from bench import latency, serving_binary

    artifacts = architectures_dir / "artifacts"
    rows = [r.to_json() for r in latency.architecture_rows(artifacts, quick=True)]
    assert [r["row"] for r in rows] == [
        "4 latency cnn b=1",
        "4 latency cnn b=8",
        "4 latency transformer b=1",
        "4 latency transformer b=8",
    ]
    assert all(r["target"] == "<= 1.05x" and r["met"] in (True, False) for r in rows)
    assert "image 8x3x96x96 float32" in rows[1]["subject"] and "input_ids 8x16 int64" in rows[3]["subject"]
    assert all(len(r["subject_values"]) == len(r["baseline_values"]) == 3 for r in rows)
    assert all(r["extra"]["calls_per_sample"] >= 3 and r["ratio"] > 0 for r in rows)

    served = [r.to_json() for r in serving_binary.binary_rows(artifacts, quick=True)]
    assert [r["row"] for r in served] == [
        "6 serving cnn binary b=1",
        "6 serving cnn binary b=1 stdlib client",
        "6 serving cnn GET ready",
    ]
    assert served[0]["target"] == "<= 1.1x" and served[0]["met"] in (True, False)
    assert [r["met"] for r in served[1:]] == [None, None]  # where the time goes: not judged
    for r in served:
        assert r["subject_values"] and r["baseline_values"] and r["ratio"] > 0
        assert r["extra"]["calls_per_sample"] == serving_binary.TIMING[True][0]
        assert r["extra"]["p50_us"] > 0 and r["extra"]["baseline_p50_us"] > 0


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load: apt-get install -y nghttp2-client")
def test_h2load_grpc_frames_and_counts_only_verified_successes(exported_dir, tmp_path):
    """bench/grpc_h2load.py (make bench-peers' gRPC rows) against a real server: 50 framed
    ModelInferRequests all succeed by the server's own statistics; 50 for a model it does not serve
    are HTTP 200 to h2load (gRPC's status is in the trailers) and count as no success."""
    from bench import grpc_h2load
    from bench._server import free_port, start_server, stop_server

    x = {"x": np.array([[10.0]], np.float32)}
    good, bad = tmp_path / "good.grpc", tmp_path / "bad.grpc"
    good.write_bytes(grpc_h2load.infer_body("keras_linear", x))
    bad.write_bytes(grpc_h2load.infer_body("no_such_model", x))
    framed = good.read_bytes()  # compressed flag 0, then the message's length, 4 bytes big-endian
    assert framed[0] == 0 and int.from_bytes(framed[1:5], "big") == len(framed) - 5
    grpc_port = free_port()
    proc, http_port = start_server(exported_dir, "--grpc-port", str(grpc_port))
    try:

        def successes() -> int:
            return grpc_h2load.ours_count(http_port, "keras_linear")

        ok = grpc_h2load.measure(grpc_port, good, 2, 0, successes, requests=50)
        assert (ok["ok_2xx"], ok["counted"], ok["verified"]) == (50, 50, 50) and ok["rps"] > 0
        refused = grpc_h2load.measure(grpc_port, bad, 2, 0, successes, requests=50)
        assert refused["ok_2xx"] == 50 and refused["counted"] == 0 and refused["verified"] == 0
        assert refused["rps"] == 0
    finally:
        stop_server(proc)
