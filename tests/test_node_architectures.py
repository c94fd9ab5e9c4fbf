"""serve/node on real architectures (tests/architectures.py, issue 20 items 1-2): one path for every
signature. `load` runs each model's self-test (the CNN's lives in its probe file, read with the .npz
reader of serve/node/npz.mjs, its sha256 checked against the manifest and the ONNX metadata), `run`
equals Python's onnxruntime, and the CLI predicts the classifier's rows."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest

from oneneuron.schema import Manifest
from tests import architectures
from tests.test_node import node, node_eval

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node not found: install Node.js 20+")
CLI = "serve/node/predict.mjs"
NAMES = list(architectures.ARCHITECTURES)


def python_ort(path, feeds) -> dict:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds), strict=True))


def node_load_all(paths, feeds, tmp_path) -> dict:
    """One Node process: load (with the self-test) and run every model; {path: {out, st} or {error}}."""
    cases = tmp_path / "cases.json"  # a CNN batch is too long for a command line
    cases.write_text(json.dumps([[str(p), f] for p, f in zip(paths, feeds, strict=True)]))
    script = (
        'import fs from "node:fs"; import { load, run } from "./serve/node/model.mjs";\n'
        "const out = {};\n"
        f"for (const [file, feeds] of JSON.parse(fs.readFileSync({json.dumps(str(cases))}, 'utf8'))) {{\n"
        "  try {\n"
        "    const model = await load(file);\n"
        "    const { origin, expected, actual, tolerance } = model.selftestResult;\n"
        "    out[file] = { out: await run(model, feeds), st: { origin, expected, actual, tolerance } };\n"
        "  } catch (err) { out[file] = { error: `${err.name}: ${err.message}` }; }\n"
        "}\n"
        "console.log(JSON.stringify(out));"
    )
    result = node_eval(script)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_every_architecture_loads_with_its_selftest_and_runs_like_python(architectures_dir, tmp_path):
    artifacts = architectures_dir / "artifacts"
    paths = [artifacts / f"{name}.onnx" for name in NAMES]
    feeds = [architectures.inputs(name, rows=2) for name in NAMES]
    got = node_load_all(paths, [{k: v.tolist() for k, v in f.items()} for f in feeds], tmp_path)
    for name, path, feed in zip(NAMES, paths, feeds, strict=True):
        result = got[str(path)]
        assert "error" not in result, (name, result)
        st = result["st"]
        assert abs(st["actual"] - st["expected"]) <= st["tolerance"], name
        want = python_ort(path, feed)
        assert set(result["out"]) == set(want), name
        for k, w in want.items():
            g = np.asarray(result["out"][k], dtype=w.dtype)
            assert g.shape == w.shape, (name, k)
            if w.dtype.kind == "f":
                np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg=f"{name}.{k}")
            else:
                np.testing.assert_array_equal(g, w, err_msg=f"{name}.{k}")
    # the CNN's rows are too large to embed: its self-test is its probe file, whatever else it carries
    assert got[str(artifacts / "cnn.onnx")]["st"]["origin"].startswith("probe file cnn.")


@pytest.mark.parametrize("name", ["classifier_torch", "classifier_keras"])
def test_cli_predicts_the_classifier_rows(architectures_dir, name):
    path = architectures_dir / "artifacts" / f"{name}.onnx"
    rows = architectures.inputs(name, rows=3)["x"]
    result = node(CLI, str(path), *(",".join(repr(float(v)) for v in row) for row in rows))
    assert result.returncode == 0, result.stderr
    got = np.array([json.loads(line) for line in result.stdout.splitlines()], dtype=np.float32)
    [want] = python_ort(path, {"x": rows}).values()
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert f"self-test ok: {name} (" in result.stderr
    wrong = node(CLI, str(path), "1,2,3")
    assert wrong.returncode == 2 and "the model takes 4 feature(s) per row" in wrong.stderr


def cnn_copy(architectures_dir, target):
    """manifest.json, the CNN's stored ONNX file, its stable name and its probe file."""
    artifacts = architectures_dir / "artifacts"
    entry = next(e for e in Manifest.load(artifacts).artifacts if e.model == "cnn" and e.format == "onnx")
    target.mkdir()
    for name in ("manifest.json", entry.path, entry.probe.path):
        shutil.copy(artifacts / name, target / name)
    (target / entry.alias).hardlink_to(target / entry.path)
    return target, entry


def load_error(path) -> str:
    result = node_eval(
        f'import {{ load }} from "./serve/node/model.mjs"; try {{ await load({json.dumps(str(path))}); '
        'console.log("loaded"); } catch (err) { console.log(`${err.name} ${err.exitCode}: ${err.message}`); }'
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_probe_file_is_verified_before_use(architectures_dir, tmp_path):
    art, entry = cnn_copy(architectures_dir, tmp_path / "art")
    assert load_error(art / "cnn.onnx") == "loaded"

    probe = art / entry.probe.path  # changed after export: its sha256 is no longer the pinned one
    original = probe.read_bytes()
    probe.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    message = load_error(art / "cnn.onnx")
    assert message.startswith(f"IntegrityError 1: {probe}: sha256 "), message
    assert "differs from the model's 'selftest_probe'" in message
    assert "re-run python -m export.onnx" in message
    probe.write_bytes(original)

    manifest = json.loads((art / "manifest.json").read_text())  # the manifest pins another probe
    for e in manifest["artifacts"]:
        if e["path"] == entry.path:
            e["probe"]["sha256"] = "0" * 64
    (art / "manifest.json").write_text(json.dumps(manifest))
    message = load_error(art / "cnn.onnx")
    assert "metadata 'selftest_probe' " in message, message
    assert "is not the manifest's probe 000000000000" in message, message

    lone = tmp_path / "lone" / "cnn.onnx"  # no manifest: nothing names the probe file
    lone.parent.mkdir()
    shutil.copy(art / entry.path, lone)
    message = load_error(lone)
    assert message.startswith(f"IntegrityError 1: {lone}: its self-test is the probe file "), message
    assert "which only its manifest names" in message


def test_npz_reader_matches_numpy(tmp_path):
    """Every dtype of the contract, stored and deflated, cut to the rows asked for; what it cannot read
    (big-endian, Fortran order, a damaged zip) is refused with NpzError."""
    rng = np.random.default_rng(3)
    arrays = {
        "inputs/f16": rng.standard_normal((3, 2)).astype(np.float16),
        "inputs/f32": rng.standard_normal((3, 2, 4)).astype(np.float32),
        "inputs/f64": rng.standard_normal(3),
        "inputs/b": rng.integers(0, 2, (3, 5)).astype(bool),
        **{
            f"outputs/{t}": np.array([[np.iinfo(t).min], [np.iinfo(t).max], [7]], dtype=t)
            for t in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
        },
    }
    good = [tmp_path / "stored.npz", tmp_path / "deflated.npz"]
    np.savez(good[0], **arrays)
    np.savez_compressed(good[1], **arrays)
    bad = {
        "big": {"x": np.arange(4, dtype=">f4").reshape(2, 2)},
        "fortran": {"x": np.asfortranarray(np.ones((2, 3), np.float32))},
    }
    for name, content in bad.items():
        np.savez(tmp_path / f"{name}.npz", **content)
    (tmp_path / "cut.npz").write_bytes(good[1].read_bytes()[:-30])
    script = (
        'import fs from "node:fs"; import { readNpz } from "./serve/node/npz.mjs";\n'
        "const text = (v) => JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? x.toString() : x));\n"
        "const out = {};\n"
        f"for (const file of {json.dumps([str(p) for p in good])}) {{\n"
        "  const arrays = await readNpz(fs.readFileSync(file), { rows: 2 });\n"
        "  out[file] = Object.fromEntries(Object.entries(arrays).map(([k, a]) =>\n"
        "    [k, { dtype: a.dtype.name, shape: a.shape, data: Array.from(a.data, String) }]));\n"
        "}\n"
        f"for (const name of {json.dumps([*bad, 'cut'])}) {{\n"
        f"  try {{ await readNpz(fs.readFileSync(`{tmp_path}/${{name}}.npz`)); out[name] = 'read'; }}\n"
        "  catch (err) { out[name] = `${err.name}: ${err.message}`; }\n"
        "}\n"
        "console.log(text(out));"
    )
    result = node_eval(script)
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    for file in good:
        read = got[str(file)]
        assert set(read) == set(arrays)
        for key, want in arrays.items():
            head = want[:2]
            assert read[key]["dtype"] == head.dtype.name and read[key]["shape"] == list(head.shape), key
            values = [int(v) for v in read[key]["data"]] if head.dtype.kind in "biu" else read[key]["data"]
            if head.dtype == np.float16:  # float16 is handed over as its bits, as onnxruntime takes it
                np.testing.assert_array_equal(np.array(values, dtype=np.uint16), head.view(np.uint16).ravel())
            else:
                np.testing.assert_array_equal(np.array(values, dtype=head.dtype), head.ravel(), err_msg=key)
    assert got["big"].startswith("NpzError: x.npy: dtype >f4 is not one of the contract's"), got["big"]
    assert got["fortran"] == "NpzError: x.npy: Fortran-ordered arrays are not read"
    assert got["cut"].startswith("NpzError: "), got["cut"]
