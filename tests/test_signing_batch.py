"""`python -m serve.batch --trust-key`: the signature verifies before any work (every refusal is
one error line and nothing is written), and each Dask worker checks the model bytes it receives
against the digest the signature covers."""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from oneneuron.signing import SignatureError, load_public_key, verify_dir
from serve import load
from tests.batch_helpers import read_output
from tests.conftest import run_cli
from tests.signed import CASES, damage, keras_onnx


@pytest.fixture
def job_input(tmp_path):
    x = np.random.default_rng(15).uniform(-100, 100, 3000).astype(np.float32)
    pq.write_table(pa.table({"x": x}), tmp_path / "in.parquet")
    return tmp_path / "in.parquet", x


def args_for(artifacts, key, src, out) -> list[str]:
    return ["--model", "keras_linear", "--artifacts", str(artifacts), "--trust-key", str(key),
            "--input", str(src), "--output", str(out), "--part-rows", "1000"]  # fmt: skip


def test_signed_directory_scores_and_the_manifest_names_the_key(
    signed_dir, signing_keys, job_input, tmp_path
):
    src, x = job_input
    key = signing_keys["trusted"] / "public.pem"
    result = run_cli("-m", "serve.batch", "--quiet", *args_for(signed_dir, key, src, tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    final = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    stored = keras_onnx(signed_dir).name
    assert final["model"]["signed_by"] == load_public_key(key)[1]
    assert final["model"]["sha256"] == verify_dir(signed_dir, key).digest(stored)
    want = load("keras_linear", signed_dir).predict(x.reshape(-1, 1))[:, 0]
    assert np.array_equal(read_output(tmp_path / "out")["y"].to_numpy(), want)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_refused_before_any_work_in_one_line(signed_copy, signing_keys, job_input, tmp_path, kind):
    pattern = damage(signed_copy, signing_keys, kind)
    out = tmp_path / "out"
    result = run_cli(
        "-m", "serve.batch", "--quiet", *args_for(signed_copy, signing_keys["trusted"] / "public.pem",
                                                  job_input[0], out)
    )  # fmt: skip
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and re.search(pattern, lines[0]), lines
    assert not out.exists()  # refused before the output directory was created


def test_a_private_key_or_a_missing_key_is_a_usage_error(signed_dir, signing_keys, job_input, tmp_path):
    private = run_cli("-m", "serve.batch", *args_for(signed_dir, signing_keys["trusted"] / "private.pem",
                                                     job_input[0], tmp_path / "o"))  # fmt: skip
    assert private.returncode == 2 and "is a private key; pass the public key" in private.stderr
    missing = run_cli("-m", "serve.batch", *args_for(signed_dir, tmp_path / "absent.pem", job_input[0],
                                                     tmp_path / "o"))  # fmt: skip
    assert missing.returncode == 2 and "trust key not found" in missing.stderr
    assert not (tmp_path / "o").exists()


def test_a_worker_refuses_bytes_that_are_not_the_signed_model(signed_dir, signing_keys, job_input, tmp_path):
    """What each Dask worker runs before its first partition (serve.batch.cluster.worker_model)."""
    from serve.batch import cluster
    from serve.batch.__main__ import build_parser, make_job

    key = signing_keys["trusted"] / "public.pem"
    job, _ = make_job(build_parser().parse_args(args_for(signed_dir, key, job_input[0], tmp_path / "out")))
    assert job.signed_by == load_public_key(key)[1]
    good = keras_onnx(signed_dir).read_bytes()
    tampered = good[:-1] + bytes([good[-1] ^ 0x01])  # still a loadable model, not the signed one
    cluster._SESSIONS.clear()
    with pytest.raises(
        SignatureError, match=r"hash to [0-9a-f]{12}, not the digest [0-9a-f]{12} signed by key"
    ):
        cluster.worker_model(tampered, job)
    assert cluster._SESSIONS == {}
    assert cluster.worker_model(good, job).predict(10.0).shape == (1, 1)


def test_on_a_local_cluster_the_signed_job_equals_the_local_one(
    signed_dir, signing_keys, job_input, tmp_path
):
    key = signing_keys["trusted"] / "public.pem"
    local = run_cli("-m", "serve.batch", "--quiet", *args_for(signed_dir, key, job_input[0], tmp_path / "a"))
    dask = run_cli("-m", "serve.batch", "--quiet", *args_for(signed_dir, key, job_input[0], tmp_path / "b"),
                   "--workers", "1")  # fmt: skip
    assert local.returncode == 0 and dask.returncode == 0, dask.stderr
    assert read_output(tmp_path / "b").equals(read_output(tmp_path / "a"))
    manifests = [json.loads((tmp_path / d / "_manifest.json").read_text()) for d in "ab"]
    assert manifests[0]["model"] == manifests[1]["model"] and len(manifests[0]["parts"]) == 3
