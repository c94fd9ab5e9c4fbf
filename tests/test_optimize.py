"""export.optimize (export/optimize.py): a 3-class MLP (hidden 64) and a tiny CNN, built here with
plain torch and brought in through export.byom, get int8 (dynamic, static), fp16 and graph-opt
variants within a generous budget; an impossible budget writes nothing and exits 1; a variant whose
quantization scale is damaged (and re-hashed into the manifest) fails serve.check; a variant loads
with the loader and serves over HTTP V2 in-process. Timing runs are cut short (`latency_seconds`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from export.optimize import OptimizeConfig, optimize
from oneneuron.schema import Manifest
from tests.conftest import copy_artifacts, run_cli

GENEROUS = {"top1": 0.9, "rel": 0.5}
FEATURES, HIDDEN, CLASSES = 8, 64, 3


def _modules():
    import torch

    class MLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Linear(FEATURES, HIDDEN), torch.nn.Linear(HIDDEN, HIDDEN)
            self.c = torch.nn.Linear(HIDDEN, CLASSES)

        def forward(self, x):
            return {"probs": torch.softmax(self.c(torch.relu(self.b(torch.relu(self.a(x))))), -1)}

    class CNN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
            self.head = torch.nn.Linear(4 * 4 * 4, CLASSES)

        def forward(self, image):
            h = torch.nn.functional.max_pool2d(torch.relu(self.conv(image)), 2)
            return {"logits": self.head(h.flatten(1))}

    torch.manual_seed(0)
    return MLP().eval(), CNN().eval()


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """Both models brought in (export.byom) into one directory, plus validation rows. Read-only."""
    import torch

    from export.byom import ByomConfig, export_byom
    from tests.test_byom import save_program

    root = tmp_path_factory.mktemp("optimize")
    mlp, cnn = _modules()
    save_program(mlp, root / "mlp.pt2", {"x": torch.randn(2, FEATURES)})
    save_program(cnn, root / "cnn.pt2", {"image": torch.randn(2, 1, 8, 8)})
    for name in ("mlp", "cnn"):
        export_byom(root / "artifacts", ByomConfig("torch", root / f"{name}.pt2", name))
    rng = np.random.default_rng(1)
    np.savez(root / "mlp_val.npz", x=rng.standard_normal((64, FEATURES)).astype(np.float32))
    np.savez(root / "cnn_val.npz", image=rng.standard_normal((32, 1, 8, 8)).astype(np.float32))
    return root


@pytest.fixture(scope="module")
def optimized(models, tmp_path_factory) -> Path:
    """A copy of `models` with every method's variant committed (in-process). Read-only."""
    artifacts = copy_artifacts(models / "artifacts", tmp_path_factory.mktemp("optimized") / "artifacts")
    for model, methods in (
        ("mlp", ("int8-static", "fp16", "graph-opt", "int8-dynamic")),
        ("cnn", ("int8-dynamic",)),
    ):
        for method in methods:
            cfg = OptimizeConfig(
                artifacts,
                model,
                (method,),
                GENEROUS,
                calibration=models / f"{model}_val.npz",
                data=models / f"{model}_val.npz",
                latency_seconds=0.01,
            )
            outcome = optimize(cfg)
            assert outcome.entry is not None, [t.why for t in outcome.trials]
    return artifacts


def test_each_method_commits_a_variant_within_the_budget(optimized):
    manifest = Manifest.load(optimized)
    variants = {e.model: e for e in manifest.artifacts if e.variant is not None}
    assert set(variants) == {"mlp.int8", "mlp.fp16", "mlp.opt", "cnn.int8"}
    parent = manifest.find("mlp", "onnx")
    int8 = variants["mlp.int8"]
    assert int8.variant.method == "int8-dynamic" and int8.version == 2  # the static one is version 1
    assert [e.variant.method for e in manifest.previous if e.model == "mlp.int8"] == ["int8-static"]
    for e in variants.values():
        v = e.variant
        assert v.judged_on == "data" and v.budget == GENEROUS and v.data["top1"] >= 0.9
        assert e.metadata["variant_of"] == v.parent and e.metadata["model"] == e.model
    assert variants["mlp.int8"].variant.parent_sha256 == parent.sha256
    assert variants["mlp.int8"].size < 0.6 * parent.size  # int8 weights
    assert variants["mlp.fp16"].size < 0.8 * parent.size
    assert variants["mlp.opt"].variant.settings["only_for"].startswith("onnxruntime ")
    assert variants["cnn.int8"].variant.class_outputs == ("logits",)


def test_check_shows_every_variant_against_its_parent(optimized):
    r = run_cli("-m", "serve.check", "--artifacts", str(optimized), "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    rows = json.loads(r.stdout)["variants"]
    assert {row["artifact"] for row in rows} == {
        "mlp.int8.onnx",
        "mlp.fp16.onnx",
        "mlp.opt.onnx",
        "cnn.int8.onnx",
    }
    assert all(row["ok"] for row in rows) and {row["metric"] for row in rows} == {"top1", "rel"}


def test_impossible_budget_writes_nothing_and_exits_1(models, tmp_path):
    artifacts = copy_artifacts(models / "artifacts", tmp_path / "artifacts")
    before = (artifacts / "manifest.json").read_bytes(), sorted(p.name for p in artifacts.iterdir())
    r = run_cli(
        "-m", "export.optimize", "--artifacts", str(artifacts), "--model", "mlp", "--int8", "dynamic",
        "--budget", "abs<=0", "--latency-seconds", "0.01",
    )  # fmt: skip
    assert r.returncode == 1, r.stdout + r.stderr
    assert "[FAIL] int8-dynamic" in r.stdout and "abs " in r.stdout and "<= 0: FAILED by" in r.stdout
    assert "nothing written" in r.stdout.splitlines()[-1]
    assert ((artifacts / "manifest.json").read_bytes(), sorted(p.name for p in artifacts.iterdir())) == before


def test_corrupted_scale_is_refused_by_the_check(optimized, tmp_path):
    import onnx
    from onnx import numpy_helper

    from oneneuron.fsio import Root, sha256_file
    from serve.variants import run_variants

    artifacts = copy_artifacts(optimized, tmp_path / "artifacts")
    doc = json.loads((artifacts / "manifest.json").read_text())
    entry = next(e for e in doc["artifacts"] if e["model"] == "mlp.int8")
    path = artifacts / entry["path"]
    proto = onnx.load(path)
    scale = next(t for t in proto.graph.initializer if t.name.endswith("_scale"))
    scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * 50, scale.name))
    path.unlink()  # the stored file is a hard link shared with its alias
    onnx.save(proto, path)
    entry["sha256"], entry["size"] = sha256_file(path), path.stat().st_size
    (artifacts / "manifest.json").write_text(json.dumps(doc, indent=2))
    rows = run_variants(Root(artifacts), Manifest.load(artifacts))
    failed = [r for r in rows if not r.ok]
    assert failed and {r.artifact for r in failed} == {"mlp.int8.onnx"}, rows
    r = run_cli("-m", "serve.check", "--artifacts", str(artifacts))
    assert r.returncode == 1 and "[FAIL] mlp.int8.onnx" in r.stdout


def test_variant_loads_and_serves_over_v2(optimized):
    from serve import load
    from tests.serve_app import client

    x = np.random.default_rng(2).standard_normal((3, FEATURES)).astype(np.float32)
    model = load("mlp.int8", optimized)
    assert model.verified and model.name == "mlp.int8" and model.metadata["variant_method"] == "int8-dynamic"
    parent = load("mlp", optimized).run({"x": x})["probs"]
    got = model.run({"x": x})["probs"]
    assert np.argmax(got, 1).tolist() == np.argmax(parent, 1).tolist()
    # The server: the CNN's variant (a [batch, K] output behind one 2-D float input takes the classic
    # one-output path, which serves (rows, 1) only: a limitation of the server, not of variants).
    image = np.random.default_rng(3).standard_normal((2, 1, 8, 8)).astype(np.float32)
    want = load("cnn.int8", optimized).run({"image": image})["logits"]
    api = client(optimized)
    inputs = [
        {"name": "image", "shape": list(image.shape), "datatype": "FP32", "data": image.ravel().tolist()}
    ]
    r = api.post("/v2/models/cnn.int8/infer", json={"inputs": inputs})
    assert r.status_code == 200, r.text
    out = next(o for o in r.json()["outputs"] if o["name"] == "logits")
    np.testing.assert_allclose(np.asarray(out["data"]).reshape(2, CLASSES), want, rtol=1e-6)
    assert api.get("/v2/models/cnn.int8").json()["name"] == "cnn.int8"


def test_budget_and_calibration_errors_are_one_line(models):
    r = run_cli(
        "-m", "export.optimize", "--artifacts", str(models / "artifacts"), "--model", "mlp",
        "--int8", "static",
    )  # fmt: skip
    assert r.returncode == 2 and "--int8 static needs --calibration" in r.stderr
    r = run_cli("-m", "export.optimize", "--model", "mlp", "--fp16", "--budget", "top1<=0.9")
    assert r.returncode == 2 and "top1 takes >=" in r.stderr


WORTH_IT = [
    (
        "int8-dynamic",
        0.92,
        0.88,
        "int8 is 0.92x the fp32 latency at batch 1 and 0.88x at batch 8: not worth it",
    ),
    (
        "int8-static",
        1.2,
        0.7,
        "1.20x the fp32 latency at batch 1 and 0.70x at batch 8: faster at batch 8 only, not",
    ),
    ("int8-dynamic", 0.33, 0.3, "int8 is 0.33x the fp32 latency at batch 1 and 0.30x at batch 8: faster"),
    ("fp16", 0.95, 1.04, "1.04x at batch 8: about as fast as its parent (within 10%)"),
    ("graph-opt", 0.85, 0.9, "0.90x at batch 8: not clearly faster than its parent"),
    ("fp16", 1.3, 1.2, "1.20x at batch 8: slower than its parent"),
]


@pytest.mark.parametrize(("method", "b1", "b8", "said"), WORTH_IT)
def test_the_verdict_calls_a_variant_faster_only_when_it_is(method, b1, b8, said):
    """0.92x is not a speed-up worth int8's risk: the verdict says so (issue 22: at hidden 64 int8
    ran at 0.9x); a speed-up is claimed only at <= 0.8x (export/optimize_table.py PAYS)."""
    from export.optimize import Trial
    from export.optimize_table import speed_sentence

    trial = Trial(method, "m.int8")
    trial.performance = {"size": 25, "parent_size": 100, "ms_b1": b1, "ms_b8": b8}
    trial.performance |= {"parent_ms_b1": 1, "parent_ms_b8": 1}
    sentence = speed_sentence(trial)
    assert sentence.startswith("0.25x the size; ") and said in sentence, sentence
    assert sentence.endswith(": faster") == (max(b1, b8) <= 0.8), sentence  # faster at both, or not said


def test_variant_of_a_model_with_rows_too_large_to_embed_self_tests_on_the_probe(tmp_path):
    """A 3x32x32 image is ~60 KiB of JSON a row: the parent's self-test is its probe file's first
    rows (`selftest_probe`), and the variant's is the same rows against its own outputs
    (`selftest_probe_outputs`), run at load; its outputs changed, the self-test fails."""
    import torch

    from export.byom import ByomConfig, export_byom
    from serve import load
    from serve.selftest import PROBE_OUTPUTS_KEY, probe_values, run
    from tests.test_byom import save_program

    class Conv(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.head = torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.Linear(8, CLASSES)

        def forward(self, image):
            return {"logits": self.head(torch.relu(self.conv(image)).mean((2, 3)))}

    torch.manual_seed(0)
    save_program(Conv().eval(), tmp_path / "conv.pt2", {"image": torch.randn(2, 3, 32, 32)})
    artifacts = tmp_path / "artifacts"
    export_byom(artifacts, ByomConfig("torch", tmp_path / "conv.pt2", "conv"))
    cfg = OptimizeConfig(artifacts, "conv", ("int8-dynamic",), GENEROUS, latency_seconds=0.01)
    outcome = optimize(cfg)
    assert outcome.entry is not None, [t.why for t in outcome.trials]
    entry = Manifest.load(artifacts).find("conv.int8", "onnx")
    assert "selftest" not in entry.metadata and entry.metadata["selftest_probe"] == entry.probe.sha256
    model = load("conv.int8", artifacts)  # runs the self-test
    assert model.verified and json.loads(model.metadata[PROBE_OUTPUTS_KEY])["atol"] == 1e-3
    doc = json.loads(model.metadata[PROBE_OUTPUTS_KEY])
    doc["outputs"]["logits"][0][0] += 0.5
    model.metadata[PROBE_OUTPUTS_KEY] = json.dumps(doc)
    from oneneuron.errors import IntegrityError
    from oneneuron.fsio import Root

    with pytest.raises(IntegrityError, match="self-test output 'logits' expected"):
        run(model, given=probe_values(model, Root(artifacts), entry))
