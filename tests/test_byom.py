"""Your own model: a `.keras` and a `.pt2` with two inputs (float features, int64 ids through an
Embedding) and two outputs, each through `export.all --from-*` -> `serve.check` -> the loader's `run`;
a perturbed ONNX file fails the check with its minimum passing atol; a model each converter cannot
export fails in one line and writes nothing. Models are built here; nothing is downloaded."""

from __future__ import annotations

import hashlib
import json
import runpy
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from oneneuron.fsio import Root
from oneneuron.schema import Manifest
from tests.conftest import run_cli

FEATURES, IDS, VOCAB = 3, 5, 10


def keras_model():
    from oneneuron.frameworks import quiet_tensorflow

    quiet_tensorflow()
    import keras

    keras.utils.set_random_seed(0)
    feats = keras.Input((FEATURES,), dtype="float32", name="features")
    ids = keras.Input((IDS,), dtype="int64", name="token_ids")
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(VOCAB, 4)(ids))
    hidden = keras.layers.Dense(8, activation="relu")(keras.layers.Concatenate()([feats, pooled]))
    score = keras.layers.Dense(1, name="score")(hidden)
    probs = keras.layers.Dense(3, activation="softmax", name="probs")(hidden)
    return keras.Model({"features": feats, "token_ids": ids}, {"score": score, "probs": probs})


def torch_module():
    import torch

    class TwoInTwoOut(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(VOCAB, 4)
            self.hidden = torch.nn.Linear(FEATURES + 4, 8)
            self.score = torch.nn.Linear(8, 1)
            self.probs = torch.nn.Linear(8, 3)

        def forward(self, features, token_ids):
            h = torch.relu(self.hidden(torch.cat([features, self.emb(token_ids).mean(1)], 1)))
            return {"score": self.score(h), "probs": torch.softmax(self.probs(h), -1)}

    torch.manual_seed(0)
    return TwoInTwoOut().eval()


def save_program(module, path: Path, example: dict) -> Path:
    """torch.export with a dynamic batch dimension on every input, then torch.export.save."""
    import torch

    batch = torch.export.Dim("batch")
    program = torch.export.export(module, (), kwargs=example, dynamic_shapes={n: {0: batch} for n in example})
    torch.export.save(program, path)
    return path


def fresh_inputs(rows: int = 7, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "features": rng.standard_normal((rows, FEATURES)).astype(np.float32),
        "token_ids": rng.integers(0, VOCAB, (rows, IDS)).astype(np.int64),
    }


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    import torch

    root = tmp_path_factory.mktemp("sources")
    keras_model().save(root / "two.keras")
    example = {"features": torch.randn(2, FEATURES), "token_ids": torch.randint(0, VOCAB, (2, IDS))}
    save_program(torch_module(), root / "two.pt2", example)
    return {"keras": root / "two.keras", "torch": root / "two.pt2"}


@pytest.fixture(scope="module")
def exported(sources, tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """Each source exported through the CLI into its own directory: framework -> (dir, stdout)."""
    out = {}
    for framework, name in (("keras", "kmodel"), ("torch", "tmodel")):
        artifacts = tmp_path_factory.mktemp(framework) / "artifacts"
        r = run_cli(
            "-m", "export.all", f"--from-{framework}", str(sources[framework]), "--name", name,
            "--artifacts", str(artifacts),
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        out[framework] = (artifacts, r.stdout)
    return out


@pytest.mark.parametrize(
    "framework, name, formats",
    [
        ("keras", "kmodel", {"onnx", "savedmodel"}),
        ("torch", "tmodel", {"onnx", "exportedprogram", "torchscript"}),
    ],
)
def test_export_records_formats_probe_and_provenance(exported, sources, framework, name, formats):
    artifacts, stdout = exported[framework]
    manifest = Manifest.load(artifacts)
    assert manifest.training_record is None  # no training run in this directory
    entries = [e for e in manifest.artifacts if e.model == name]
    assert {e.format for e in entries} == formats
    source_sha = hashlib.sha256(sources[framework].read_bytes()).hexdigest()
    assert {e.source_sha256 for e in entries} == {source_sha}
    assert len({e.probe for e in entries}) == 1  # one probe file for every artifact of the model
    sig = entries[0].signature
    assert [(s.name, s.dtype, s.shape) for s in sig.inputs] == [
        ("features", "float32", ("batch", FEATURES)),
        ("token_ids", "int64", ("batch", IDS)),
    ]
    assert sorted((s.name, s.dtype, s.shape) for s in sig.outputs) == [
        ("probs", "float32", ("batch", 3)),
        ("score", "float32", ("batch", 1)),
    ]
    with np.load(artifacts / entries[0].probe.path) as npz:
        assert sorted(npz.files) == ["inputs/features", "inputs/token_ids", "outputs/probs", "outputs/score"]
        ids = npz["inputs/token_ids"]
        assert ids.dtype == np.int64 and 0 <= ids.min() and ids.max() < VOCAB  # default --int-range 0:10
        assert np.abs(npz["inputs/features"]).max() > 100  # the large-magnitude rows
    for e in entries:
        assert f"[ok] {e.name}" in stdout


@pytest.mark.parametrize("framework, name", [("keras", "kmodel"), ("torch", "tmodel")])
def test_check_passes_then_loader_run_equals_source(exported, sources, framework, name):
    artifacts, _ = exported[framework]
    r = run_cli("-m", "serve.check", "--artifacts", str(artifacts), "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(r.stdout)
    runtimes = {(row["artifact"].split(".", 1)[1], row["runtime"]) for row in report["parity"]}
    expected = {("onnx", "onnxruntime"), ("onnx", "onnx.reference")} | (
        {("savedmodel", "tensorflow")}
        if framework == "keras"
        else {("pt2", "torch"), ("torchscript.pt", "torch")}
    )
    assert runtimes == expected
    for row in report["parity"]:
        assert row["ok"] and row["output"] in ("score", "probs")
        assert row["min_atol"] <= row["atol"] and row["max_abs"] >= 0 and row["rows"] == 36

    from serve.loader import load

    model = load(name, artifacts=artifacts)  # runs the embedded `selftest`
    feeds = fresh_inputs()
    got = model.run(feeds)
    if framework == "keras":
        want = {k: np.asarray(v) for k, v in keras_reload(sources["keras"])(feeds).items()}
    else:
        import torch

        program = torch.export.load(sources["torch"])
        with torch.no_grad():
            out = program.module()(**{k: torch.from_numpy(v) for k, v in feeds.items()})
        want = {k: v.numpy() for k, v in out.items()}
    assert set(got) == {"score", "probs"}
    for k in got:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6)


def keras_reload(path: Path):
    import keras

    return keras.saving.load_model(path)


def test_perturbed_onnx_fails_and_prints_minimum_atol(exported, tmp_path):
    """score + 1e-3 in the ONNX graph: the check fails (exit 1) and names the smallest atol that
    passes; that atol passes (exit 0) and anything below it fails."""
    import onnx

    artifacts = tmp_path / "artifacts"
    source_dir, _ = exported["torch"]
    manifest = Manifest.load(source_dir)
    entry = next(e for e in manifest.artifacts if e.format == "onnx")
    proto = onnx.load(source_dir / entry.path)
    producer = next(n for n in proto.graph.node if "score" in n.output)
    producer.output[list(producer.output).index("score")] = "score_raw"
    proto.graph.initializer.append(onnx.numpy_helper.from_array(np.array([1e-3], np.float32), "delta"))
    proto.graph.node.append(onnx.helper.make_node("Add", ["score_raw", "delta"], ["score"]))
    artifacts.mkdir()
    (artifacts / entry.path).write_bytes(proto.SerializeToString())
    (artifacts / entry.probe.path).write_bytes((source_dir / entry.probe.path).read_bytes())
    from dataclasses import replace

    from oneneuron.fsio import sha256_file

    perturbed = replace(entry, sha256=sha256_file(artifacts / entry.path))  # the hash matches: parity fails
    Root(artifacts).write_json("manifest.json", replace(manifest, artifacts=(perturbed,)).to_json())

    r = run_cli("-m", "serve.check", "--artifacts", str(artifacts))
    assert r.returncode == 1, r.stdout + r.stderr
    failed = [line for line in r.stdout.splitlines() if line.startswith("[FAIL]")]
    assert len(failed) == 2 and all(" score " in line for line in failed)  # onnxruntime, onnx.reference
    assert "min atol" in r.stdout and "checks FAILED" in r.stdout

    r = run_cli("-m", "serve.check", "--artifacts", str(artifacts), "--json")
    rows = [row for row in json.loads(r.stdout)["parity"] if row["output"] == "score"]
    min_atol = max(row["min_atol"] for row in rows)
    assert 5e-4 < min_atol <= 1.01e-3 and all(not row["ok"] for row in rows)
    assert f"{min_atol:.2e}" in run_cli("-m", "serve.check", "--artifacts", str(artifacts)).stdout
    ok = run_cli("-m", "serve.check", "--artifacts", str(artifacts), "--atol", f"score={min_atol * 1.0001}")
    assert ok.returncode == 0, ok.stdout
    below = run_cli("-m", "serve.check", "--artifacts", str(artifacts), "--atol", f"score={min_atol * 0.99}")
    assert below.returncode == 1


def export_in_process(monkeypatch, capsys, *argv: str) -> tuple[int, list[str]]:
    """`python -m export.all ARGV` in this process (TensorFlow and torch imported once): exit code,
    stderr lines. Only for runs that fail: a successful one ends the process (os._exit, cli.run)."""
    monkeypatch.setattr(sys, "argv", ["export.all", *argv])
    with warnings.catch_warnings(), pytest.raises(SystemExit) as info:
        warnings.simplefilter("ignore", RuntimeWarning)  # runpy: "found in sys.modules"
        runpy.run_module("export.all", run_name="__main__", alter_sys=True)
    return info.value.code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_unexportable_keras_model_one_line_nothing_written(tmp_path, monkeypatch, capsys):
    import keras
    import tf2onnx

    x = keras.Input((3, 3), name="x")
    keras.Model(x, keras.ops.linalg.svd(x)[1]).save(tmp_path / "svd.keras")
    artifacts = tmp_path / "artifacts"
    code, lines = export_in_process(
        monkeypatch,
        capsys,
        "--from-keras",
        str(tmp_path / "svd.keras"),
        "--name",
        "svd",
        "--artifacts",
        str(artifacts),
    )
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "Svd" in lines[0] and f"tf2onnx {tf2onnx.__version__}" in lines[0]
    assert not artifacts.exists()


def test_unexportable_torch_model_one_line_nothing_written(tmp_path, monkeypatch, capsys):
    import torch

    class Svd(torch.nn.Module):
        def forward(self, x):
            return torch.linalg.svdvals(x)

    save_program(Svd(), tmp_path / "svd.pt2", {"x": torch.randn(2, 3, 3)})
    artifacts = tmp_path / "artifacts"
    code, lines = export_in_process(
        monkeypatch,
        capsys,
        "--from-torch",
        str(tmp_path / "svd.pt2"),
        "--name",
        "svd",
        "--artifacts",
        str(artifacts),
    )
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "aten._linalg_svd" in lines[0] and f"torch {torch.__version__}" in lines[0]
    assert not artifacts.exists()


def test_probe_inputs_from_file_and_bad_ones(sources, tmp_path):
    from export.byom import ByomConfig, export_byom
    from oneneuron.errors import InputError

    good = tmp_path / "inputs.npz"
    feeds = fresh_inputs(rows=3, seed=5)
    np.savez(good, **feeds)
    entries = export_byom(tmp_path / "a", ByomConfig("torch", sources["torch"], "mine", probe_inputs=good))
    with np.load(tmp_path / "a" / entries[0].probe.path) as npz:
        np.testing.assert_array_equal(npz["inputs/token_ids"], feeds["token_ids"])
        np.testing.assert_array_equal(npz["inputs/features"], feeds["features"])

    np.savez(tmp_path / "float_ids.npz", features=feeds["features"], token_ids=feeds["token_ids"] + 0.5)
    with pytest.raises(InputError, match="token_ids.*float64; expected int64"):
        export_byom(
            tmp_path / "b",
            ByomConfig("torch", sources["torch"], "m", probe_inputs=tmp_path / "float_ids.npz"),
        )
    with pytest.raises(InputError, match=r"int-range 0:50"):  # ids beyond the Embedding's 10 rows
        export_byom(tmp_path / "c", ByomConfig("torch", sources["torch"], "m", int_range=(0, 50)))
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_tampered_selftest_refuses_to_load(exported, tmp_path):
    import onnx

    from oneneuron.errors import IntegrityError
    from serve.loader import load

    artifacts, _ = exported["keras"]
    entry = next(e for e in Manifest.load(artifacts).artifacts if e.format == "onnx")
    proto = onnx.load(artifacts / entry.path)
    test = json.loads(entry.metadata["selftest"])
    test["outputs"]["score"][0][0] += 0.01
    onnx.helper.set_model_props(proto, {**entry.metadata, "selftest": json.dumps(test)})
    onnx.save(proto, tmp_path / "tampered.onnx")
    with pytest.raises(IntegrityError, match="self-test output 'score'"):
        load(tmp_path / "tampered.onnx")
    assert load(artifacts / entry.path).run(fresh_inputs(2))["probs"].shape == (2, 3)


def test_beside_the_articles_models(sources, exported_copy, capsys):
    """A brought-in model in the article's directory: both checked (the article's table unchanged),
    and re-exporting the article keeps the brought-in model."""
    from export.all import export_all
    from export.byom import ByomConfig, export_byom
    from serve import check

    article = {e.name for e in Manifest.load(exported_copy).artifacts}
    export_byom(exported_copy, ByomConfig("torch", sources["torch"], "mine"))
    capsys.readouterr()
    assert check.report(exported_copy) == 0
    out = capsys.readouterr().out
    article_table, mine_table = out.split("all 6 checks passed\n")  # the article's table comes first
    assert "keras_linear.onnx" in article_table and "mine" not in article_table
    # onnx in 2 runtimes, the program and TorchScript in torch; 2 outputs each
    assert mine_table.count("[ok]   mine.") == 8 and "all 8 checks passed" in mine_table
    manifest = Manifest.load(exported_copy)
    assert manifest.training_record is not None and manifest.probe is not None

    export_all(exported_copy)  # the article again
    kept = Manifest.load(exported_copy)
    assert {e.name for e in kept.artifacts} == article | {"mine.onnx", "mine.pt2", "mine.torchscript.pt"}
    assert all((exported_copy / e.path).exists() for e in kept.artifacts)
    assert (exported_copy / next(e for e in kept.artifacts if e.model == "mine").probe.path).exists()
    assert check.report(exported_copy) == 0


def every_dtype_keras(path: Path) -> None:
    import keras

    seq = keras.Input((None, 2), dtype="float64", name="seq")  # a dynamic time dimension
    mask = keras.Input((None,), dtype="bool", name="mask")
    half = keras.Input((2,), dtype="float16", name="half")
    ids = keras.Input((3,), dtype="int32", name="ids32")
    total = keras.ops.sum(keras.ops.sum(seq, -1) * keras.ops.cast(mask, "float64"), -1, keepdims=True)
    outputs = {"total": total, "any": keras.ops.any(mask, -1, keepdims=True), "h2": half * 2, "i": ids + 1}
    keras.Model([seq, mask, half, ids], {**outputs, "seq2": seq * 2}).save(path)


def every_dtype_torch(path: Path) -> None:
    import torch

    class EveryDtype(torch.nn.Module):
        def forward(self, seq, mask, half, ids32):
            total = (seq.sum(-1) * mask.to(seq.dtype)).sum(-1, keepdim=True)
            return {
                "total": total,
                "any": mask.any(-1, keepdim=True),
                "h2": half * 2,
                "i": ids32 + 1,
                "seq2": seq * 2,
            }

    example = {
        "seq": torch.randn(2, 3, 2, dtype=torch.float64),
        "mask": torch.ones(2, 3, dtype=torch.bool),
        "half": torch.ones(2, 2, dtype=torch.float16),
        "ids32": torch.ones(2, 3, dtype=torch.int32),
    }
    batch, time = torch.export.Dim("batch"), torch.export.Dim("time")
    shapes = {
        "seq": {0: batch, 1: time},
        "mask": {0: batch, 1: time},
        "half": {0: batch},
        "ids32": {0: batch},
    }
    torch.export.save(torch.export.export(EveryDtype(), (), kwargs=example, dynamic_shapes=shapes), path)


@pytest.mark.parametrize("framework", ["keras", "torch"])
def test_every_dtype_and_a_dynamic_time_dimension(framework, tmp_path):
    """float16/32/64, int32, bool inputs and outputs and a dynamic dimension besides the batch:
    exported, checked exactly (ints and bools equal), loaded and run with another time length."""
    from export.byom import ByomConfig, export_byom
    from serve.loader import load
    from serve.parity import Tolerances, run_parity

    source = tmp_path / ("m.keras" if framework == "keras" else "m.pt2")
    (every_dtype_keras if framework == "keras" else every_dtype_torch)(source)
    artifacts = tmp_path / "artifacts"
    export_byom(artifacts, ByomConfig(framework, source, "dtypes"))
    manifest = Manifest.load(artifacts)
    sig = manifest.artifacts[0].signature
    dtypes = {s.name: s.dtype for s in (*sig.inputs, *sig.outputs)}
    assert dtypes == {
        "seq": "float64", "mask": "bool", "half": "float16", "ids32": "int32",
        "total": "float64", "any": "bool", "h2": "float16", "i": "int32", "seq2": "float64",
    }  # fmt: skip
    seq = next(s for s in sig.inputs if s.name == "seq")
    assert seq.shape[0] == "batch" and isinstance(seq.shape[1], str) and seq.shape[2] == 2
    rows = run_parity(Root(artifacts), manifest, Tolerances())
    assert rows and all(r.ok for r in rows), [r for r in rows if not r.ok]
    assert {(r.output, r.atol) for r in rows if r.output in ("i", "any")} == {("i", 0.0), ("any", 0.0)}

    model = load("dtypes", artifacts=artifacts)  # the embedded selftest passes
    rng = np.random.default_rng(3)
    seq_in, mask_in = rng.standard_normal((2, 7, 2)), rng.integers(0, 2, (2, 7)).astype(bool)
    out = model.run(
        {"seq": seq_in, "mask": mask_in, "half": np.ones((2, 2), np.float16), "ids32": [[1, 2, 3]] * 2}
    )
    np.testing.assert_allclose(out["total"][:, 0], (seq_in.sum(-1) * mask_in).sum(-1), rtol=1e-12)
    np.testing.assert_array_equal(out["i"], [[2, 3, 4]] * 2)
    assert out["seq2"].shape == (2, 7, 2) and out["any"].dtype == np.bool_ and out["h2"].dtype == np.float16


def onnx_with_probe(directory: Path, node, rows: int = 40) -> None:
    """A one-node ONNX model a: float32 [batch, 2] -> y, its probe file (source outputs: a @ I = a)
    and a manifest entry naming both, as an export writes them."""
    from dataclasses import replace

    import onnx
    from onnx import TensorProto, helper

    from export.probe import Probe, to_bytes
    from oneneuron.manifest import onnx_entry, write_standalone
    from oneneuron.schema import ProbeRef, Signature, TensorSpec

    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        [onnx.numpy_helper.from_array(np.eye(2, dtype=np.float32), "b")],
    )  # fmt: skip
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)]
    directory.mkdir()
    onnx.save(helper.make_model(graph, opset_imports=opsets), directory / "m.onnx")
    a = np.random.default_rng(0).standard_normal((rows, 2)).astype(np.float32)
    root = Root(directory)
    probe = ProbeRef(
        *root.store_immutable("m.probe.npz", lambda p: p.write_bytes(to_bytes(Probe({"a": a}, {"y": a}))))
    )
    sig = Signature((TensorSpec("a", "float32", ("batch", 2)),), (TensorSpec("y", "float32", ("batch", 2)),))
    write_standalone(root, [replace(onnx_entry(root, "m.onnx", "m", sig), probe=probe)])


def test_reference_evaluator_rows_say_what_they_did_not_run(tmp_path, monkeypatch):
    """An op onnx.reference lacks: its row is skipped with the reason (onnxruntime's decides); over
    the time budget it runs the rows that fit and says how many."""
    from onnx import helper

    from serve import parity

    fused = helper.make_node("FusedMatMul", ["a", "b"], ["y"], domain="com.microsoft", alpha=1.0)
    onnx_with_probe(tmp_path / "fused", fused)
    rows = parity.run_parity(Root(tmp_path / "fused"), Manifest.load(tmp_path / "fused"), parity.Tolerances())
    by_runtime = {r.runtime: r for r in rows}
    assert by_runtime["onnxruntime"].ok and by_runtime["onnxruntime"].max_abs == 0
    ref = by_runtime["onnx.reference"]
    assert ref.skipped and ref.ok and "FusedMatMul" in ref.note
    assert "[skip]" in parity.format_rows(rows) and "all 2 checks passed" in parity.format_rows(rows)

    onnx_with_probe(tmp_path / "matmul", helper.make_node("MatMul", ["a", "b"], ["y"]))
    monkeypatch.setattr(parity, "REFERENCE_BUDGET", 1e-9)
    rows = parity.run_parity(
        Root(tmp_path / "matmul"), Manifest.load(tmp_path / "matmul"), parity.Tolerances()
    )
    ref = next(r for r in rows if r.runtime == "onnx.reference")
    assert ref.skipped and "over the 1e-09 s budget" in ref.note
    clock = iter(range(0, 1000, 2))  # each perf_counter() call is 2 s later: one row takes 2 s
    monkeypatch.setattr(parity.time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(parity, "REFERENCE_BUDGET", 20.0)
    rows = parity.run_parity(
        Root(tmp_path / "matmul"), Manifest.load(tmp_path / "matmul"), parity.Tolerances()
    )
    ref = next(r for r in rows if r.runtime == "onnx.reference")
    assert ref.ok and not ref.skipped and ref.rows == 10 and ref.note.startswith("first 10 of 40 rows")


def test_no_torchscript_when_the_trace_does_not_reproduce_the_program(tmp_path):
    """A size the program computes (arange over the batch) is a constant in a trace: no TorchScript
    file, every entry says why, and what was exported passes the check."""
    import torch

    from export.byom import ByomConfig, export_byom
    from serve.parity import Tolerances, run_parity

    class Arange(torch.nn.Module):
        def forward(self, x):
            return x + torch.arange(x.shape[0], dtype=x.dtype)[:, None]

    save_program(Arange(), tmp_path / "arange.pt2", {"x": torch.randn(2, 3)})
    entries = export_byom(tmp_path / "a", ByomConfig("torch", tmp_path / "arange.pt2", "arange"))
    assert {e.format for e in entries} == {"onnx", "exportedprogram"}
    assert all("3 rows" in e.unavailable["torchscript"] for e in entries)
    assert not list((tmp_path / "a").glob("*torchscript*"))
    manifest = Manifest.load(tmp_path / "a")
    assert all(e.unavailable == entries[0].unavailable for e in manifest.artifacts)
    assert all(r.ok for r in run_parity(Root(tmp_path / "a"), manifest, Tolerances()))


def byom_cli_export(artifacts: Path, source: Path, *flags: str):
    """export.all's own argument handling for --from-torch (export/_core.py main_for adds
    --keep-versions before byom's flags), then the export it chose, in this process."""
    import argparse

    from export.byom import add_options
    from oneneuron.manifest import KEEP_VERSIONS

    p = argparse.ArgumentParser()
    p.add_argument("--keep-versions", type=int, default=KEEP_VERSIONS)
    prepare = add_options(p)
    args = p.parse_args(["--from-torch", str(source), "--name", "clf", *flags])
    prepare(args)
    return args.export(artifacts, None)


def test_from_torch_keeps_the_versions_it_is_told(tmp_path):
    """--keep-versions 1 with --from-torch leaves one stored version (issue 20 item 9)."""
    from tests.architectures import classifier_torch

    sources = [classifier_torch(tmp_path / f"clf{seed}.pt2", seed=seed) for seed in range(2)]
    for source in sources:
        byom_cli_export(tmp_path / "kept", source)
        byom_cli_export(tmp_path / "one", source, "--keep-versions", "1")
    assert len(Manifest.load(tmp_path / "kept").versions("clf")) == 2  # the default keeps 3
    one = Manifest.load(tmp_path / "one")
    assert len(one.versions("clf")) == 1 and not one.previous
    # the previous generation's file stays until the next export (export/_core.py)
    assert len(list((tmp_path / "one").glob("clf.*.onnx"))) == 2


def test_from_torch_refreshes_a_triton_repository(tmp_path):
    """A Triton repository export.triton made is refreshed by --from-torch as by export.all, so
    serve.check does not call it stale (issue 20 item 9)."""
    from export.triton import export_triton
    from export.triton_state import triton_state
    from tests.architectures import classifier_torch

    artifacts = tmp_path / "artifacts"
    byom_cli_export(artifacts, classifier_torch(tmp_path / "a.pt2"))
    export_triton(artifacts)  # a brought-in model is published too (its self-test is its probe)
    assert triton_state(artifacts, Manifest.load(artifacts)).ok
    byom_cli_export(artifacts, classifier_torch(tmp_path / "b.pt2", seed=1))
    state = triton_state(artifacts, Manifest.load(artifacts))
    assert state.ok, state.line()
