"""serve/node for any signature: `run(model, feeds)` and the CLI's `--inputs file.json` agree with the
Python loader's `Model.run`, convert dtypes exactly like it (int8 refuses 300, float16 refuses 1e6,
a bool is not a number) and run the general `selftest` metadata (issue 11, section 4)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from serve import load
from serve.loader import PredictInputError
from tests.anysig_helpers import NAME, SELFTEST_INPUTS, anysig_dir
from tests.test_node import node, node_eval

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node not found: install Node.js 20+")
CLI = "serve/node/predict.mjs"
FEEDS = {"features": [[1.0, 2.0, 3.0], [0.5, -4.0, 2.25], [1e-3, 7.0, -1.5]], "ids": [[3], [-2], [40]]}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    return anysig_dir(tmp_path_factory.mktemp("node_anysig"))


def node_run(path, feeds) -> dict:
    script = (
        f'import {{ load, run }} from "./serve/node/model.mjs";\n'
        f"const model = await load({json.dumps(str(path))});\n"
        f"const out = await run(model, {json.dumps(feeds)});\n"
        "console.log(JSON.stringify({ out, st: model.selftestResult }));"
    )
    result = node_eval(script)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_module_run_matches_the_python_loader(artifacts):
    path = artifacts / f"{NAME}.onnx"
    got = node_run(path, FEEDS)
    want = load(NAME, artifacts).run(FEEDS)
    assert sorted(got["out"]) == ["pair", "score"]
    for name, value in want.items():
        np.testing.assert_array_equal(np.asarray(got["out"][name], dtype=np.float32), value)
    assert got["st"]["x"] == SELFTEST_INPUTS and abs(got["st"]["actual"] - got["st"]["expected"]) <= 1e-5


def test_cli_inputs_file(artifacts, tmp_path):
    path = artifacts / f"{NAME}.onnx"
    feeds = tmp_path / "inputs.json"
    feeds.write_text(json.dumps(FEEDS))
    result = node(CLI, str(path), "--inputs", str(feeds))
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    for name, value in load(NAME, artifacts).run(FEEDS).items():
        np.testing.assert_array_equal(np.asarray(got[name], dtype=np.float32), value)
    as_json = json.loads(node(CLI, "--json", str(path), f"--inputs={feeds}").stdout)
    assert as_json["model"] == NAME and as_json["inputs"] == FEEDS and as_json["outputs"] == got

    feeds.write_text(json.dumps({**FEEDS, "ids": [[3], [-2], [4.5]]}))
    bad = node(CLI, str(path), "--inputs", str(feeds))
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip().splitlines()[-1] == (
        'error: input "ids": got 4.5; expected integers (int64; floats are not truncated)'
    )
    for args, fragment in [
        (("--inputs", str(tmp_path / "missing.json")), "no such file"),
        (("--inputs", str(path)), "not JSON"),
        (("1,2,3",), "give --inputs FILE.json"),
    ]:
        result = node(CLI, str(path), *args)
        assert result.returncode == 2 and result.stderr.startswith("error: ") and fragment in result.stderr


def typed_model(path):
    """int8 [batch, 2], float16 [batch, 1], bool [batch, 1] -> the same values back (and Not(flag))."""
    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["small"], ["small_out"]),
            helper.make_node("Identity", ["half"], ["half_out"]),
            helper.make_node("Not", ["flag"], ["flag_out"]),
        ],
        "typed",
        [
            helper.make_tensor_value_info("small", TensorProto.INT8, ["batch", 2]),
            helper.make_tensor_value_info("half", TensorProto.FLOAT16, ["batch", 1]),
            helper.make_tensor_value_info("flag", TensorProto.BOOL, ["batch", 1]),
        ],
        [
            helper.make_tensor_value_info("small_out", TensorProto.INT8, ["batch", 2]),
            helper.make_tensor_value_info("half_out", TensorProto.FLOAT16, ["batch", 1]),
            helper.make_tensor_value_info("flag_out", TensorProto.BOOL, ["batch", 1]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, path)
    return path


GOOD = {"small": [[-128, 127], [5, 0]], "half": [[0.1], [65504.0]], "flag": [[True], [False]]}
BAD = [
    ({"small": [[300, 0], [5, 0]]}, "small"),
    ({"half": [[1e6], [0.0]]}, "half"),
    ({"small": [[True, False], [True, True]]}, "small"),
    ({"flag": [[1], [0]]}, "flag"),
    ({"small": [[1.5, 0], [5, 0]]}, "small"),
]


def test_dtypes_convert_exactly_like_python(tmp_path):
    path = typed_model(tmp_path / "typed.onnx")
    python = load(path, selftest=False)
    script = (
        'import { load, run } from "./serve/node/model.mjs";\n'
        f"const model = await load({json.dumps(str(path))}, {{ selftest: false }});\n"
        f"const good = await run(model, {json.dumps(GOOD)});\n"
        "const refused = [];\n"
        f"for (const [change] of {json.dumps(BAD)}) {{\n"
        f"  try {{ await run(model, {{ ...{json.dumps(GOOD)}, ...change }}); refused.push(null); }}\n"
        "  catch (err) { refused.push(`${err.name}: ${err.message}`); }\n"
        "}\n"
        "console.log(JSON.stringify({ good, refused }));"
    )
    result = node_eval(script)
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    want = python.run(GOOD)
    np.testing.assert_array_equal(np.asarray(got["good"]["small_out"], dtype=np.int8), want["small_out"])
    np.testing.assert_array_equal(np.asarray(got["good"]["half_out"], dtype=np.float16), want["half_out"])
    assert got["good"]["flag_out"] == want["flag_out"].tolist() == [[False], [True]]
    for (change, name), message in zip(BAD, got["refused"], strict=True):
        assert message is not None and message.startswith(f'InputError: input "{name}"'), (change, message)
        with pytest.raises(PredictInputError, match=f"input '{name}'"):
            python.run({**GOOD, **change})


def test_general_selftest_failure_exits_1(tmp_path):
    bad = {"inputs": SELFTEST_INPUTS, "outputs": {"pair": [[0.0, 0.0], [0.0, 0.0]]}, "atol": 1e-5, "rtol": 0}
    artifacts = anysig_dir(tmp_path / "artifacts", selftest=bad)
    feeds = tmp_path / "inputs.json"
    feeds.write_text(json.dumps(FEEDS))
    result = node(CLI, str(artifacts / f"{NAME}.onnx"), "--inputs", str(feeds))
    assert result.returncode == 1 and result.stdout == ""
    assert "expected 0, got 6 (output pair, element 0, tolerance 0.00001 + 0·|y|)" in result.stderr
