"""No rollback (issue 19 item 2): an older, genuinely signed manifest.json + model.sig put back in
place verifies, so every consumer compares its `generation` instead (docs/reliability.md "Rollback").

A signed directory of one small linear model (`lin`, built here, no training run) is exported twice,
signed each time (generations 1 and 2, versions 1 and 2); the first export's manifest.json and
model.sig, saved in between, are then put back. The loader, `serve.check` and `serve.batch` with a
floor, and a server that has served generation 2 (in-process, and one real `python -m serve` in
poll mode) refuse it and say why; the server keeps serving version 2.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import httpx
import onnx
import pytest
from onnx import TensorProto, helper

from export.sign import Sealer, sign_artifacts
from oneneuron.errors import RollbackError, SchemaError
from oneneuron.fsio import Root
from oneneuron.manifest import commit, onnx_entry, refresh_aliases
from oneneuron.schema import MANIFEST, MAX_GENERATION, SIGNATURE, Manifest, linear_signature
from oneneuron.signing import SignatureError
from serve.loader import load
from tests.conftest import ROOT
from tests.version_helpers import variant

MODEL = "lin"
FLOOR = (
    r"generation 1 < the floor 2 \(--min-generation\); a rolled-back or stale directory: re-export, "
    r"or lower the floor"
)


def linear_model(weight: float, bias: float) -> bytes:
    """y = x·weight + bias, x float32 [batch, 1], with the embedded self-test (version_helpers.variant)."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "weight"], ["xw"]), helper.make_node("Add", ["xw", "bias"], ["y"])],
        MODEL,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])],
        initializer=[
            helper.make_tensor("weight", TensorProto.FLOAT, [1, 1], [0.0]),
            helper.make_tensor("bias", TensorProto.FLOAT, [1, 1], [0.0]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    helper.set_model_props(model, {"model": MODEL, "selftest_x": "[[10.0]]", "selftest_y": "0"})
    onnx.checker.check_model(model)
    return variant(model.SerializeToString(), weight, bias)


def export(artifacts: Path, weight: float, private_key: Path | None) -> Manifest:
    """Commit `lin` with this weight (bias 1) as the next version, signed in the same commit
    (like export.all --sign-key) when `private_key` is given. Returns the committed manifest."""
    root = Root(artifacts)
    data = linear_model(weight, 1.0)
    with root.locked():
        rel, _ = root.store_immutable(f"{MODEL}.onnx", lambda p: p.write_bytes(data))
        entry = replace(onnx_entry(root, rel, MODEL, linear_signature(1)), name=f"{MODEL}.onnx")
        seal = Sealer(private_key) if private_key is not None else None
        manifest, dropped = commit(root, None, None, [entry], seal=seal)
        refresh_aliases(root, manifest, dropped)
    return manifest


@pytest.fixture
def keys(signing_keys) -> tuple[Path, Path]:
    return signing_keys["trusted"] / "private.pem", signing_keys["trusted"] / "public.pem"


@pytest.fixture
def two_exports(tmp_path, keys) -> tuple[Path, dict[str, bytes]]:
    """A signed directory at generation 2 (lin version 2, y(10) = 31; version 1 kept), and the
    first export's signed pair (generation 1: version 1 alone, y(10) = 21), saved before the second."""
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    assert export(artifacts, 2.0, keys[0]).generation == 1
    first = {name: (artifacts / name).read_bytes() for name in (MANIFEST, SIGNATURE)}
    assert export(artifacts, 3.0, keys[0]).generation == 2
    return artifacts, first


def roll_back(artifacts: Path, pair: dict[str, bytes]) -> None:
    """What the attacker did: put the older signed manifest.json and model.sig back in place."""
    for name, data in pair.items():
        tmp = artifacts / f".{name}.rollback"
        tmp.write_bytes(data)
        tmp.replace(artifacts / name)


# -- the generation itself -------------------------------------------------------------------------


def test_each_commit_that_changes_the_manifest_raises_the_generation(tmp_path, keys):
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    assert export(artifacts, 2.0, None).generation == 1
    assert json.loads((artifacts / MANIFEST).read_text())["generation"] == 1
    assert export(artifacts, 3.0, None).generation == 2
    signed = sign_artifacts(artifacts, keys[0])  # the signing field changes the manifest: a commit
    assert signed.manifest.generation == 3 == Manifest.load(artifacts).generation
    before = (artifacts / MANIFEST).read_bytes()
    sign_artifacts(artifacts, keys[0])  # the same manifest signed again: no new generation
    assert (artifacts / MANIFEST).read_bytes() == before
    # a manifest from before generations parses as generation 0; the next commit makes it 1
    doc = json.loads(before)
    del doc["generation"]
    (artifacts / MANIFEST).write_text(json.dumps(doc))
    assert Manifest.load(artifacts).generation == 0
    assert export(artifacts, 4.0, None).generation == 1


def test_a_commit_over_an_unreadable_manifest_keeps_counting(tmp_path):
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    export(artifacts, 2.0, None)
    doc = json.loads((artifacts / MANIFEST).read_text())
    doc |= {"generation": 7, "selftest_atol": "not a number"}
    (artifacts / MANIFEST).write_text(json.dumps(doc))
    assert export(artifacts, 3.0, None).generation == 8


# One table for Python (oneneuron/schema.py) and JavaScript (serve/node/manifest.mjs): generation
# value -> what it parses as (None: refused). A JSON number written 2.0 is an integer to JavaScript
# (JSON.parse cannot tell them apart) and refused by Python; no writer here produces one.
GENERATIONS = [
    ("absent", 0),
    (None, 0),
    (0, 0),
    (5, 5),
    (MAX_GENERATION, MAX_GENERATION),
    (MAX_GENERATION + 1, None),
    (2**53, None),
    (-1, None),
    (1.5, None),
    ("3", None),
    (True, None),
    ([1], None),
]


def _with_generation(text: str, value) -> str:
    doc = json.loads(text)
    if value == "absent":
        del doc["generation"]
    else:
        doc["generation"] = value
    return json.dumps(doc)


def test_python_and_javascript_parse_the_generation_alike(two_exports):
    artifacts, _ = two_exports
    base = (artifacts / MANIFEST).read_text()
    texts = [_with_generation(base, value) for value, _ in GENERATIONS]
    for text, (value, expected) in zip(texts, GENERATIONS, strict=True):
        if expected is None:
            with pytest.raises(SchemaError, match=r"manifest\.json: field generation: expected an integer"):
                Manifest.load(artifacts, text.encode())
        else:
            assert Manifest.load(artifacts, text.encode()).generation == expected, value
    node = shutil.which("node")
    if node is None:
        pytest.skip("node not found: the JavaScript half needs Node.js 20+")
    script = (
        "import { parseManifest } from './serve/node/manifest.mjs';"
        "import { readFileSync } from 'node:fs';"
        "const out = JSON.parse(readFileSync(0, 'utf8')).map((t) => {"
        " try { return parseManifest(t).generation; } catch (e) { return e.message; } });"
        "console.log(JSON.stringify(out));"
    )
    result = subprocess.run(
        [node, "--input-type=module", "-e", script],
        cwd=ROOT,
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for got, (value, expected) in zip(json.loads(result.stdout), GENERATIONS, strict=True):
        if expected is None:
            assert "field generation: expected an integer in [0, 2147483647]" in str(got), (value, got)
        else:
            assert got == expected, (value, got)


# -- consumers with a floor ------------------------------------------------------------------------


def test_loader_refuses_a_rolled_back_directory_below_the_floor(two_exports, keys):
    artifacts, first = two_exports
    public = keys[1]
    assert load(MODEL, artifacts, trust_key=public, min_generation=2).generation == 2
    roll_back(artifacts, first)
    old = load(MODEL, artifacts, trust_key=public)  # the older pair verifies: why a floor is needed
    assert old.generation == 1 and float(old.predict([[10.0]])[0, 0]) == 21.0
    for kwargs in ({"trust_key": public}, {}):
        with pytest.raises(RollbackError, match=rf"{re.escape(str(artifacts / MANIFEST))}: {FLOOR}"):
            load(MODEL, artifacts, min_generation=2, **kwargs)
        with pytest.raises(RollbackError, match=FLOOR):
            load(artifacts / f"{MODEL}.onnx", min_generation=2, **kwargs)
    assert RollbackError.exit_code == 1


def test_with_a_trust_key_the_floor_reads_the_signed_generation(two_exports, keys):
    """Raising the generation of the restored manifest breaks its signature: refused as unsigned
    bytes, never admitted by the number it now claims."""
    artifacts, first = two_exports
    doc = json.loads(first[MANIFEST])
    doc["generation"] = 9
    roll_back(artifacts, {MANIFEST: json.dumps(doc, indent=2).encode(), SIGNATURE: first[SIGNATURE]})
    with pytest.raises(SignatureError, match=r"manifest\.json: sha256 .* changed after signing"):
        load(MODEL, artifacts, trust_key=keys[1], min_generation=2)
    assert load(MODEL, artifacts, min_generation=2).generation == 9  # without a key: nothing to check


def test_check_refuses_below_the_floor_and_runs_nothing(two_exports, keys, capsys):
    from serve.check import report

    artifacts, first = two_exports
    roll_back(artifacts, first)
    for trust_key in (keys[1], None):
        assert report(artifacts, trust_key=trust_key, min_generation=2) == 1
        out = capsys.readouterr().out.strip().splitlines()
        assert re.fullmatch(r"\[FAIL\] manifest\.json +generation +.*manifest\.json: " + FLOOR, out[-1]), out
        assert len(out) == (2 if trust_key else 1)  # the signature row, then the generation row
    assert report(artifacts, as_json=True, trust_key=keys[1], min_generation=2) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False and doc["generation"] | {"error": None} == {
        "ok": False,
        "generation": 1,
        "floor": 2,
        "error": None,
    }


def test_batch_refuses_below_the_floor(two_exports, keys, tmp_path):
    from serve.batch.__main__ import build_parser, make_job

    artifacts, first = two_exports
    data = tmp_path / "in.csv"
    data.write_text("x\n1\n2\n")
    argv = ["--artifacts", str(artifacts), "--model", MODEL, "--input", str(data), "--output", str(tmp_path)]
    signed = ["--trust-key", str(keys[1])]
    job, _ = make_job(build_parser().parse_args([*argv, "--min-generation", "2", *signed]))
    assert job.signed_by is not None
    roll_back(artifacts, first)
    for extra in (signed, []):
        with pytest.raises(RollbackError, match=FLOOR):
            make_job(build_parser().parse_args([*argv, "--min-generation", "2", *extra]))
    make_job(build_parser().parse_args(argv))  # without a floor: any validly signed generation


def test_cli_flag_refuses_what_is_not_a_generation():
    from oneneuron.cli import generation

    assert generation("0") == 0
    for bad in ("-1", "x", str(MAX_GENERATION + 1)):
        with pytest.raises(Exception, match="is not a generation"):
            generation(bad)


# -- the server --------------------------------------------------------------------------------------


def _registry(artifacts: Path, public: Path | None, **kwargs):
    from serve.engine.registry import Registry

    registry = Registry(artifacts, trust_key=public, **kwargs)
    assert registry.load_all()
    return registry


@pytest.mark.parametrize("signed", [True, False], ids=["trust_key", "no_key"])
def test_server_never_goes_back_to_an_older_generation(two_exports, keys, signed, caplog):
    from serve.http.app import create_app
    from serve.http.config import ServeConfig
    from tests.serve_app import CheckedClient

    artifacts, first = two_exports
    public = keys[1] if signed else None
    registry = _registry(artifacts, public)
    assert registry.generation == 2 and registry.served(MODEL).label == "2"
    api = CheckedClient(create_app(ServeConfig(artifacts=artifacts, trust_key=public), registry))
    roll_back(artifacts, first)
    with caplog.at_level(logging.INFO, logger="serve.engine.registry"):
        assert registry.reload() is False
        assert registry.reload() is False  # a poll that sees it again: counted, not logged again
    refused = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(refused) == 1 and not refused[0].exc_info, caplog.text
    assert re.fullmatch(
        r"reload refused: manifest\.json generation 1 < generation 2, which this server has already served: "
        r"a rolled-back or stale directory; still serving the versions loaded before; export again "
        rf"\(a newer generation\) to change them \({re.escape(str(artifacts))}\)",
        refused[0].getMessage(),
    )
    served = registry.served(MODEL)
    assert served.label == "2" and float(served.model.predict([[10.0]])[0, 0]) == 31.0
    infer = {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [10.0]}]}
    answer = api.post(f"/v2/models/{MODEL}/infer", json=infer).json()
    assert answer["model_version"] == "2" and answer["outputs"][0]["data"] == [31.0]
    metrics = api.get("/metrics").text
    assert 'serve_manifest_reloads_total{result="refused"} 2.0' in metrics
    assert "serve_manifest_generation 2.0" in metrics and "serve_manifest_refused_generation 1.0" in metrics
    status = {s["version"]: s for s in api.get(f"/v2/models/{MODEL}").json()["version_status"]}
    assert status["2"]["default"] and status["2"]["state"] == "READY"
    assert status["2"]["reason"].startswith("manifest.json generation 1 < generation 2")
    assert str(artifacts) not in json.dumps(status)
    index = api.post("/v2/repository/index", json={}).json()
    assert any(r["version"] == "2" and "generation 1 < generation 2" in r["reason"] for r in index)
    # an export over the restored directory continues from its generation: 2, not below the
    # generation served, so accepted (it is a new, genuinely signed commit); the refusal is over
    assert export(artifacts, 4.0, keys[0] if signed else None).generation == 2
    assert registry.reload() is True
    assert float(registry.served(MODEL).model.predict([[10.0]])[0, 0]) == 41.0
    assert "serve_manifest_refused_generation 0.0" in api.get("/metrics").text
    assert api.get(f"/v2/models/{MODEL}").json()["version_status"][-1]["reason"] == ""


def test_server_floor_at_start(two_exports, keys):
    artifacts, first = two_exports
    registry = _registry(artifacts, keys[1], min_generation=2)
    assert registry.generation == 2
    roll_back(artifacts, first)
    for public in (keys[1], None):
        with pytest.raises(RollbackError, match=FLOOR):
            _registry(artifacts, public, min_generation=2)
    assert _registry(artifacts, keys[1]).generation == 1  # a fresh process without a floor accepts it


def test_with_a_key_the_server_compares_the_signed_generation(two_exports, keys, monkeypatch, caplog):
    """The registry's own read of the manifest can only refuse; what admits a version is the
    generation of the manifest its load verified. Here every read claims generation 5 (as an
    edited manifest would), but the signed one is generation 1: below the floor, refused."""
    from serve.engine import registry as registry_module

    artifacts, first = two_exports
    roll_back(artifacts, first)

    class Claims:
        @staticmethod
        def load(directory, data=None):
            return replace(Manifest.load(directory, data), generation=5)

    monkeypatch.setattr(registry_module, "Manifest", Claims)
    registry = registry_module.Registry(artifacts, trust_key=keys[1], min_generation=2)
    with caplog.at_level(logging.ERROR, logger="serve.engine.registry"):
        assert registry.load_all() is False
    assert registry.states[MODEL].versions[1].state == "FAILED"
    assert len(caplog.records) == 1 and not caplog.records[0].exc_info
    assert re.search(r"model lin version 1: .*manifest\.json: " + FLOOR, caplog.text), caplog.text
    unsigned = registry_module.Registry(artifacts, min_generation=2)  # no key: the manifest is its word
    assert unsigned.load_all() and unsigned.generation == 5


@pytest.mark.slow
def test_a_real_server_in_poll_mode_keeps_serving_the_newer_version(two_exports, keys):
    from bench._server import start_server, stop_server

    artifacts, first = two_exports
    proc, port = start_server(artifacts, "--trust-key", str(keys[1]), "--poll-seconds", "0.1")
    url = f"http://127.0.0.1:{port}"
    body = {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [10.0]}]}
    try:
        assert httpx.post(f"{url}/v2/models/{MODEL}/infer", json=body).json()["model_version"] == "2"
        roll_back(artifacts, first)
        deadline = time.monotonic() + 20
        while 'result="refused"' not in httpx.get(f"{url}/metrics").text:
            assert time.monotonic() < deadline, "the rolled-back manifest was not refused within 20 s"
            time.sleep(0.1)
        time.sleep(0.5)  # what the attacker saw: within 2 s the server went back to version 1
        answer = httpx.post(f"{url}/v2/models/{MODEL}/infer", json=body).json()
        assert answer["model_version"] == "2" and answer["outputs"][0]["data"] == [31.0]
        status = httpx.get(f"{url}/v2/models/{MODEL}").json()["version_status"]
        assert any(s["default"] and "generation 1 < generation 2" in s["reason"] for s in status)
    finally:
        stop_server(proc)
    err = proc.stderr.read()
    refused = [line for line in err.splitlines() if "reload refused" in line]
    assert len(refused) == 1 and "Traceback" not in err, err[-3000:]
    assert "manifest.json generation 1 < generation 2" in refused[0]


def test_node_load_takes_a_floor(two_exports, keys):
    """serve/node/model.mjs `load(file, {trustKey, minGeneration})`: the signed manifest's generation."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node not found: the Node module needs Node.js 20+")
    artifacts, first = two_exports
    script = (
        "import { load } from './serve/node/model.mjs';"
        "const [file, trustKey] = process.argv.slice(1); const out = [];"
        "for (const options of [{trustKey, minGeneration: 2}, {minGeneration: 2}, {trustKey}]) {"
        " try { const m = await load(file, options); out.push(await m.predict(10)); }"
        " catch (e) { out.push(`${e.constructor.name}: ${e.message}`); } }"
        "console.log(JSON.stringify(out));"
    )

    def run() -> list:
        result = subprocess.run(
            [node, "--input-type=module", "-e", script, str(artifacts / f"{MODEL}.onnx"), str(keys[1])],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    assert run() == [[31.0], [31.0], [31.0]]
    roll_back(artifacts, first)
    refused, refused_unsigned, accepted = run()
    message = (
        f"RollbackError: {artifacts / MANIFEST}: generation 1 < the floor 2 (minGeneration); "
        "a rolled-back or stale directory: re-export, or lower the floor"
    )
    assert refused == message and refused_unsigned == message
    assert accepted == [21.0]  # no floor: the older signed pair verifies


def test_with_a_key_an_unverifiable_manifest_changes_nothing_served(two_exports, keys):
    """The older manifest put back with its generation raised to 9 (so it passes the mark) no longer
    verifies: it may not drop the newer version either (else the default falls back to version 1)."""
    artifacts, first = two_exports
    registry = _registry(artifacts, keys[1])
    doc = json.loads(first[MANIFEST])
    doc["generation"] = 9
    roll_back(artifacts, {MANIFEST: json.dumps(doc, indent=2).encode(), SIGNATURE: first[SIGNATURE]})
    registry.reload()
    served = registry.served(MODEL)
    assert served.label == "2" and float(served.model.predict([[10.0]])[0, 0]) == 31.0
    assert registry.generation == 2  # an unverified number never raises the mark
    export(artifacts, 5.0, keys[0])  # a genuine export over it (generation 10, version 2 again): served
    assert registry.reload() and float(registry.served(MODEL).model.predict([[10.0]])[0, 0]) == 51.0
    assert registry.generation == 10
