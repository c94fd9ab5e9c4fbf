"""Real architectures (tests/architectures.py: a BatchNorm CNN on 3x96x96, a masked transformer
encoder, 3-class classifiers in torch and Keras, int64 and bool outputs) through export -> check ->
load, outputs equal to the source framework's (issue 20). One export per session (conftest.py)."""

from __future__ import annotations

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
    model = load(name, artifacts=architectures_dir / "artifacts", selftest=name != "cnn")
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
