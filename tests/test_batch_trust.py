"""`python -m serve.batch` against a hostile neighbour (issue 19): the Dask cluster of a job admits
no other client, what was verified is what runs, the resume state cannot be turned against the
job (planted symlinks, FIFOs, /dev/zero) and input columns are converted only when lossless."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from oneneuron.errors import InputError, IntegrityError
from serve.batch import parts
from serve.batch.__main__ import build_parser, make_job
from tests.batch_helpers import one_input_model_bytes, one_input_model_dir, read_output
from tests.conftest import run_cli


def batch(*args: str) -> object:
    return run_cli("-m", "serve.batch", "--quiet", *args, timeout=120)


@pytest.fixture(scope="module")
def one(tmp_path_factory) -> Path:
    """Artifacts with model `one`: x float32 [N, 1] -> y = 2x (with its self-test)."""
    return one_input_model_dir(tmp_path_factory.mktemp("one"))


def parquet(path: Path, **columns) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


def job_args(model_dir: Path, src: Path, out: Path, *more: str) -> list[str]:
    return ["--model", "one", "--artifacts", str(model_dir), "--input", str(src), "--output", str(out), *more]


# -- the cluster -------------------------------------------------------------------------------


PROBE = """
import gc, json, os, sys
from distributed import Client, Security

address, ca, cert, key = sys.argv[1:5]
seen = {}
def attempt(name, where, security):
    try:
        client = Client(where, security=security, timeout=5)
    except Exception as exc:
        seen[name] = f"refused ({type(exc).__name__})"
        gc.collect()  # the half-made client's __del__ now, not racing the next client's loop
        return
    try:
        seen[name] = f"CONNECTED, ran in pid {client.submit(os.getpid, pure=False).result(timeout=10)}"
    finally:
        client.close()
attempt("plain tcp", address.replace("tls://", "tcp://"), None)
attempt("another CA", address, Security.temporary())
attempt("no certificate", address, None)
attempt("the job's own certificate", address, Security(tls_ca_file=ca, tls_client_cert=cert,
                                                        tls_client_key=key, require_encryption=True))
print(json.dumps(seen))
"""


def test_no_foreign_client_reaches_the_scheduler_of_a_workers_job(one, tmp_path, monkeypatch):
    """While a `--workers 2` job runs, another process connecting as a plain-TCP client, a TLS
    client of another CA or one without a certificate is refused; the same process with the job's
    own certificate gets in (the probe is live)."""
    from serve.batch.cluster import ClusterConfig, run_cluster

    scratch = tmp_path / "tmp"  # the workers' temporary directory: no copy of the model in it
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    x = np.arange(40, dtype=np.float32)
    src, out = parquet(tmp_path / "in.parquet", x=x), tmp_path / "out"
    job, verified = make_job(build_parser().parse_args(job_args(one, src, out, "--part-rows", "10")))
    seen: dict[str, str] = {}

    def probe(address: str, security) -> None:  # called once the workers are up, before any task
        assert address.startswith("tls://127.0.0.1:")
        pems = []
        for name, pem in (("ca", security.tls_ca_file), ("cert", security.tls_client_cert),
                          ("key", security.tls_client_key)):  # fmt: skip
            pems.append(tmp_path / f"{name}.pem")
            pems[-1].write_text(pem)
        result = subprocess.run([sys.executable, "-c", PROBE, address, *map(str, pems)], capture_output=True,
                                text=True, timeout=90)  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
        seen.update(json.loads(result.stdout.strip().splitlines()[-1]))

    with parts.locked(out, [str(src)]):
        parts.prepare(out, job.identity(), [str(src)], False, False)
        final = run_cluster(job, verified.data, ClusterConfig(workers=2), quiet=True, on_ready=probe)
    assert seen["the job's own certificate"].startswith("CONNECTED"), seen
    for name in ("plain tcp", "another CA", "no certificate"):
        assert seen[name].startswith("refused"), seen
    assert final["rows_out"] == 40 and len(final["parts"]) == 4
    assert np.array_equal(read_output(out)["y"].to_numpy(), 2 * x)
    assert not list(scratch.glob("serve-batch-*"))


def test_a_worker_builds_its_session_from_bytes_and_writes_no_copy(one, tmp_path, monkeypatch):
    from serve.batch import cluster

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    src = parquet(tmp_path / "in.parquet", x=np.ones(3, dtype=np.float32))
    job, verified = make_job(build_parser().parse_args(job_args(one, src, tmp_path / "out")))
    monkeypatch.setattr(cluster, "_SESSIONS", {})
    assert cluster.worker_model(verified.data, job).predict(10.0)[0, 0] == 20.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet"]


def test_the_local_clusters_http_ports_answer_nothing():
    """The scheduler's HTTP port (plain HTTP, open even without a dashboard) serves no page."""
    import urllib.error
    import urllib.request

    from serve.batch.cluster import ClusterConfig, connect

    client, cluster, _ = connect(ClusterConfig(workers=1))
    try:
        base = cluster.dashboard_link.rsplit("/", 1)[0]
        assert base.startswith("http://127.0.0.1:")
        for page in ("/info/main/workers.html", "/metrics", "/json/counts.json", "/health"):
            with pytest.raises(urllib.error.HTTPError, match="404"):
                urllib.request.urlopen(base + page, timeout=5)
    finally:
        client.close()
        cluster.close()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"tls_cert": "c.pem"}, "--tls-cert without --tls-ca-file, --tls-key: give all three"),
        ({"tls_ca_file": "a", "tls_key": "k"}, "--tls-ca-file, --tls-key without --tls-cert"),
        ({"scheduler": "tls://h:1"}, "a TLS scheduler needs --scheduler tls://HOST:PORT with --tls-ca-file"),
        ({"scheduler": "tcp://h:1", "tls_ca_file": "a", "tls_cert": "c", "tls_key": "k"}, "not a tls://"),
        ({"workers": 2, "tls_ca_file": "a", "tls_cert": "c", "tls_key": "k"}, "throwaway certificates"),
    ],
)
def test_tls_flags_go_together(flags, message):
    from serve.batch.cluster import ClusterConfig

    with pytest.raises(InputError, match=message.replace("?", r"\?")):
        ClusterConfig(**flags)


def test_a_plain_tcp_scheduler_is_used_with_a_warning_saying_what_it_allows(caplog):
    from serve.batch.cluster import ClusterConfig

    with caplog.at_level(logging.WARNING, logger="serve.batch.cluster"):
        assert ClusterConfig("tcp://127.0.0.1:8786").security() is None
    (line,) = [r.getMessage() for r in caplog.records]
    assert "any local or network process that reaches it can run code as the workers' user" in line
    assert "--tls-ca-file" in line and "\n" not in line


def test_a_partial_tls_flag_set_is_one_error_line(one, tmp_path):
    src = parquet(tmp_path / "in.parquet", x=np.ones(3, dtype=np.float32))
    result = batch(
        *job_args(one, src, tmp_path / "out", "--scheduler", "tls://127.0.0.1:1", "--tls-key", "k")
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: --tls-key without --tls-ca-file, --tls-cert: give all three of --tls-ca-file, --tls-cert, "
        "--tls-key (for a tls:// --scheduler) or none"
    )
    assert not (tmp_path / "out").exists()


def test_a_tls_scheduler_with_the_clusters_ca_and_a_client_certificate(one, tmp_path):
    """`--scheduler tls://` end to end: a one-worker TLS cluster whose PEM files the job is given."""
    from distributed import LocalCluster, Security

    security = Security.temporary()
    pems = {}
    for flag, pem in (("ca", security.tls_ca_file), ("cert", security.tls_client_cert),
                      ("key", security.tls_client_key)):  # fmt: skip
        pems[flag] = tmp_path / f"{flag}.pem"
        pems[flag].write_text(pem)
    x = np.arange(5, dtype=np.float32)
    src = parquet(tmp_path / "in.parquet", x=x)
    with LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address=None,
                      security=security, silence_logs=logging.ERROR) as cluster:  # fmt: skip
        result = batch(*job_args(one, src, tmp_path / "out", "--scheduler", cluster.scheduler_address,
                                 "--tls-ca-file", str(pems["ca"]), "--tls-cert", str(pems["cert"]),
                                 "--tls-key", str(pems["key"])))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr
    assert np.array_equal(read_output(tmp_path / "out")["y"].to_numpy(), 2 * x)


# -- what is verified is what runs -------------------------------------------------------------


SWAPPER = """
import os, sys
stored, files = sys.argv[1], sys.argv[2:]
data, flip = [open(f, "rb").read() for f in files], 0
while True:
    flip ^= 1
    with open(f"{files[flip]}.swap", "wb") as f:  # beside the sources: the model directory stays as signed
        f.write(data[flip])
    os.replace(f"{files[flip]}.swap", stored)
"""


@pytest.mark.parametrize("signed", [False, True], ids=["sha256", "trust-key"])
def test_a_model_swapped_while_the_job_opens_it_never_runs(tmp_path, signing_keys, signed):
    """A swapper process flips the stored file between the genuine model (y = 2x) and an evil one
    (y = -7x, with a self-test of its own) while the job's model-opening function runs in a loop
    (1,000 opens or 15 s). A process, not a thread: it flips whatever this one holds (the GIL).
    The code before issue 19 (hash, then onnxruntime opens the path) ran evil 45 times in 1,000."""
    from export.sign import sign_artifacts
    from serve.batch.verify import open_job_model

    art = one_input_model_dir(tmp_path / "art")
    stored, key = art / "one.onnx", None
    if signed:
        sign_artifacts(art, signing_keys["trusted"] / "private.pem")
        key = signing_keys["trusted"] / "public.pem"
        assert open_job_model("one", art, key, 1).signed_by is not None
    (tmp_path / "genuine").write_bytes(stored.read_bytes())
    (tmp_path / "evil").write_bytes(one_input_model_bytes(scale=-7.0))
    swapper = subprocess.Popen([sys.executable, "-c", SWAPPER, str(stored), str(tmp_path / "genuine"),
                                str(tmp_path / "evil")])  # fmt: skip
    outcomes = {"genuine": 0, "refused": 0, "evil": 0}
    deadline = time.monotonic() + 15
    try:
        for _ in range(1000):
            if time.monotonic() > deadline:
                break
            try:
                model = open_job_model("one", art, key, 1).model
            except (IntegrityError, OSError):  # SignatureError is an IntegrityError
                outcomes["refused"] += 1
                continue
            y = float(model.predict(10.0)[0, 0])
            outcomes["genuine" if y == 20.0 else "evil"] += 1
    finally:
        swapper.kill()
        swapper.wait()
    assert outcomes["evil"] == 0, outcomes
    assert outcomes["genuine"] > 0 and outcomes["refused"] > 0, outcomes  # it did race


# -- resume state --------------------------------------------------------------------------------


def committed_output(tmp_path: Path) -> Path:
    """An output directory with part 0 of file 0 committed (and its manifest)."""
    out = tmp_path / "out"
    parts.prepare(out, {"identity": 1}, [], False, False)
    writer = parts.open_part(out, 0, 0, "parquet")
    writer.write(pa.table({"y": [1.0, 2.0]}))
    parts.commit_part(out, writer, 0, 0, "in.parquet", 0, 2, [])
    return out


def test_a_symlink_planted_at_a_part_manifests_temporary_or_final_name_is_not_followed(tmp_path):
    out = tmp_path / "out"
    parts.prepare(out, {"identity": 1}, [], False, False)
    victims = [tmp_path / "victim0", tmp_path / "victim1"]
    for v in victims:
        v.write_text("precious")
    # the old predictable temporary name (name + PID) and the final name, both planted
    os.symlink(victims[0], out / "_parts" / f".part-00000-0000000.json.{os.getpid()}.tmp")
    os.symlink(victims[1], out / "_parts" / "part-00000-0000000.json")
    writer = parts.open_part(out, 0, 0, "parquet")
    writer.write(pa.table({"y": [1.0]}))
    meta = parts.commit_part(out, writer, 0, 0, "in.parquet", 0, 1, [])
    assert [v.read_text() for v in victims] == ["precious", "precious"]
    manifest = out / "_parts" / "part-00000-0000000.json"
    assert not manifest.is_symlink() and json.loads(manifest.read_text()) == meta


def fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def dev_zero(path: Path) -> None:
    path.unlink()
    os.symlink("/dev/zero", path)


def _release(path: Path) -> None:
    """Unblock a reader stuck opening a FIFO (only the old code gets stuck)."""
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


@pytest.mark.parametrize("make", [fifo, dev_zero], ids=["fifo", "dev-zero"])
@pytest.mark.parametrize("which", ["manifest", "part"])
def test_a_fifo_or_dev_zero_in_the_resume_state_is_refused_within_a_second(tmp_path, which, make):
    out = committed_output(tmp_path)
    target = out / ("_parts/part-00000-0000000.json" if which == "manifest" else "part-00000-0000000.parquet")
    make(target)
    result: dict[str, object] = {}

    def check() -> None:
        try:
            result["done"] = parts.done(out, 0, 0, "parquet")
        except Exception as exc:  # recorded, asserted below
            result["error"] = exc

    thread = threading.Thread(target=check, daemon=True)
    thread.start()
    thread.join(1.0)
    if thread.is_alive():
        _release(target)
    assert not thread.is_alive(), f"{which} as {make.__name__}: still reading after 1 s"
    assert isinstance(result.get("error"), IntegrityError), result
    assert "part-00000-0000000" in str(result["error"])
    with pytest.raises(InputError, match="part-00000-0000000"):
        parts.prepare(out, {"identity": 1}, [], True, False)  # --resume: refused before any work


def test_resume_with_a_fifo_part_manifest_is_one_error_line(one, tmp_path):
    src = parquet(tmp_path / "in.parquet", x=np.arange(30, dtype=np.float32))
    out = tmp_path / "out"
    assert batch(*job_args(one, src, out, "--part-rows", "10")).returncode == 0
    fifo(out / "_parts" / "part-00000-0000001.json")
    start = time.monotonic()
    result = batch(*job_args(one, src, out, "--part-rows", "10", "--resume"))
    assert result.returncode == 2 and time.monotonic() - start < 60
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: --output {out}: holds part-00000-0000001.json (a FIFO")


def test_a_symlinked_output_creates_nothing_in_its_target(one, tmp_path):
    src = parquet(tmp_path / "in.parquet", x=np.ones(3, dtype=np.float32))
    target, link = tmp_path / "target", tmp_path / "link"
    target.mkdir()
    link.symlink_to(target)
    result = batch(*job_args(one, src, link))
    assert result.returncode == 2 and "is a symlink; pass the real directory" in result.stderr
    assert list(target.iterdir()) == []


# -- input columns ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_a_duplicate_column_is_one_error_naming_it_and_the_file(one, tmp_path, kind):
    src = tmp_path / f"in.{kind}"
    if kind == "csv":
        src.write_text("x,x\n1,2\n")
    else:
        pq.write_table(pa.Table.from_arrays([pa.array([1.0]), pa.array([2.0])], names=["x", "x"]), src)
    result = batch(*job_args(one, src, tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {src}: column 'x' appears 2 times; give each column a unique name (rename or drop the "
        "copies) and run the job again"
    )
    assert not (tmp_path / "out").exists()


def test_a_string_parquet_column_is_refused_with_the_fix(one, tmp_path):
    src = parquet(tmp_path / "in.parquet", x=pa.array(["1.5", "2"]))
    result = batch(*job_args(one, src, tmp_path / "out"))
    assert result.returncode == 2
    assert f"error: {src}: column 'x' is a string column; model input 'x' takes float32" in result.stderr
    assert not (tmp_path / "out").exists()


def test_an_int64_a_float32_input_cannot_hold_exactly_is_refused_with_column_value_and_fix(one, tmp_path):
    src = parquet(tmp_path / "in.parquet", x=pa.array([3, 2**25, 2**24 + 1], pa.int64()))
    result = batch(*job_args(one, src, tmp_path / "out"))
    assert result.returncode == 2
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: {src}: row 2 (0-based data row), column 'x': integer 16777217 is not ")
    assert "float32" in line and "export the model with a float64 or int64 input" in line


def test_lossless_int64_and_bool_columns_feed_a_float32_input(one, tmp_path):
    ints = parquet(tmp_path / "ints.parquet", x=pa.array([3, -(2**24), 2**25], pa.int64()))
    assert batch(*job_args(one, ints, tmp_path / "a")).returncode == 0
    assert read_output(tmp_path / "a")["y"].to_pylist() == [6.0, -(2.0**25), 2.0**26]
    bools = parquet(tmp_path / "bools.parquet", x=pa.array([True, False]))
    assert batch(*job_args(one, bools, tmp_path / "b")).returncode == 0
    assert read_output(tmp_path / "b")["y"].to_pylist() == [2.0, 0.0]


@pytest.mark.parametrize(
    ("dtype", "column", "want"),
    [
        ("bool", pa.array([True, False, True]), [True, False, True]),
        ("int64", pa.array([2**53 + 1, None, -(2**62) - 3], pa.int64()), [2**53 + 1, -(2**62) - 3]),
        ("int64", "csv", [2**53 + 1, -(2**62) - 3]),
    ],
    ids=["bool", "int64-with-a-null", "int64-csv-text"],
)
def test_columns_feed_an_input_of_their_own_dtype_exactly(tmp_path, dtype, column, want):
    art = one_input_model_dir(tmp_path / "art", dtype, scale=None)  # y = x, of `dtype`
    if isinstance(column, str):
        src = tmp_path / "in.csv"
        src.write_text(f"x\n{2**53 + 1}\n{-(2**62) - 3}\n")
    else:
        src = parquet(tmp_path / "in.parquet", x=column)
    result = batch(*job_args(art, src, tmp_path / "out", "--on-error", "skip"))
    assert result.returncode == 0, result.stderr
    assert read_output(tmp_path / "out")["y"].to_pylist() == want


def test_overwrite_removes_a_fifo_in_the_state_without_reading_it(tmp_path):
    out = committed_output(tmp_path)
    fifo(out / "_parts" / "part-00000-0000000.json")
    start = time.monotonic()
    parts.prepare(out, {"identity": 2}, [], False, True)  # --overwrite
    assert time.monotonic() - start < 1 and sorted(p.name for p in out.iterdir()) == ["_job.json", "_parts"]
