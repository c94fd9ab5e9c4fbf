import json
import re
import threading

import numpy as np
import onnx
import pytest

from oneneuron.errors import IntegrityError, MissingArtifactError
from serve import PredictInputError, load
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def model(exported_dir):
    return load("keras_linear", exported_dir)


def test_imports_only_numpy_and_onnxruntime(exported_dir):
    code = (
        f"import sys; from serve import load; m = load('torch_linear', {str(exported_dir)!r}); "
        "m.predict(1.0);"
        "heavy = sorted({k.split('.')[0] for k in sys.modules} & "
        "{'tensorflow', 'torch', 'keras', 'onnx', 'tf2onnx', 'fastapi', 'starlette'}); print(heavy)"
    )
    result = run_cli("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "x, rows",
    [
        (10, 1),
        (10.0, 1),
        ([10.0], 1),
        ([1, 2, 3], 3),
        ([[1], [2]], 2),
        (np.arange(4, dtype=np.int16), 4),
        (np.ones((5, 1), np.float64), 5),
        (np.float16(2.5), 1),
        (np.uint8(7), 1),
    ],
)
def test_predict_accepts_numbers_lists_and_arrays(model, x, rows):
    y = model.predict(x)
    assert y.dtype == np.float32 and y.shape == (rows, 1)
    xs = np.asarray(x, dtype=np.float64).reshape(-1)
    w, b = float(model.predict(1.0)[0, 0] - model.predict(0.0)[0, 0]), float(model.predict(0.0)[0, 0])
    np.testing.assert_allclose(y[:, 0], xs * w + b, rtol=1e-5, atol=1e-4)


def test_predict_matches_manifest_prediction(model, exported_dir):
    manifest = json.loads((exported_dir / "manifest.json").read_text())
    entry = next(e for e in manifest["artifacts"] if e["name"] == "keras_linear.onnx")
    assert float(model.predict(10)[0, 0]) == pytest.approx(entry["headline_y"], abs=1e-5)


@pytest.mark.parametrize(
    "bad, words",
    [
        ("10", "str"),
        (b"1", "bytes"),
        ([], "empty"),
        (np.zeros((0, 1)), "empty"),
        ([[1, 2]], "shape (1, 2)"),
        (np.zeros((2, 1, 1)), "shape (2, 1, 1)"),
        ([float("nan")], "NaN"),
        ([1.0, float("inf")], "infinity"),
        ([1e39], "float32"),
        (None, "dtype object"),
        ([[1], [2, 3]], "rectangular"),
        (True, "bool"),
        (1 + 2j, "complex"),
        (np.array(["a"]), "dtype <U1"),
    ],
)
def test_bad_input_raises_a_clear_value_error(model, bad, words):
    with pytest.raises(PredictInputError) as info:
        model.predict(bad)
    assert isinstance(info.value, ValueError)
    assert words in str(info.value) and "expected" in str(info.value)


def test_signature_and_metadata(model):
    assert model.signature["inputs"] == [{"name": "x", "dtype": "float32", "shape": [None, 1]}]
    assert model.metadata["source_framework"] == "tensorflow" and model.n_features == 1


def test_concurrent_predict_is_consistent(model):
    xs = np.arange(64, dtype=np.float32).reshape(-1, 1)
    expected = model.predict(xs)
    errors = []

    def worker():
        for _ in range(200):
            if not np.array_equal(model.predict(xs), expected):
                errors.append("mismatch")

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_tampered_file_is_refused_naming_both_hashes(exported_copy):
    path = exported_copy / "keras_linear.onnx"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(IntegrityError) as info:
        load("keras_linear", exported_copy)
    message = str(info.value)
    assert re.search(r"keras_linear\.[0-9a-f]{12}\.onnx: sha256", message) and "!= manifest" in message
    assert "python -m export.onnx" in message
    with pytest.raises(
        IntegrityError, match="not a loadable ONNX model"
    ):  # hash check off: the parser notices
        load("keras_linear", exported_copy, verify_sha256=False)


def _with_metadata(source, target, **changes):
    proto = onnx.load(source)
    meta = {p.key: p.value for p in proto.metadata_props} | changes
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, {k: v for k, v in meta.items() if v is not None})
    onnx.save(proto, target)  # no manifest beside it: hash check not possible
    return target


def test_failed_selftest_is_an_integrity_error(exported_dir, tmp_path):
    from oneneuron.selftest import article_metadata

    lying = _with_metadata(
        exported_dir / "torch_linear.onnx", tmp_path / "lying.onnx", **article_metadata([10.0], 21.5)
    )
    with pytest.raises(IntegrityError, match=r"self-test output 'y' expected 21.5, got 18.9"):
        load(lying)
    assert load(lying, selftest=False).predict(10).shape == (1, 1)
    # the keys Node reads changed alone: Python refuses it too (both must describe one test)
    only_y = _with_metadata(exported_dir / "torch_linear.onnx", tmp_path / "only_y.onnx", selftest_y="21.5")
    with pytest.raises(IntegrityError, match=r"'selftest' and 'selftest_x'/'selftest_y' describe different"):
        load(only_y)


def test_a_file_exported_before_the_general_selftest_runs_its_old_keys(exported_dir, tmp_path):
    """A file with only selftest_x / selftest_y (exported before `selftest`) runs them as the same
    general test: it loads, and a wrong selftest_y fails it."""
    old = _with_metadata(exported_dir / "keras_linear.onnx", tmp_path / "old.onnx", selftest=None)
    model = load(old)
    expected, actual = model.selftest()
    assert "selftest" not in model.metadata and expected == float(model.metadata["selftest_y"]) == actual
    wrong = _with_metadata(old, tmp_path / "wrong.onnx", selftest_y="21.5")
    with pytest.raises(IntegrityError, match=r"self-test output 'y' expected 21.5"):
        load(wrong)
    neither = _with_metadata(old, tmp_path / "none.onnx", selftest_x=None, selftest_y=None)
    with pytest.raises(IntegrityError, match=r"no self-test: .*no 'selftest'.*model inputs \['x'\]"):
        load(neither)


def test_non_onnx_and_missing_files(tmp_path, exported_dir):
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(IntegrityError, match="not a loadable ONNX model"):
        load(tmp_path / "junk.onnx")
    with pytest.raises(MissingArtifactError):
        load(tmp_path / "absent.onnx")
    with pytest.raises(ValueError, match="known: keras_linear"):
        load("nope", exported_dir)
