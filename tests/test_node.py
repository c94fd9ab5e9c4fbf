"""serve/node: the Node.js CLI and module agree with Python onnxruntime and fail clearly."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from tests.conftest import ROOT

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(
    NODE is None,
    reason="node not found: install Node.js 20+ "
    "(apt-get install -y nodejs npm) to run the Node.js embedding tests",
)
CLI = "serve/node/predict.mjs"
MODELS = ("keras_linear", "torch_linear")


@pytest.fixture(scope="module", autouse=True)
def node_modules():
    if not (ROOT / "node_modules" / "onnxruntime-node" / "package.json").is_file():
        pytest.fail(
            "node_modules/onnxruntime-node is missing: run `npm ci --ignore-scripts` at the repository "
            "root (make test does)"
        )


def node(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([NODE, *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def node_eval(script: str) -> subprocess.CompletedProcess:
    """Run an ES-module snippet with the repository root as working directory."""
    return node("--input-type=module", "-e", script)


def python_ort(path, rows) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: np.asarray(rows, dtype=np.float32)})[0].ravel()


@pytest.mark.parametrize("model", MODELS)
def test_probe_batch_matches_python_onnxruntime(exported_dir, model):
    manifest = json.loads((exported_dir / "manifest.json").read_text())
    rows = manifest["probe"]["x"]
    path = exported_dir / f"{model}.onnx"
    result = node(CLI, str(path), *(str(r[0]) for r in rows))
    assert result.returncode == 0, result.stderr
    got = np.array([float(line) for line in result.stdout.split()])
    np.testing.assert_allclose(got, python_ort(path, rows), rtol=0, atol=1e-6)
    assert f"self-test ok: {model}" in result.stderr


def test_json_output_and_importable_module(exported_dir):
    path = exported_dir / "torch_linear.onnx"
    result = node(CLI, "--json", str(path), "10")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["model"] == "torch_linear" and out["source_framework"] == "torch" and out["opset"] == 18
    assert out["x"] == [[10]] and out["selftest"]["expected"] == out["selftest"]["actual"]
    script = (
        f"import {{ load, predict }} from './serve/node/model.mjs';"
        f"const m = await load({json.dumps(str(path))});"
        "console.log(JSON.stringify({y: await predict(m, [1, 2]), n: m.nFeatures, md: m.metadata}));"
    )
    result = node_eval(script)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    np.testing.assert_allclose(out["y"], python_ort(path, [[1], [2]]), rtol=0, atol=1e-6)
    assert out["n"] == 1 and out["md"]["selftest_x"] == "[[10.0]]"


def test_bad_path(tmp_path):
    missing = tmp_path / "nope.onnx"
    result = node(CLI, str(missing), "10")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {missing}: no such file; give the path of an exported .onnx file "
        "(e.g. artifacts/keras_linear.onnx; python -m export.onnx writes them)"
    )
    result = node(CLI, str(tmp_path), "10")
    assert result.returncode == 2 and "is a directory" in result.stderr


@pytest.mark.parametrize("text", ["abc", "", "0x10", "1,5", "NaN", "Infinity", "1e39"])
def test_non_number(exported_dir, text):
    result = node(CLI, str(exported_dir / "keras_linear.onnx"), "2", text)
    assert result.returncode == 2
    assert result.stdout == ""
    message = result.stderr.strip().splitlines()[-1]
    if text == "1e39":
        assert message == "error: 1e39 is beyond float32's range (±3.4e38); give a finite number such as 10"
    elif text == "1,5":
        assert "the model takes 1 feature(s) per row" in message
    else:
        assert message == f'error: "{text}" is not a number; give a decimal such as 10, -2.5 or 1e3'


def test_usage_without_arguments():
    result = node(CLI)
    assert result.returncode == 2 and "usage: node serve/node/predict.mjs" in result.stderr
    assert node(CLI, "--help").returncode == 0


def with_metadata(src, dst, **changes):
    proto = onnx.load(src)
    for prop in proto.metadata_props:
        if prop.key in changes:
            prop.value = changes[prop.key]
    onnx.save(proto, dst)


def test_failed_selftest(exported_dir, tmp_path):
    lying = tmp_path / "lying.onnx"  # no manifest beside it: only the self-test can catch it
    with_metadata(exported_dir / "torch_linear.onnx", lying, selftest_y="123.0")
    result = node(CLI, str(lying), "10")
    assert result.returncode == 1 and result.stdout == ""
    assert f"error: {lying}: self-test at x = [[10]] expected 123, got 18.99" in result.stderr
    assert "re-run python -m export.onnx" in result.stderr


def test_sha256_checked_against_manifest(exported_copy):
    path = exported_copy / "keras_linear.onnx"
    with_metadata(path, path, source_framework="tensorflow ")  # any change to the bytes
    result = node(CLI, str(path), "10")
    assert result.returncode == 1
    assert f"error: {path}: sha256 " in result.stderr and "!= manifest" in result.stderr


def test_not_an_onnx_file(tmp_path):
    bogus = tmp_path / "bogus.onnx"
    bogus.write_text('{"not": "onnx"}')
    result = node(CLI, str(bogus), "10")
    assert result.returncode == 1 and "not a loadable ONNX model" in result.stderr


def test_metadata_reader_matches_onnx(exported_dir, tmp_path):
    paths = [exported_dir / f"{m}.onnx" for m in MODELS]
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes((exported_dir / "torch_linear.onnx").read_bytes()[:100])
    script = (
        "import { readOnnxInfo } from './serve/node/onnx_info.mjs'; import fs from 'node:fs';"
        f"const out = {json.dumps([str(p) for p in paths])}.map(p => readOnnxInfo(fs.readFileSync(p)));"
        "for (const bad of [new Uint8Array(0), fs.readFileSync(" + json.dumps(str(truncated)) + ")]) {"
        "  try { readOnnxInfo(bad); out.push('parsed'); } catch (e) { out.push(e.constructor.name); } }"
        "console.log(JSON.stringify(out));"
    )
    result = node_eval(script)
    assert result.returncode == 0, result.stderr
    *infos, empty, cut = json.loads(result.stdout)
    for path, info in zip(paths, infos, strict=True):
        proto = onnx.load(path)
        assert info["metadata"] == {p.key: p.value for p in proto.metadata_props}
        assert info["opsets"] == {o.domain: o.version for o in proto.opset_import}
        assert info["irVersion"] == proto.ir_version
        assert (info["producerName"], info["producerVersion"]) == (
            proto.producer_name,
            proto.producer_version,
        )
    assert empty == "OnnxFormatError" and cut == "OnnxFormatError"


def two_feature_model(path, w=(2.0, -3.0), b=0.5):
    """y = x @ w + b over 2 features, with the same metadata contract as the exported models."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
        "two_features",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])],
        [
            helper.make_tensor("w", TensorProto.FLOAT, [2, 1], list(w)),
            helper.make_tensor("b", TensorProto.FLOAT, [1], [b]),
        ],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    selftest_y = float(np.float32(10 * w[0] + 20 * w[1] + b))
    helper.set_model_props(
        proto,
        {
            "model": "two_features",
            "source_framework": "onnx.helper",
            "n_features": "2",
            "selftest_x": "[[10.0, 20.0]]",
            "selftest_y": repr(selftest_y),
        },
    )
    onnx.save(proto, path)
    return path


def test_multi_feature_rows_are_comma_separated(tmp_path):
    path = two_feature_model(tmp_path / "two.onnx")
    result = node(CLI, str(path), "1,2", "-3,4.5")
    assert result.returncode == 0, result.stderr
    got = [float(v) for v in result.stdout.split()]
    np.testing.assert_allclose(got, python_ort(path, [[1, 2], [-3, 4.5]]), rtol=0, atol=1e-6)
    result = node(CLI, str(path), "1")
    assert result.returncode == 2
    assert (
        '"1" has 1 value(s); the model takes 2 feature(s) per row: give a comma-separated row, e.g. 1,2'
        in result.stderr
    )


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    return text.split(f"\n### {title}\n", 1)[1].split("\n### ", 1)[0]


def test_readme_node_commands_run_as_shown(exported_dir):
    section = readme_section("Node.js")
    command, printed = re.search(
        r"\n(node serve/node/predict\.mjs [^\n#]+?)\s+# prints ([^\n]+)", section
    ).groups()
    args = command.split()[1:]
    result = node(*[a.replace("artifacts/", f"{exported_dir}/") for a in args])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == printed.split()
    script = re.search(r"```js\n(.*?)```", section, re.S).group(1)
    code, expected = script.rsplit("// ", 1)
    # The snippet imports the package by name ("oneneuron-embed"): inside serve/node that name
    # resolves to the package itself (package.json "exports"); tests/test_install.py runs it
    # from an app that installed the package.
    code = code.replace(
        'from "oneneuron-embed"', f'from "{(ROOT / "serve" / "node" / "model.mjs").as_uri()}"'
    )
    result = node_eval(code.replace('"artifacts/', f'"{exported_dir}/'))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected.strip()


def test_a_fifo_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "model.onnx"  # no manifest beside it: the lone-file path must not block either
    os.mkfifo(fifo)
    result = node(CLI, str(fifo), "10")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip() == (
        f"error: {fifo}: not a regular file (a FIFO); re-run python -m export.all"
    ), result.stderr


def test_javascript_rules_use_the_python_constants():
    """manifest.mjs and core.mjs restate the bounds of oneneuron/schema.py and serve/loader.py."""
    from oneneuron import schema, selftest

    script = (
        "import * as m from './serve/node/manifest.mjs'; import * as c from './serve/node/core.mjs';"
        "console.log(JSON.stringify({name: m.NAME_PATTERN, formats: m.FORMATS, dtypes: m.DTYPES,"
        " version: m.SCHEMA_VERSION, bytes: m.MAX_JSON_BYTES, depth: m.MAX_DEPTH, items: m.MAX_ITEMS,"
        " generation: m.MAX_GENERATION,"
        " atol: c.SELFTEST_ATOL, rtol: c.SELFTEST_RTOL, chars: c.MAX_SELFTEST_CHARS,"
        " tol: c.MAX_SELFTEST_TOL}));"
    )
    result = node_eval(script)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "name": schema.NAME_PATTERN,
        "formats": sorted(schema.FORMATS),
        "dtypes": sorted(schema.DTYPES),
        "version": schema.SCHEMA_VERSION,
        "bytes": schema.MAX_JSON_BYTES,
        "depth": schema.MAX_DEPTH,
        "items": schema.MAX_ITEMS,
        "generation": schema.MAX_GENERATION,
        "atol": schema.SELFTEST_ATOL,
        "rtol": schema.SELFTEST_RTOL,
        "chars": selftest.MAX_SELFTEST_CHARS,
        "tol": selftest.MAX_SELFTEST_TOL,
    }
