"""`export.all --from-onnx FILE --name N` (export/from_onnx.py, export/onnx_file.py): adopt (a) a plain
torch model exported with torch.onnx (dynamic batch), (b) a MatMul+Add+Softmax graph built with
onnx.helper, (c) a graph with a symbolic sequence dimension that needs --dim; each passes serve.check
and loads; (b) is served (HTTP V2), batch-scored, signed, run in Node and published for Triton.
Hostile files are refused in one line, exit 2, nothing written; a file swapped in after adoption
fails its sha256. Models are built here; nothing is downloaded."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from oneneuron.errors import InputError, IntegrityError
from oneneuron.schema import Manifest
from tests.conftest import run_cli
from tests.test_byom import export_in_process


def softmax_model(path: Path, seed: int = 0, **props: str) -> Path:
    """(b) x float32 [N, 4] -> MatMul, Add, Softmax -> probs [N, 3], built with onnx.helper."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"]),
        helper.make_node("Add", ["h", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "clf", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "W"),
         numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "b")],
    )  # fmt: skip
    # IR 10, as torch.onnx writes: onnx 1.23's default (14) is beyond Node's onnxruntime-node 1.30 (13)
    opsets = [helper.make_opsetid("", 17)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="handmade", ir_version=10)
    model.producer_version = "0.1"
    helper.set_model_props(model, props)
    onnx.save(model, path)
    return path


def sequence_model(path: Path) -> Path:
    """(c) ids int64 [batch, seq] -> Gather(10 x 4 table) + a position table of 8 rows -> mean over seq
    -> [batch, 4]: runs only with seq = 8 (the position table's size), so the default size 4 fails."""
    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["emb"]),
        helper.make_node("Add", ["emb", "pos"], ["h"]),
        helper.make_node("ReduceMean", ["h", "axes"], ["pooled"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "seq", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(rng.standard_normal((10, 4)).astype(np.float32), "table"),
         numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "pos"),
         numpy_helper.from_array(np.array([1], np.int64), "axes")],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    return path


def torch_onnx(path: Path):
    """(a) a plain torch model exported with torch.onnx, the batch dynamic; returns the module."""
    import torch

    torch.manual_seed(0)
    nn = torch.nn
    module = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3), nn.Softmax(-1)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (torch.randn(2, 4),), str(path), input_names=["features"], output_names=["probs"],
            dynamic_axes={"features": {0: "batch"}, "probs": {0: "batch"}}, dynamo=False,
        )  # fmt: skip
    return module


def adopt(artifacts: Path, source: Path, name: str, **options):
    """export.all --from-onnx in this process: export/byom.py's commit with from_onnx's writer."""
    from export import from_onnx
    from export.byom import commit_prepared

    cfg = from_onnx.OnnxConfig(source, name, **options)
    return commit_prepared(artifacts, lambda: from_onnx.prepare(cfg), None, 3)


@pytest.fixture(scope="module")
def handmade(tmp_path_factory) -> tuple[Path, Path]:
    """(b) adopted into its own directory: (artifacts, the original file)."""
    root = tmp_path_factory.mktemp("handmade")
    source = softmax_model(root / "clf.onnx", author="someone", model="orig")
    adopt(root / "artifacts", source, "clf")
    return root / "artifacts", source


def test_torch_onnx_file_adopted_through_the_cli_then_checked_and_loaded(tmp_path):
    import torch

    from serve import load

    source = tmp_path / "plain.onnx"
    module = torch_onnx(source)
    artifacts = tmp_path / "artifacts"
    r = run_cli(
        "-m", "export.all", "--from-onnx", str(source), "--name", "plain", "--artifacts", str(artifacts)
    )
    assert r.returncode == 0, r.stderr
    assert "[ok] plain.onnx" in r.stdout and r.stdout.splitlines()[-1].startswith("wrote ")
    (entry,) = Manifest.load(artifacts).artifacts
    assert entry.source_sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert entry.source_file == "plain.onnx" and entry.framework == "onnx" and entry.format == "onnx"
    assert entry.adopted.producer_name == "pytorch" and torch.__version__.startswith(
        entry.adopted.producer_version
    )
    assert entry.opset == onnx.load(source).opset_import[0].version
    assert entry.adopted.reference == "onnx.reference" and "on all 36 rows" in entry.adopted.reference_note
    assert [(s.name, s.dtype, s.shape) for s in entry.signature.inputs] == [
        ("features", "float32", ("batch", 4))
    ]

    check = run_cli("-m", "serve.check", "--artifacts", str(artifacts), "--json")
    assert check.returncode == 0, check.stdout + check.stderr
    rows = json.loads(check.stdout)["parity"]
    assert {r["runtime"] for r in rows} == {"onnxruntime", "onnx.reference"} and all(r["ok"] for r in rows)

    x = np.random.default_rng(3).standard_normal((5, 4)).astype(np.float32)
    got = load("plain", artifacts).run({"features": x})["probs"]  # the self-test ran at load
    with torch.no_grad():
        np.testing.assert_allclose(got, module(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-6)


def test_handmade_graph_keeps_the_original_and_its_metadata(handmade):
    artifacts, source = handmade
    (entry,) = Manifest.load(artifacts).artifacts
    original, stored = onnx.load(source), onnx.load(artifacts / entry.path)
    assert stored.graph == original.graph  # the same graph: only metadata was added, to a copy
    own = {p.key: p.value for p in original.metadata_props}
    props = {p.key: p.value for p in stored.metadata_props}
    assert own == {"author": "someone", "model": "orig"}  # the original file is untouched
    assert props["author"] == "someone" and props["model"] == "clf"  # kept; the toolkit's key replaced
    assert props["selftest_probe"] == entry.probe.sha256 and "selftest" in props
    assert props["source_sha256"] == entry.source_sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert dict(entry.metadata) == props and dict(entry.producer) == {"handmade": "0.1"}
    with np.load(artifacts / entry.probe.path) as npz:  # onnx.reference's outputs on the probe
        from onnx.reference import ReferenceEvaluator

        want = ReferenceEvaluator(original).run(None, {"x": npz["inputs/x"]})[0]
        np.testing.assert_array_equal(npz["outputs/probs"], want)
        assert np.abs(npz["inputs/x"]).max() > 100  # the large-magnitude rows
    assert run_cli("-m", "serve.check", "--artifacts", str(artifacts)).returncode == 0


@pytest.fixture(scope="module")
def sequence_dir(tmp_path_factory) -> Path:
    """(c) adopted with --dim seq=8 into its own directory."""
    root = tmp_path_factory.mktemp("sequence")
    adopt(root / "artifacts", sequence_model(root / "seq.onnx"), "seq", dims={"seq": 8})
    return root / "artifacts"


def test_served_over_http_v2(sequence_dir):
    from serve import load
    from tests.serve_app import client

    ids = np.random.default_rng(4).integers(0, 10, (3, 8))
    want = load("seq", sequence_dir).run({"ids": ids})["pooled"]
    api = client(sequence_dir)
    assert api.get("/v2/models/seq/ready").status_code == 200
    body = {"inputs": [{"name": "ids", "shape": [3, 8], "datatype": "INT64", "data": ids.ravel().tolist()}]}
    r = api.post("/v2/models/seq/infer", json=body)
    assert r.status_code == 200, r.text
    (out,) = r.json()["outputs"]
    assert out["name"] == "pooled" and out["shape"] == [3, 4] and out["datatype"] == "FP32"
    np.testing.assert_array_equal(np.asarray(out["data"], np.float32).reshape(3, 4), want)
    body["inputs"][0]["data"][0] = 10  # beyond the 10-row table: the client's error, not a 500
    assert api.post("/v2/models/seq/infer", json=body).status_code == 400


def test_a_classifier_served_over_http_v2(handmade):
    """One float32 input [batch, 4] and one [batch, 3] output: the one path for every signature
    (issue 20 item 1, issue 23 item 1), over V2, TF Serving and the gRPC adapter."""
    from serve import load
    from tests.serve_app import client

    api = client(handmade[0])
    rows = [[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 2.0, 0.0]]
    want = load("clf", handmade[0]).run({"x": np.asarray(rows, np.float32)})["probs"]
    body = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": rows}]}
    r = api.post("/v2/models/clf/infer", json=body)
    assert r.status_code == 200 and r.json()["outputs"][0]["shape"] == [2, 3], r.text
    np.testing.assert_array_equal(np.asarray(r.json()["outputs"][0]["data"], np.float32).reshape(2, 3), want)
    r = api.post("/v1/models/clf:predict", json={"instances": rows})
    assert r.status_code == 200, r.text
    np.testing.assert_array_equal(np.asarray(r.json()["predictions"], np.float32), want)


def test_a_classifier_batch_scored(handmade, tmp_path):
    """A 2-D input from Parquet columns x_0..x_3 (batch scoring of other ranks is issue 20 item 5)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from serve import load
    from tests.batch_helpers import read_output

    rows = np.random.default_rng(6).standard_normal((40, 4)).astype(np.float32)
    pq.write_table(pa.table({f"x_{i}": rows[:, i] for i in range(4)}), tmp_path / "in.parquet")
    result = run_cli("-m", "serve.batch", "--model", "clf", "--artifacts", str(handmade[0]),
                     "--input", str(tmp_path / "in.parquet"), "--output", str(tmp_path / "out"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    got = np.asarray(read_output(tmp_path / "out")["probs"].to_pylist(), np.float32)
    np.testing.assert_array_equal(got, load("clf", handmade[0]).run({"x": rows})["probs"])


def test_signed_then_loaded_with_the_trusted_key(handmade, signing_keys, tmp_path):
    from export.sign import sign_artifacts
    from serve import load
    from tests.conftest import copy_artifacts

    signed = copy_artifacts(handmade[0], tmp_path / "signed")
    sign_artifacts(signed, signing_keys["trusted"] / "private.pem")
    model = load("clf", signed, trust_key=signing_keys["trusted"] / "public.pem")
    assert model.run({"x": [[1.0, 2.0, 3.0, 4.0]]})["probs"].shape == (1, 3)
    with pytest.raises(IntegrityError):
        load("clf", signed, trust_key=signing_keys["other"] / "public.pem")
    check = run_cli("-m", "serve.check", "--artifacts", str(signed),
                    "--trust-key", str(signing_keys["trusted"] / "public.pem"))  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr


def test_triton_repository_config_parses(handmade, tmp_path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from export.triton import export_triton

    (model_dir,) = export_triton(handmade[0], tmp_path / "triton")
    config = text_format.Parse((model_dir / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert config.name == "clf" and config.platform == "onnxruntime_onnx" and config.max_batch_size > 0
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [
        ("x", model_config_pb2.TYPE_FP32, [4])
    ]
    assert [(o.name, list(o.dims)) for o in config.output] == [("probs", [3])]
    entry = Manifest.load(handmade[0]).artifacts[0]
    assert (model_dir / "1" / "model.onnx").read_bytes() == (handmade[0] / entry.path).read_bytes()


@pytest.mark.skipif(shutil.which("node") is None, reason="node not found: install Node.js 20+")
def test_node_runs_it_and_its_selftest(handmade):
    from serve import load
    from tests.test_node_anysig import node_run

    feeds = {"x": [[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 0.0, 2.0]]}
    got = node_run(handmade[0] / "clf.onnx", feeds)
    want = load("clf", handmade[0]).run(feeds)["probs"]
    np.testing.assert_allclose(np.asarray(got["out"]["probs"], np.float32), want, rtol=1e-6, atol=1e-7)
    assert abs(got["st"]["actual"] - got["st"]["expected"]) <= 1e-4


def test_symbolic_sequence_dim_needs_dim(tmp_path):
    from serve import load

    source = sequence_model(tmp_path / "seq.onnx")
    with pytest.raises(InputError, match=r"--dim NAME=SIZE \(the probe used seq=4\)"):
        adopt(tmp_path / "a", source, "seq")
    with pytest.raises(InputError, match=r"--dim length: the model has no such dynamic dimension.*seq"):
        adopt(tmp_path / "a", source, "seq", dims={"length": 8})
    assert not (tmp_path / "a").exists()
    (entry,) = adopt(tmp_path / "a", source, "seq", dims={"seq": 8})
    assert entry.signature.inputs[0].shape == ("batch", "seq") and dict(entry.adopted.dims) == {"seq": 8}
    with np.load(tmp_path / "a" / entry.probe.path) as npz:
        ids = npz["inputs/ids"]
        assert ids.shape == (36, 8) and ids.dtype == np.int64 and 0 <= ids.min() and ids.max() < 10
    assert run_cli("-m", "serve.check", "--artifacts", str(tmp_path / "a")).returncode == 0
    ids = np.array([[1, 2, 3, 4, 5, 6, 7, 8]], np.int64)
    table, pos = (numpy_helper.to_array(t) for t in onnx.load(source).graph.initializer[:2])
    got = load("seq", tmp_path / "a").run({"ids": ids})["pooled"]
    np.testing.assert_allclose(got, (table[ids] + pos).mean(1), rtol=1e-6)


def test_outputs_from_onnxruntime_when_onnx_reference_cannot_run_it(tmp_path):
    """An op onnx.reference lacks (com.microsoft FusedMatMul): the probe stores onnxruntime's outputs,
    the entry says so and why, and the check's onnx.reference row is a skip."""
    graph = helper.make_graph(
        [helper.make_node("FusedMatMul", ["a", "w"], ["y"], domain="com.microsoft", alpha=2.0)], "g",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        [numpy_helper.from_array(np.array([[1, 2], [3, 4]], np.float32), "w")],
    )  # fmt: skip
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)]
    onnx.save(helper.make_model(graph, opset_imports=opsets), tmp_path / "fused.onnx")
    (entry,) = adopt(tmp_path / "a", tmp_path / "fused.onnx", "fused")
    assert entry.adopted.reference == "onnxruntime"
    assert "onnx.reference" in entry.adopted.reference_note and "FusedMatMul" in entry.adopted.reference_note
    with np.load(tmp_path / "a" / entry.probe.path) as npz:
        a = npz["inputs/a"]
        np.testing.assert_allclose(npz["outputs/y"], 2 * a @ np.array([[1, 2], [3, 4]]), rtol=1e-6)
    r = run_cli("-m", "serve.check", "--artifacts", str(tmp_path / "a"))
    assert r.returncode == 0 and "[skip]" in r.stdout, r.stdout


def test_disagreeing_runtimes_refuse_the_file(tmp_path, monkeypatch):
    """onnx.reference and onnxruntime differing beyond the check's tolerance: refused, nothing written."""
    from onnx.reference import ReferenceEvaluator

    real = ReferenceEvaluator.run
    monkeypatch.setattr(
        ReferenceEvaluator, "run", lambda self, *a, **k: [o + 1e-3 for o in real(self, *a, **k)]
    )
    with pytest.raises(InputError, match="disagree on output 'probs'.*min atol 9.9\\de-04"):
        adopt(tmp_path / "a", softmax_model(tmp_path / "clf.onnx"), "clf")
    assert not (tmp_path / "a").exists()


def hostile_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """case -> (file, what its one error line says)."""
    good = softmax_model(tmp_path / "good.onnx")
    (tmp_path / "text.onnx").write_text("this is not an ONNX model\n")
    onnx.save(onnx.load(good), tmp_path / "external.onnx", save_as_external_data=True,
              all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)  # fmt: skip
    string_graph = helper.make_graph(
        [helper.make_node("Identity", ["s"], ["t"])], "g",
        [helper.make_tensor_value_info("s", TensorProto.STRING, ["batch", 1])],
        [helper.make_tensor_value_info("t", TensorProto.STRING, ["batch", 1])],
    )  # fmt: skip
    onnx.save(
        helper.make_model(string_graph, opset_imports=[helper.make_opsetid("", 18)]), tmp_path / "str.onnx"
    )
    fixed = onnx.load(good)
    fixed.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    fixed.graph.output[0].type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save(fixed, tmp_path / "fixed.onnx")
    os.symlink(good, tmp_path / "link.onnx")
    return {
        "not onnx": (tmp_path / "text.onnx", "not an ONNX model"),
        "external data": (tmp_path / "external.onnx", "external file ('weights.bin')"),
        "string input": (tmp_path / "str.onnx", "input 's' has dtype string"),
        "fixed batch": (tmp_path / "fixed.onnx", "fixed first dimension 1"),
        "symlink": (tmp_path / "link.onnx", "a symlink"),
        "too large": (good, "more than the limit of 100"),
        "missing": (tmp_path / "missing.onnx", "no such file"),
        "needs --dim": (sequence_model(tmp_path / "seq.onnx"), "--dim NAME=SIZE (the probe used seq=4)"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "not onnx",
        "external data",
        "string input",
        "fixed batch",
        "symlink",
        "too large",
        "missing",
        "needs --dim",
    ],
)
def test_hostile_file_one_line_exit_2_nothing_written(case, tmp_path, monkeypatch, capfd):
    """capfd: onnxruntime's own logger writes to file descriptor 2, not through sys.stderr."""
    from export import onnx_file

    source, message = hostile_files(tmp_path)[case]
    if case == "too large":
        monkeypatch.setattr(onnx_file, "MAX_ONNX_BYTES", 100)
    artifacts = tmp_path / "artifacts"
    code, lines = export_in_process(
        monkeypatch, capfd, "--from-onnx", str(source), "--name", "m", "--artifacts", str(artifacts)
    )
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    assert message in lines[0] and str(source) in lines[0], lines[0]
    assert not artifacts.exists()


def test_external_data_message_names_the_fix_and_the_fix_works(tmp_path):
    files = hostile_files(tmp_path)
    source, _ = files["external data"]
    with pytest.raises(
        InputError, match=r"save it with onnx.save\(onnx.load\('model.onnx'\), 'inline.onnx'\)"
    ):
        adopt(tmp_path / "a", source, "m")
    onnx.save(onnx.load(source), tmp_path / "inline.onnx")  # the fix the message names
    assert adopt(tmp_path / "a", tmp_path / "inline.onnx", "m")[0].adopted.reference == "onnx.reference"


def test_dim_flag_needs_from_onnx_and_a_size(tmp_path, monkeypatch, capsys):
    for argv, message in [
        (["--dim", "seq=8"], "--dim needs --from-onnx FILE"),
        (
            ["--from-onnx", str(tmp_path / "x.onnx"), "--name", "m", "--dim", "seq=0"],
            "--dim 'seq=0': expected",
        ),
    ]:
        code, lines = export_in_process(monkeypatch, capsys, *argv, "--artifacts", str(tmp_path / "a"))
        assert code == 2 and len(lines) == 1 and message in lines[0], lines


def test_a_different_file_swapped_in_after_adoption_fails_its_sha256(handmade, tmp_path):
    """Perturbed weights in the stored file's place: the check and the loader refuse it by sha256."""
    from serve import load
    from tests.conftest import copy_artifacts

    artifacts = copy_artifacts(handmade[0], tmp_path / "artifacts")
    (entry,) = Manifest.load(artifacts).artifacts
    perturbed = onnx.load(artifacts / entry.path)
    weights = numpy_helper.to_array(perturbed.graph.initializer[0]).copy()
    weights[0, 0] += 1e-3
    perturbed.graph.initializer[0].CopyFrom(numpy_helper.from_array(weights, "W"))
    target = artifacts / entry.path
    target.unlink()  # stored versions are read-only
    onnx.save(perturbed, target)
    r = run_cli("-m", "serve.check", "--artifacts", str(artifacts))
    assert r.returncode == 1 and "sha256" in r.stdout, r.stdout
    with pytest.raises(IntegrityError, match="sha256"):
        load("clf", artifacts)
