"""The server with a trusted key: signed models serve and say so; a refused model stays unready
(its log says why), the others serve; without a key the metadata says unsigned."""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import replace

import httpx
import pytest

from oneneuron.schema import Manifest
from oneneuron.signing import load_public_key
from serve.engine.registry import Registry
from serve.http.app import create_app
from serve.http.config import ServeConfig
from tests.conftest import ROOT
from tests.serve_app import CheckedClient
from tests.signed import CASES, damage

INFER = {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [10.0]}]}


def signed_client(artifacts, trust_key) -> CheckedClient:
    config = replace(ServeConfig(artifacts=artifacts), trust_key=trust_key)
    registry = Registry(artifacts, trust_key=trust_key)
    registry.load_all()
    api = CheckedClient(create_app(config, registry), raise_server_exceptions=False)
    api.artifacts = artifacts
    return api


def test_signed_models_serve_and_say_so(signed_dir, signing_keys):
    key = signing_keys["trusted"] / "public.pem"
    api = signed_client(signed_dir, key)
    assert api.get("/v2/health/ready").status_code == 200
    for name in ("keras_linear", "torch_linear"):
        meta = api.get(f"/v2/models/{name}").json()
        sha256 = Manifest.load(signed_dir).find(name, "onnx").sha256
        assert meta["parameters"] == {
            "signature": "verified",
            "signature_key": load_public_key(key)[1],
            "version": "1",
            "sha256": sha256,
        }
        assert api.post(f"/v2/models/{name}/infer", json=INFER).status_code == 200
    unsigned = signed_client(signed_dir, None)
    assert unsigned.get("/v2/models/keras_linear").json()["parameters"]["signature"] == "unsigned"


@pytest.mark.parametrize("kind", sorted(CASES))
def test_refused_model_stays_unready_and_the_log_says_why(signed_copy, signing_keys, kind, caplog):
    pattern = damage(signed_copy, signing_keys, kind)
    with caplog.at_level(logging.ERROR, logger="serve.engine.registry"):
        api = signed_client(signed_copy, signing_keys["trusted"] / "public.pem")
    assert re.search(r"model keras_linear version 1: .*" + pattern, caplog.text), caplog.text
    assert api.get("/v2/health/ready").status_code == 503
    refused = api.post("/v2/models/keras_linear/infer", json=INFER)
    assert refused.status_code == 503 and "SignatureError" in refused.json()["error"]
    # Only keras_linear's own file was changed: torch_linear is still the signed model and serves.
    # Every other damage is to the signature, the manifest or the file set, which both models share.
    torch = api.post("/v1/models/torch_linear:predict", json={"instances": [[10.0]]})
    assert torch.status_code == (200 if kind == "changed" else 503), torch.text


@pytest.mark.slow
def test_serve_process_with_trust_key(signed_copy, signing_keys):
    damage(signed_copy, signing_keys, "changed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    key = signing_keys["trusted"] / "public.pem"
    args = ["-m", "serve", "--artifacts", str(signed_copy), "--port", str(port), "--grpc-port", "0"]
    args += ["--trust-key", str(key)]  # gRPC off: its default port may be taken by another test's server
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:  # torch_linear loads and serves; keras_linear never does
            assert proc.poll() is None, proc.communicate()
            try:
                if httpx.get(f"{url}/v2/models/torch_linear/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "torch_linear not ready within 60 s"
            time.sleep(0.1)
        assert httpx.get(f"{url}/v2/health/ready").status_code == 503
        assert httpx.get(f"{url}/v2/models/keras_linear/ready").status_code == 503
        r = httpx.post(f"{url}/v1/models/torch_linear:predict", json={"instances": [[10.0]]})
        assert r.status_code == 200 and abs(r.json()["predictions"][0][0] - 19) < 1e-4
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert re.search(
        r"model keras_linear version 1: .*keras_linear\.[0-9a-f]{12}\.onnx: sha256 .* changed after signing",
        err,
    )
    assert "Traceback" not in err, err  # the refusal is one line (issue 21)


def test_reload_never_swaps_in_a_version_the_trusted_key_did_not_sign(signed_copy, signing_keys):
    """Issue 15 with the server's reload: a new version exported but not signed (model.sig still
    from the previous export) is never served; once the directory is signed again, it is."""
    from export.sign import sign_artifacts
    from serve.engine.registry import Registry
    from tests.version_helpers import land, variant

    registry = Registry(signed_copy, trust_key=signing_keys["trusted"] / "public.pem")
    assert registry.load_all()
    before = registry.served("keras_linear")
    data = (signed_copy / "keras_linear.onnx").read_bytes()
    new_version = land(signed_copy, "keras_linear", variant(data, 3.0, 1.0))
    registry.reload()
    served = registry.served("keras_linear")
    assert served.label == before.label and served.entry.sha256 == before.entry.sha256
    assert float(served.model.predict([[10.0]])[0, 0]) == float(before.model.predict([[10.0]])[0, 0])
    sign_artifacts(signed_copy, signing_keys["trusted"] / "private.pem")
    registry.reload()
    assert registry.served("keras_linear").label == str(new_version)
    assert float(registry.served("keras_linear").model.predict([[10.0]])[0, 0]) == 31.0


def test_a_refused_new_version_logs_one_line_and_shows_in_metrics_and_status(
    signed_copy, signing_keys, caplog
):
    """Issue 21: an unsigned new version under --trust-key is one log line (no traceback; -v, i.e.
    DEBUG, adds it), a FAILED row in the repository index and a failed series in /metrics."""
    from tests.version_helpers import land, variant

    config = replace(ServeConfig(artifacts=signed_copy), trust_key=signing_keys["trusted"] / "public.pem")
    registry = Registry(signed_copy, trust_key=config.trust_key)
    assert registry.load_all()
    api = CheckedClient(create_app(config, registry), raise_server_exceptions=False)
    data = (signed_copy / "keras_linear.onnx").read_bytes()
    new = land(signed_copy, "keras_linear", variant(data, 3.0, 1.0))
    with caplog.at_level(logging.INFO, logger="serve.engine.registry"):
        registry.reload()
    refusals = [r for r in caplog.records if r.levelno >= logging.ERROR and f"version {new}:" in r.message]
    assert len(refusals) == 1 and not refusals[0].exc_info, caplog.text
    assert "\n" not in refusals[0].getMessage() and "SignatureError" not in caplog.text

    rows = api.post("/v2/repository/index", json={}).json()
    (row,) = [r for r in rows if r["name"] == "keras_linear" and r["version"] == str(new)]
    assert row["state"] == "UNAVAILABLE" and "SignatureError" in row["reason"], row
    metrics = api.get("/metrics").text
    assert re.search(
        rf'serve_model_version_failed{{model="keras_linear",sha256="[0-9a-f]+",version="{new}"}} 1', metrics
    )
    assert 'serve_model_version_load_failures_total{model="keras_linear"} 1.0' in metrics

    caplog.clear()
    land(signed_copy, "keras_linear", variant(data, 4.0, 1.0))
    with caplog.at_level(logging.DEBUG, logger="serve.engine.registry"):  # -v
        registry.reload()
    assert [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info], caplog.text
