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


CONTRACT_FILE = ROOT / "serve" / "node" / "contract.json"


def test_python_and_javascript_read_one_contract():
    """serve/node/contract.json is the one place for the limits, name pattern, dtype table and fixes:
    Node's constants and Python's (oneneuron/contract.py and the modules built from it) are its values."""
    from export import probe, triton
    from oneneuron import dtypes, fixes, schema, selftest
    from serve import inputs
    from serve import selftest as general

    contract = json.loads(CONTRACT_FILE.read_text())
    m, st = contract["manifest"], contract["selftest"]
    script = (
        "import * as m from './serve/node/manifest.mjs'; import * as c from './serve/node/core.mjs';"
        "import { DTYPES, fix } from './serve/node/contract.mjs';"
        "console.log(JSON.stringify({name: m.NAME_PATTERN, formats: m.FORMATS, dtypes: m.DTYPES,"
        " version: m.SCHEMA_VERSION, bytes: m.MAX_JSON_BYTES, depth: m.MAX_DEPTH, items: m.MAX_ITEMS,"
        " generation: m.MAX_GENERATION, string: m.MAX_STRING,"
        " atol: c.SELFTEST_ATOL, rtol: c.SELFTEST_RTOL, chars: c.MAX_SELFTEST_CHARS, tol: c.MAX_SELFTEST_TOL,"
        " ranges: Object.fromEntries(Object.values(DTYPES).filter(d => d.range)"
        "   .map(d => [d.name, d.range.map(String)])),"
        " descr: Object.fromEntries(Object.values(DTYPES).map(d => [d.name, d.descr])),"
        " fixes: Object.fromEntries(Object.keys(" + json.dumps(contract["fixes"]) + ")"
        "   .flatMap(k => [[k, fix(k)], [k + '@', fix(k, 'DIR')]]))}));"
    )
    result = node_eval(script)
    assert result.returncode == 0, result.stderr
    js = json.loads(result.stdout)
    # Node: every constant is the file's
    keys = ("name", "version", "bytes", "depth", "items", "generation", "string")
    assert tuple(js[k] for k in keys) == (
        m["name_pattern"],
        m["schema_version"],
        m["max_json_bytes"],
        m["max_depth"],
        m["max_items"],
        m["max_generation"],
        m["max_string"],
    )
    assert js["formats"] == sorted(m["formats"])
    assert js["dtypes"] == sorted(d["name"] for d in contract["dtypes"] if d["manifest"])
    assert (js["atol"], js["rtol"], js["chars"], js["tol"]) == (
        st["atol"],
        st["rtol"],
        st["max_chars"],
        st["max_tol"],
    )
    for name, (lo, hi) in js["ranges"].items():  # integer ranges derived from kind and bits: numpy's
        info = np.iinfo(name)
        assert (int(lo), int(hi)) == (info.min, info.max), name
    for name, descr in js["descr"].items():  # the .npy type strings the probe reader accepts: numpy's
        assert np.dtype(name).newbyteorder("<").str.replace("<i1", "|i1").replace("<u1", "|u1") == descr, name
    for key in contract["fixes"]:
        assert js["fixes"][key] == fixes.fix(key) and js["fixes"][key + "@"] == fixes.fix(key, "DIR"), key

    # Python: the same values, read from the same file
    assert (schema.NAME_PATTERN, schema.SCHEMA_VERSION, schema.MAX_JSON_BYTES, schema.MAX_DEPTH) == (
        m["name_pattern"],
        m["schema_version"],
        m["max_json_bytes"],
        m["max_depth"],
    )
    assert (schema.MAX_ITEMS, schema.MAX_GENERATION, schema.MAX_STRING) == (
        m["max_items"],
        m["max_generation"],
        m["max_string"],
    )
    assert dict(schema.FORMATS) == m["formats"] and sorted(schema.DTYPES) == js["dtypes"]
    assert (schema.SELFTEST_ATOL, schema.SELFTEST_RTOL) == (st["atol"], st["rtol"])
    assert (selftest.MAX_SELFTEST_CHARS, selftest.MAX_SELFTEST_TOL) == (st["max_chars"], st["max_tol"])
    assert (general.MAX_CHARS, general.MAX_TOL, general.MAX_ROWS) == (
        st["max_chars"],
        st["max_tol"],
        st["max_rows"],
    )
    assert (probe.MAX_PROBE_BYTES, probe.MAX_UNPACKED) == (st["max_probe_bytes"], st["max_probe_unpacked"])
    assert dict(fixes.FIXES) == contract["fixes"]
    rows = {d["name"]: d for d in contract["dtypes"]}
    assert {d.name: d.ort for d in dtypes.DTYPES} == {k: r["ort"] for k, r in rows.items()}
    fed = {k: np.dtype(v).name for k, v in inputs.ORT_DTYPES.items()}
    assert fed == {r["ort"]: k for k, r in rows.items()}
    assert triton.TRITON_TYPES == {r["onnx"]: r["triton"] for r in rows.values() if r["manifest"]}
    for name, row in rows.items():  # the table's own facts agree with numpy and onnx
        assert onnx.helper.tensor_dtype_to_np_dtype(row["onnx"]) == np.dtype(name), name
        assert np.dtype(name).itemsize * 8 == row["bits"], name


def test_the_contract_ships_with_the_package_and_the_page():
    """npm pack includes contract.json (package.json "files"); the page's server serves it."""
    package = json.loads((ROOT / "serve" / "node" / "package.json").read_text())
    assert "contract.json" in package["files"]
    for module in ("contract.mjs", "errors.mjs", "npz.mjs", "selftest.mjs", "tensors.mjs", "manifest.mjs"):
        assert module in package["files"], module
    from serve.web.app import LIB_FILES

    assert {"contract.json", "contract.mjs"} <= LIB_FILES
