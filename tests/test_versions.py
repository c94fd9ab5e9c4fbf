"""Versions in the manifest (oneneuron.manifest.commit, oneneuron.schema): numbering, --keep-versions, what
consumers that take "the" model get, and the schema's checks on previous versions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from oneneuron.errors import SchemaError
from oneneuron.schema import Manifest
from serve import load
from tests.version_helpers import land, predict, variant


@pytest.fixture
def base(exported_copy):
    return (exported_copy / "keras_linear.onnx").read_bytes()


def test_new_content_gets_the_next_version_and_same_content_keeps_its_number(exported_copy, base):
    assert Manifest.load(exported_copy).find("keras_linear", "onnx").version == 1
    v2 = variant(base, 2.0, 1.0)
    assert land(exported_copy, "keras_linear", v2) == 2
    assert land(exported_copy, "keras_linear", v2) == 2  # the same bytes again: same version
    assert land(exported_copy, "keras_linear", variant(base, 3.0, 1.0)) == 3
    manifest = Manifest.load(exported_copy)
    assert [e.version for e in manifest.versions("keras_linear")] == [1, 2, 3]
    assert manifest.find("keras_linear", "onnx").version == 3  # the default: the newest
    assert manifest.find("torch_linear", "onnx").version == 1  # other models untouched
    # the loader by name takes the newest; the stable alias points at it
    x = np.array([[10.0]], np.float32)
    assert load("keras_linear", exported_copy).predict(x)[0, 0] == pytest.approx(31.0)
    np.testing.assert_array_equal(predict((exported_copy / "keras_linear.onnx").read_bytes(), x), [[31.0]])
    # bytes an older version had come back as the newest, under a new number
    assert land(exported_copy, "keras_linear", v2) == 4
    assert [e.version for e in Manifest.load(exported_copy).versions("keras_linear")] == [1, 3, 4]


def test_keep_versions_bounds_what_is_listed_and_stored(exported_copy, base):
    paths = []
    for k in range(5):
        land(exported_copy, "keras_linear", variant(base, float(k + 2), 0.0), keep_versions=2)
        paths.append(Manifest.load(exported_copy).find("keras_linear", "onnx").path)
    manifest = Manifest.load(exported_copy)
    assert [e.version for e in manifest.versions("keras_linear")] == [5, 6]
    stored = {p.name for p in exported_copy.glob("keras_linear.*.onnx")}
    # the two listed, plus the one the previous manifest listed (a reader may still open it)
    assert set(paths[-3:]) == stored
    for entry in manifest.versions("keras_linear"):  # every kept version opens and passes its checks
        assert load(str(exported_copy / entry.path), exported_copy).verified


def test_the_schema_refuses_inconsistent_previous_versions(exported_copy, base):
    land(exported_copy, "keras_linear", variant(base, 2.0, 1.0))
    path = exported_copy / "manifest.json"
    good = json.loads(path.read_text())
    assert [e["version"] for e in good["previous_versions"]] == [1]
    for change, fragment in [
        (lambda m: m["previous_versions"][0].update(version=2), "is not older than the newest, 2"),
        (lambda m: m["previous_versions"][0].update(version=0), "expected an integer in [1,"),
        (
            lambda m: m["previous_versions"][0].update(name="nope.onnx", alias="nope.onnx"),
            "which artifacts does not list",
        ),
        (lambda m: m["previous_versions"].append(dict(m["previous_versions"][0])), "duplicate version 1"),
    ]:
        bad = json.loads(json.dumps(good))
        change(bad)
        path.write_text(json.dumps(bad))
        with pytest.raises(SchemaError, match="previous_versions") as info:
            Manifest.load(exported_copy)
        assert fragment in str(info.value)


def test_a_signature_covers_every_kept_version_in_python_node_and_the_server(
    exported_copy, base, signing_keys
):
    from export.sign import sign_artifacts
    from oneneuron.signing import verify_dir
    from serve.engine.registry import Registry
    from tests.test_node import NODE, node_eval

    land(exported_copy, "keras_linear", variant(base, 2.0, 1.0))
    sign_artifacts(exported_copy, signing_keys["trusted"] / "private.pem")
    key = signing_keys["trusted"] / "public.pem"
    manifest = Manifest.load(exported_copy)
    signed = verify_dir(exported_copy, key).files
    assert {e.path for e in manifest.versions("keras_linear")} <= set(signed)
    registry = Registry(exported_copy, trust_key=key)  # each version verified before it is served
    assert registry.load_all()
    assert [v.label for v in registry.states["keras_linear"].versions.values() if v.model] == ["1", "2"]
    if NODE is not None:
        script = (
            'import { verifyDirectory } from "./serve/node/signature.mjs";\n'
            f"const v = await verifyDirectory({json.dumps(str(exported_copy))}, {json.dumps(str(key))});\n"
            "console.log(JSON.stringify(v.files));"
        )
        out = node_eval(script)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == signed
