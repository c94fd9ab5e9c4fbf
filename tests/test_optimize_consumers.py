"""Every consumer handles a variant (export.optimize, `N.int8`): the Triton repository (a model
directory of its own whose config names its parent), batch scoring (`serve.batch --model N.int8`,
the final manifest naming the parent), the server's V2 model metadata, and signing (`--sign-key` in
a signed directory commits a variant the loader and the server verify with the trust key). The
variants come from tests/test_optimize.py's fixtures (an MLP and a tiny CNN, built with torch)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from oneneuron.schema import Manifest
from oneneuron.signing import SignatureError
from tests.conftest import copy_artifacts, run_cli
from tests.test_optimize import FEATURES, models, optimized  # noqa: F401 (module-scoped fixtures)

VARIANTS = {
    "mlp.int8": "int8-dynamic",
    "mlp.fp16": "fp16",
    "mlp.opt": "graph-opt",
    "cnn.int8": "int8-dynamic",
}


def _config(repo, name: str):
    """config.pbtxt of `name`, parsed with Triton's own ModelConfig protobuf."""
    return text_format.Parse((repo / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def test_triton_repository_has_each_variant_as_its_own_model(optimized, tmp_path):  # noqa: F811
    from export.triton import export_triton

    repo = tmp_path / "triton"
    dirs = export_triton(optimized, repo)
    manifest = Manifest.load(optimized)
    assert sorted(d.name for d in dirs) == sorted(["mlp", "cnn", *VARIANTS])
    assert {k: v.string_value for k, v in _config(repo, "mlp").parameters.items()} == {}  # no variant
    for name, method in VARIANTS.items():
        config, entry = _config(repo, name), manifest.find(name, "onnx")
        parent = manifest.find(name.split(".")[0], "onnx")
        assert config.name == name and config.platform == "onnxruntime_onnx"
        assert (repo / name / "1" / "model.onnx").read_bytes() == (optimized / entry.path).read_bytes()
        assert {k: v.string_value for k, v in config.parameters.items()} == {
            "variant_of": parent.model,
            "variant_method": method,
            "variant_parent_sha256": parent.sha256,
        }
        # the same signature as its parent (fp16 keeps float32 inputs and outputs)
        assert config.input == _config(repo, parent.model).input
        assert config.output == _config(repo, parent.model).output


def test_batch_scores_with_the_variant_and_names_its_parent(optimized, tmp_path):  # noqa: F811
    from serve import load

    x = np.random.default_rng(5).standard_normal((40, FEATURES)).astype(np.float32)
    pq.write_table(pa.table({f"x_{i}": x[:, i] for i in range(FEATURES)}), tmp_path / "rows.parquet")
    out = tmp_path / "scored"
    r = run_cli(
        "-m", "serve.batch", "--artifacts", str(optimized), "--model", "mlp.int8",
        "--input", str(tmp_path / "rows.parquet"), "--output", str(out), "--quiet",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    final = json.loads((out / "_manifest.json").read_text())
    entry = Manifest.load(optimized).find("mlp.int8", "onnx")
    assert final["model"]["name"] == "mlp.int8" and final["model"]["sha256"] == entry.sha256
    assert final["model"]["variant_of"] == "mlp" and final["model"]["variant_method"] == "int8-dynamic"
    table = pq.read_table([out / p["part"] for p in final["parts"]][0])
    got = np.asarray(table.column("probs").to_pylist(), dtype=np.float32)  # a list column
    # one model run over the 40 rows (batch_rows 65536), as the loader's run: int8-dynamic scales
    # activations per call, so the same call gives the same scores
    want = load("mlp.int8", optimized).run({"x": x})["probs"]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    parent = load("mlp", optimized).run({"x": x})["probs"]
    assert (got.argmax(1) == parent.argmax(1)).mean() >= 0.9 and not np.array_equal(got, parent)


def test_v2_model_metadata_says_it_is_a_variant(optimized):  # noqa: F811
    from tests.serve_app import client

    api = client(optimized)
    manifest = Manifest.load(optimized)
    for name, method in VARIANTS.items():
        params = api.get(f"/v2/models/{name}").json()["parameters"]
        parent = manifest.find(name.split(".")[0], "onnx")
        assert params["variant_of"] == parent.model and params["variant_method"] == method
        assert params["variant_parent_sha256"] == parent.sha256
        assert params["sha256"] == manifest.find(name, "onnx").sha256
    assert "variant_of" not in api.get("/v2/models/mlp").json()["parameters"]


def test_sign_key_commits_a_variant_that_verifies(models, signing_keys, tmp_path):  # noqa: F811
    from dataclasses import replace

    from export.sign import sign_artifacts
    from serve import load
    from serve.engine.registry import Registry
    from serve.http.app import create_app
    from serve.http.config import ServeConfig
    from tests.serve_app import CheckedClient

    artifacts = copy_artifacts(models / "artifacts", tmp_path / "artifacts")
    sign_artifacts(artifacts, signing_keys["trusted"] / "private.pem")
    public = signing_keys["trusted"] / "public.pem"
    args = [
        "-m", "export.optimize", "--artifacts", str(artifacts), "--model", "mlp", "--int8", "dynamic",
        "--budget", "top1>=0.9,rel<=0.5", "--data", str(models / "mlp_val.npz"), "--latency-seconds", "0.01",
    ]  # fmt: skip
    unsigned = run_cli(*args)  # a commit without the key would drop the signature: refused
    assert unsigned.returncode == 2 and "pass --sign-key" in unsigned.stderr
    r = run_cli(*args, "--sign-key", str(signing_keys["trusted"] / "private.pem"))
    assert r.returncode == 0, r.stdout + r.stderr
    variant = load("mlp.int8", artifacts, trust_key=public)
    assert variant.verified and variant.signed_by and variant.metadata["variant_of"] == "mlp"
    assert (
        load("mlp", artifacts, trust_key=public).signed_by == variant.signed_by
    )  # the parent still verifies
    config = replace(ServeConfig(artifacts=artifacts), trust_key=public)
    registry = Registry(artifacts, trust_key=public)
    registry.load_all()
    api = CheckedClient(create_app(config, registry), raise_server_exceptions=False)
    api.artifacts = artifacts
    params = api.get("/v2/models/mlp.int8").json()["parameters"]
    assert params["signature"] == "verified" and params["variant_of"] == "mlp"
    # signed again by the other key: the trusted key refuses the variant
    sign_artifacts(artifacts, signing_keys["other"] / "private.pem")
    with pytest.raises(SignatureError):
        load("mlp.int8", artifacts, trust_key=public)
