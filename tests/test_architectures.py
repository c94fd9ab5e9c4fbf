"""Real architectures (tests/architectures.py: a BatchNorm CNN on 3x96x96, a masked transformer
encoder, 3-class classifiers in torch and Keras, int64 and bool outputs) through export -> check ->
load, outputs equal to the source framework's (issue 20). One export per session (conftest.py)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from oneneuron.fsio import Root
from oneneuron.schema import Manifest
from serve import parity
from tests import architectures

NAMES = list(architectures.ARCHITECTURES)


def test_every_architecture_passes_the_default_check(architectures_dir):
    artifacts = architectures_dir / "artifacts"
    rows = parity.run_parity(Root(artifacts), Manifest.load(artifacts), parity.Tolerances())
    assert {r.artifact.split(".")[0] for r in rows} == set(NAMES)
    assert all(r.ok for r in rows), parity.format_rows([r for r in rows if not r.ok])
    exact = {(r.output, r.atol, r.rtol) for r in rows if r.artifact.startswith("labels.")}
    assert ("label", 0.0, 0.0) in exact and ("positive", 0.0, 0.0) in exact


@pytest.mark.parametrize("name", NAMES)
def test_loader_run_equals_the_source(architectures_dir, name):
    from serve.loader import load

    framework, _, suffix = architectures.ARCHITECTURES[name]
    model = load(name, artifacts=architectures_dir / "artifacts")  # runs its self-test
    feeds = architectures.inputs(name)
    got = model.run(feeds)
    want = architectures.source_outputs(architectures_dir / f"{name}{suffix}", feeds)
    assert set(got) == set(want)
    for k, w in want.items():
        assert got[k].dtype == w.dtype and got[k].shape == w.shape, k
        if w.dtype.kind == "f":
            np.testing.assert_allclose(got[k], w, rtol=1e-5, atol=1e-5 * np.abs(w).max())
        else:
            np.testing.assert_array_equal(got[k], w)


@pytest.mark.parametrize("name", ["cnn", "classifier_torch", "classifier_keras", "labels"])
def test_predict_is_run_for_any_single_input_model(architectures_dir, name):
    """`predict(x)` is `run({input: x})` for a one-input model: the output at its width (3 classes,
    a 96x96 CNN's logits), a dict for several outputs, one row given without its batch dimension,
    float64 rows converted; a two-input model is told to use `run`."""
    from serve.loader import PredictInputError, load

    model = load(name, artifacts=architectures_dir / "artifacts")
    ((input_name, x),) = architectures.inputs(name).items()
    want = model.run({input_name: x})
    got = model.predict(x)
    got = got if isinstance(got, dict) else {next(iter(want)): got}
    assert got.keys() == want.keys()
    for k, w in want.items():
        assert got[k].dtype == w.dtype and got[k].shape == w.shape and w.shape[0] == len(x), k
        np.testing.assert_array_equal(got[k], w)
    one = model.predict(x[0].astype(np.float64))  # one row, no batch dimension, another float dtype
    first = one if isinstance(one, dict) else {next(iter(want)): one}
    for k, w in want.items():
        np.testing.assert_allclose(first[k], w[:1], rtol=1e-6, atol=1e-6)
    with pytest.raises(PredictInputError, match=r"got shape \(2, 5\); expected an array of shape"):
        model.predict(np.zeros((2, 5)))
    two = load("transformer", artifacts=architectures_dir / "artifacts", selftest=False)
    with pytest.raises(PredictInputError, match=r"one input; .*'input_ids'.*use model.run"):
        two.predict(np.zeros((1, 4), np.int64))


def perturbed(artifacts, target, name: str, fraction: float = 0.01):
    """A directory holding `name`'s ONNX file with one weight changed (element 0 of its largest float
    initializer, by `fraction` of that tensor's largest |w|), its probe, and a manifest whose sha256
    matches the changed file: only parity can tell. Returns the entry."""
    from dataclasses import replace

    import onnx

    from oneneuron.fsio import sha256_file

    manifest = Manifest.load(artifacts)
    entry = next(e for e in manifest.artifacts if e.model == name and e.format == "onnx")
    proto = onnx.load(artifacts / entry.path)
    weights = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT]
    tensor = max(weights, key=lambda t: np.prod(t.dims))
    w = onnx.numpy_helper.to_array(tensor).copy()
    w.flat[0] += fraction * np.abs(w).max()
    tensor.CopyFrom(onnx.numpy_helper.from_array(w, tensor.name))
    target.mkdir()
    (target / entry.path).write_bytes(proto.SerializeToString())
    (target / entry.probe.path).write_bytes((artifacts / entry.probe.path).read_bytes())
    entry = replace(entry, sha256=sha256_file(target / entry.path))
    Root(target).write_json("manifest.json", replace(manifest, artifacts=(entry,)).to_json())
    return entry


@pytest.mark.parametrize("name", NAMES)
def test_one_perturbed_weight_fails_the_default_check(architectures_dir, tmp_path, name):
    """1% of a tensor's largest weight added to one weight: the default tolerances fail it in every
    runtime that runs it, with a minimum passing atol above the default."""
    entry = perturbed(architectures_dir / "artifacts", tmp_path / "artifacts", name)
    rows = parity.check_entry(Root(tmp_path / "artifacts"), entry, parity.Tolerances())
    assert {r.runtime for r in rows} == {"onnxruntime", "onnx.reference"}
    float_rows = [r for r in rows if r.atol]
    assert float_rows and not any(r.ok for r in float_rows), parity.format_rows(rows)
    assert all(r.min_atol > r.atol for r in float_rows)


def test_the_tolerance_scales_with_the_row_not_the_element():
    """A 2.7e-3 difference beside |y| = 5,900 in its row passes at rtol 1e-5 (an element-wise rule
    fails it on the small element); the same difference in a row of small numbers fails."""
    expected = np.array([[5900.0, 0.01], [1.0, 0.01]], np.float32)
    actual = expected + np.array([[0.0, 2.7e-3], [0.0, 0.0]], np.float32)
    max_abs, max_rel, min_atol = parity.compare(actual, expected, 1e-5, 1e-5)
    assert min_atol == 0 and max_abs == pytest.approx(2.7e-3) and max_rel == pytest.approx(2.7e-3 / 5900)
    actual = expected + np.array([[0.0, 0.0], [0.0, 2.7e-3]], np.float32)
    assert parity.compare(actual, expected, 1e-5, 1e-5)[2] == pytest.approx(2.7e-3 - 1e-5, rel=1e-3)
    rank1 = np.array([3.0, -400.0])  # one number per row: its own scale
    assert parity.compare(rank1 + 4e-3, rank1, 0.0, 1e-5)[2] == pytest.approx(4e-3 - 3e-5, rel=1e-6)


def test_a_reference_that_cannot_run_the_graph_is_skipped_unless_strict(
    architectures_dir, monkeypatch, capsys
):
    """onnx.reference raising ValueError (its GatherElements bug in onnx 1.23) is [skip] with the reason;
    --strict fails it; --runtimes chooses which runtimes run."""
    from serve import check, runtimes

    def broken(path, names):
        raise ValueError("GatherElements: index out of bounds in the reference implementation")

    table = [(n, broken if n == "onnx.reference" else f) for n, f in runtimes.RUNTIMES["onnx"]]
    monkeypatch.setitem(runtimes.RUNTIMES, "onnx", table)
    artifacts = architectures_dir / "artifacts"
    manifest = Manifest.load(artifacts)
    entry = next(e for e in manifest.artifacts if e.model == "transformer" and e.format == "onnx")
    rows = parity.check_entry(Root(artifacts), entry, parity.Tolerances())
    ref = next(r for r in rows if r.runtime == "onnx.reference")
    assert ref.ok and ref.skipped and "ValueError: GatherElements" in ref.note
    assert "[skip] transformer.onnx" in parity.format_rows(rows)
    strict = parity.check_entry(Root(artifacts), entry, parity.Tolerances(), parity.Choice(strict=True))
    assert [r.ok for r in strict if r.runtime == "onnx.reference"] == [False]

    only = parity.Choice(parity.runtimes_arg("onnxruntime"))
    assert check.report(artifacts, choice=only) == 0
    out = capsys.readouterr().out
    assert "onnxruntime" in out and "onnx.reference" not in out and "torch " not in out
    assert check.report(artifacts, choice=parity.Choice(strict=True)) == 1
    assert "transformer.onnx (onnx.reference)" in capsys.readouterr().out.splitlines()[-1]
    with pytest.raises(Exception, match="unknown runtime onnxrt; expected .*onnx.reference"):
        parity.runtimes_arg("onnxrt")


def test_a_selftest_of_any_size_runs_from_the_probe_file(architectures_dir, tmp_path):
    """The CNN's probe row is ~500 KiB of JSON (> the 64 KiB metadata limit): the ONNX metadata names
    the probe file by sha256 and the loader runs its first rows; a changed probe file, a lone file
    and a file without any self-test are refused, naming what is missing."""
    import json
    import shutil
    from dataclasses import replace

    import onnx

    from oneneuron.errors import IntegrityError
    from serve.loader import load

    artifacts = architectures_dir / "artifacts"
    entry = next(e for e in Manifest.load(artifacts).artifacts if e.model == "cnn" and e.format == "onnx")
    probe = architectures.inputs("cnn", rows=1)["image"]
    assert len(json.dumps(probe.tolist())) > 65536
    assert "selftest" not in entry.metadata and entry.metadata["selftest_probe"] == entry.probe.sha256
    model = load("cnn", artifacts=artifacts)
    expected, actual = model.selftest(Root(artifacts), entry)
    assert actual == pytest.approx(expected, rel=1e-4, abs=1e-4)

    with pytest.raises(IntegrityError, match="probe file with sha256 .*load it by name .*selftest=False"):
        load(artifacts / entry.path, artifacts=tmp_path)  # a lone file: no manifest names its probe
    copy = tmp_path / "copy"
    shutil.copytree(artifacts, copy)
    damaged = bytearray((copy / entry.probe.path).read_bytes())
    damaged[-30] ^= 1
    (copy / entry.probe.path).unlink()
    (copy / entry.probe.path).write_bytes(bytes(damaged))
    with pytest.raises(IntegrityError, match="sha256 differs from the model's 'selftest_probe'"):
        load("cnn", artifacts=copy)

    proto = onnx.load(artifacts / entry.path)
    onnx.helper.set_model_props(proto, {k: v for k, v in entry.metadata.items() if k != "selftest_probe"})
    onnx.save(proto, tmp_path / "bare.onnx")
    with pytest.raises(IntegrityError, match="no self-test: .*'selftest_probe' .*selftest=False"):
        load(tmp_path / "bare.onnx")
    other = replace(entry, probe=replace(entry.probe, sha256="0" * 64))
    with pytest.raises(IntegrityError, match="is not the manifest's probe"):
        model.selftest(Root(artifacts), other)


# -- bad requests are the client's error (issue 20 item 4) ---------------------------------------------
VOCAB_IDS = np.full((2, 5), architectures.VOCAB + 10, np.int64)  # beyond the Embedding's rows
LONG = architectures.MAX_SEQ + 4  # beyond the position table: the graph cannot broadcast it
BAD_REQUESTS = [  # (model, feeds, what the message names)
    ("transformer", {"input_ids": VOCAB_IDS, "attention_mask": np.ones((2, 5), np.int64)}, "'input_ids'"),
    (
        "transformer",
        {"input_ids": np.ones((1, LONG), np.int64), "attention_mask": np.ones((1, LONG), np.int64)},
        f"'input_ids' shape (1, {LONG})",
    ),
    ("cnn", {"image": np.zeros((1, 3, 64, 64), np.float32)}, "'image'"),
]


@pytest.fixture
def counted(monkeypatch):
    """Every onnxruntime session opened from now on counts its runs: calls[model path stem]."""
    import serve.model

    calls: dict[str, int] = {}
    direct = serve.model._direct_run

    def counting(session):
        # sessions are made from bytes (no path): the model's name is in its metadata
        run, stem = direct(session), session.get_modelmeta().custom_metadata_map.get("model", "?")

        def counted_run(*args):
            calls[stem] = calls.get(stem, 0) + 1
            return run(*args)

        return counted_run

    monkeypatch.setattr(serve.model, "_direct_run", counting)
    return calls


@pytest.mark.parametrize("model_name, feeds, named", BAD_REQUESTS)
def test_the_loader_refuses_what_onnxruntime_refuses_running_once(
    architectures_dir, counted, model_name, feeds, named
):
    from serve.loader import PredictInputError, load

    model = load(model_name, artifacts=architectures_dir / "artifacts", selftest=False)
    for given in (feeds, {k: v.tolist() for k, v in feeds.items()}):  # the fast path and the general one
        counted.clear()
        with pytest.raises(PredictInputError, match=re.escape(f"input {named}")) as info:
            model.run(given)
        assert counted.get(model_name, 0) <= 1, counted  # never run again after a refusal
        assert "onnxruntime_src" not in str(info.value) and "[ONNXRuntimeError]" not in str(info.value)
    if model_name == "transformer":
        assert "out of data bounds" in str(info.value) or "broadcast" in str(info.value)


def _v2(feeds: dict) -> dict:
    dtypes = {"int64": "INT64", "float32": "FP32"}
    return {
        "inputs": [
            {"name": k, "shape": list(v.shape), "datatype": dtypes[v.dtype.name], "data": v.ravel().tolist()}
            for k, v in feeds.items()
        ]
    }


def test_http_and_grpc_answer_400_and_invalid_argument(architectures_dir, counted):
    """V2 JSON and TF Serving: 400 naming the input; gRPC (the service in-process): INVALID_ARGUMENT; the
    model ran at most once per request, and serving continues."""
    import asyncio

    import grpc
    from tritonclient.grpc import service_pb2 as pb

    from serve.engine.registry import Registry
    from serve.grpc.service import InferenceService
    from serve.http.config import ServeConfig
    from tests.serve_app import client

    artifacts = architectures_dir / "artifacts"
    api = client(artifacts)
    assert api.get("/v2/health/ready").status_code == 200  # every model loaded with its self-test
    for model_name, feeds, named in BAD_REQUESTS:
        counted.clear()
        r = api.post(f"/v2/models/{model_name}/infer", json=_v2(feeds))
        assert r.status_code == 400 and named.split(" ")[0] in r.json()["error"], r.text
        r = api.post(
            f"/v1/models/{model_name}:predict", json={"inputs": {k: v.tolist() for k, v in feeds.items()}}
        )
        assert r.status_code == 400 and named.split(" ")[0] in r.json()["error"], r.text
        assert counted.get(model_name, 0) <= 2, counted  # once per request at most
    good = architectures.inputs("transformer", rows=2)
    assert api.post("/v2/models/transformer/infer", json=_v2(good)).status_code == 200

    class Aborted(Exception):
        pass

    class Context:
        async def abort(self, code, message):
            raise Aborted(code, message)

    registry = Registry(artifacts)
    registry.load_all()
    from serve.engine import Engine

    config = ServeConfig(artifacts=artifacts)
    service = InferenceService(Engine(registry, config.row_limit), config)
    typed = {"int64": ("INT64", "int64_contents"), "float32": ("FP32", "fp32_contents")}
    for model_name, feeds, named in BAD_REQUESTS:
        tensors = [
            pb.ModelInferRequest.InferInputTensor(
                name=k,
                datatype=typed[v.dtype.name][0],
                shape=list(v.shape),
                contents=pb.InferTensorContents(**{typed[v.dtype.name][1]: v.ravel().tolist()}),
            )
            for k, v in feeds.items()
        ]
        request = pb.ModelInferRequest(model_name=model_name, inputs=tensors)
        with pytest.raises(Aborted) as info:
            asyncio.run(service.ModelInfer(request, Context()))
        code, message = info.value.args
        assert code == grpc.StatusCode.INVALID_ARGUMENT and named.split(" ")[0] in message, message
