"""Serving benchmark: `python -m bench.serving [--quick] [--artifacts DIR]`.

`python -m serve` against the bare-stack baseline (bench/serving_baseline.py: the same
Starlette + uvicorn, the same JSON parsing, the same onnxruntime session, nothing else), both
running at once on loopback, driven by `wrk` (apt-get install -y wrk) with batch-1 V2 JSON
infer requests at 1 and 16 connections. Repetitions alternate the order of subject and
baseline, after a warm-up of each. Targets (issue 4): server >= 0.9x the baseline's req/s,
and p50 <= 0.5 ms at concurrency 1. Row "6 serving MLP c=1": the same at concurrency 1 for
`--model mlp:16,16` (bench/mlp_artifacts.py; target >= 0.9x). Row "6 serving two-input c=1": the
same for a two-input, two-output model brought in from torch (bench/two_input_artifacts.py), the
server's any-signature path against the bare route's several-tensor one. Row "6 serving cnn binary
b=1" (bench/serving_binary.py, issue 20): one V2 round trip with binary tensors for the CNN at batch 1
against the bare onnxruntime call (<= 1.1x), with two unjudged rows saying where the time goes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench import mlp_artifacts as mlp_bench
from bench import serving_binary
from bench import two_input_artifacts as two_input_bench
from bench._core import format_table, not_judged
from bench._server import answers, free_port, spawn, stop_server
from oneneuron import cli
from oneneuron.schema import Manifest

ROOT = Path(__file__).resolve().parents[1]
MODEL = "keras_linear"
BODY = '{"inputs":[{"name":"x","shape":[1,1],"datatype":"FP32","data":[10.0]}]}'
MLP_BODY = '{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[0.5,-1.0]}]}'


def lua(body: str) -> str:
    """The wrk script posting `body` as JSON."""
    return f"""wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
"""


LUA = lua(BODY)
RATIO_TARGET, P50_TARGET_MS = 0.9, 0.5
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@contextlib.contextmanager
def _process(args: list[str], ready_url: str, probe: str | None = None, body: str = BODY) -> Iterator[str]:
    """Run `python args...` until the block ends; yields once `ready_url` answers 200 (to a POST of
    `body` when `probe` is "post")."""
    proc = spawn(
        [sys.executable, *args],
        lambda: answers(ready_url, body if probe == "post" else None),
        " ".join(args),
    )
    try:
        yield ready_url
    finally:
        stop_server(proc)


def wrk(url: str, connections: int, seconds: float, script: Path) -> dict[str, float]:
    """One wrk run: req/s, p50 and p99 in ms."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    if re.search(r"Non-2xx or 3xx responses|Socket errors", out):
        raise RuntimeError(f"wrk saw errors against {url}:\n{out}")
    pct = {
        p: float(v) * UNITS[u] for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    }
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": pct["50"],
        "p99_ms": pct["99"],
    }


def _artifacts(given: Path | None, scratch: Path) -> Path:
    if given is not None:
        return given
    if (ROOT / "artifacts" / "manifest.json").is_file():
        return ROOT / "artifacts"
    for module in ("train.all", "export.onnx"):  # only the ONNX export is needed here
        subprocess.run(
            [sys.executable, "-m", module, "--artifacts", str(scratch)],
            cwd=ROOT,
            check=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
        )
    return scratch


def run(quick: bool = False, artifacts: Path | None = None) -> list[dict]:
    """Measure the server against the bare baseline; one dict per concurrency level (and the MLP, the
    two-input model, and the CNN's binary round trip)."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk not found; install it with: apt-get install -y wrk")
    timing = (1, 2, 1) if quick else (5, 5, 2)
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        tmp = Path(tmp)
        artifacts = _artifacts(artifacts, tmp / "artifacts")
        rows = compare(artifacts, MODEL, BODY, (1, 16), timing, tmp, "6 serving")
        mlp = mlp_bench.mlp_artifacts(tmp / "mlp", quick)
        rows += compare(mlp, mlp_bench.MODEL, MLP_BODY, (1,), timing, tmp, "6 serving MLP")
        two = two_input_bench.two_input_artifacts(tmp / "two_input")
        rows += compare(
            two, two_input_bench.MODEL, two_input_bench.BODY, (1,), timing, tmp, "6 serving two-input"
        )
        # the CNN row 4 exported in this process, if it ran (bench/architectures.py), else one here
        rows += [r.to_json() for r in serving_binary.binary_rows(tmp / "architectures", quick)]
    return rows


def compare(
    artifacts: Path, model: str, body: str, connections, timing: tuple[int, int, int], tmp: Path, label: str
) -> list[dict]:
    """`python -m serve` and the bare route on `model`, side by side, at each connection count."""
    seconds, reps, warmup = timing
    model_path = artifacts / Manifest.load(artifacts).find(model, "onnx").path
    script = tmp / f"post-{model}.lua"
    script.write_text(lua(body))
    sp, bp = free_port(), free_port()
    path = f"/v2/models/{model}/infer"
    with (
        _process(
            ["-m", "serve", "--artifacts", str(artifacts), "--port", str(sp), "--grpc-port", "0"],
            f"http://127.0.0.1:{sp}/v2/health/ready",
        ),
        _process(
            ["-m", "bench.serving_baseline", "--model", str(model_path), "--port", str(bp)],
            f"http://127.0.0.1:{bp}{path}",
            probe="post",
            body=body,
        ),
    ):
        targets = {"subject": f"http://127.0.0.1:{sp}{path}", "baseline": f"http://127.0.0.1:{bp}{path}"}
        rows = []
        for c in connections:
            for url in targets.values():
                wrk(url, c, warmup, script)
            got: dict[str, list[dict]] = {"subject": [], "baseline": []}
            for rep in range(reps):
                order = ["subject", "baseline"] if rep % 2 == 0 else ["baseline", "subject"]
                for who in order:
                    got[who].append(wrk(targets[who], c, seconds, script))
            rows.append(_row(c, got, label, model))
    return rows


def _row(c: int, got: dict[str, list[dict]], label: str = "6 serving", model: str = MODEL) -> dict:
    s_rps, b_rps = [r["rps"] for r in got["subject"]], [r["rps"] for r in got["baseline"]]
    s_med, b_med = statistics.median(s_rps), statistics.median(b_rps)
    p50 = statistics.median(r["p50_ms"] for r in got["subject"])
    p99 = statistics.median(r["p99_ms"] for r in got["subject"])
    ratio = s_med / b_med
    met = ratio >= RATIO_TARGET and (c != 1 or p50 <= P50_TARGET_MS)
    target = f">= {RATIO_TARGET}x baseline req/s" + (f", p50 <= {P50_TARGET_MS} ms" if c == 1 else "")
    return {
        "row": f"{label} c={c}",
        "subject": "python -m serve (V2 JSON infer, batch 1)" + ("" if model == MODEL else f", {model}"),
        "baseline": "bare Starlette route, same JSON parse + onnxruntime session",
        "metric": "req/s",
        "subject_values": s_rps,
        "baseline_values": b_rps,
        "subject_median": s_med,
        "baseline_median": b_med,
        "ratio": ratio,
        "p50_ms": p50,
        "p99_ms": p99,
        "baseline_p50_ms": statistics.median(r["p50_ms"] for r in got["baseline"]),
        "baseline_p99_ms": statistics.median(r["p99_ms"] for r in got["baseline"]),
        "target": target,
        "met": met,
    }


def main() -> None:
    p = cli.ArgumentParser(  # one `error: ...` line for a bad flag, as every command
        prog="python -m bench.serving",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="example:\n  python -m bench.serving --quick",
    )
    p.add_argument("--quick", action="store_true", help="1 s x 2 repetitions instead of 5 s x 5")
    p.add_argument(
        "--artifacts",
        type=Path,
        default=None,
        help="artifacts with manifest.json (default: artifacts/, else train+export into a temp dir)",
    )
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "serving.json")
    args = p.parse_args()
    rows = run(args.quick, args.artifacts)
    print(
        f"{'row':14s} {'server req/s':>13s} {'bare req/s':>11s} {'ratio':>6s} {'p50 ms':>7s} {'p99 ms':>7s}"
        f" {'bare p50':>9s}  target"
    )
    for r in rows:
        if r["metric"] != "req/s":  # the binary round trip's rows: us per call, as python -m bench shows them
            continue
        print(
            f"{r['row']:14s} {r['subject_median']:13.0f} {r['baseline_median']:11.0f} {r['ratio']:6.3f} "
            f"{r['p50_ms']:7.3f} {r['p99_ms']:7.3f} {r['baseline_p50_ms']:9.3f}  "
            + ("[quick: not judged]" if args.quick else f"[{'met' if r['met'] else 'MISSED'}] {r['target']}")
        )
    binary = [r for r in rows if r["metric"] != "req/s"]
    print(format_table(not_judged(binary) if args.quick else binary))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
