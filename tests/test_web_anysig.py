"""The page for a model with two inputs and two outputs (issue 11, section 4): the form is built from the
signature, starts at the model's self-test inputs, and every output equals the Python loader's value
for the same input, before and after typing new values; a bad value is one clear error."""

from __future__ import annotations

import json

import numpy as np
import pytest

from serve import load
from tests.anysig_helpers import NAME, SELFTEST_INPUTS, anysig_dir
from tests.test_web import WebServer, browser, open_page, ort_web_installed  # noqa: F401 (fixtures)

OUTPUTS = ("score", "pair")


def shown(page) -> tuple[dict, dict]:
    """(outputs as shown, the feeds they are for), once every output cell is ok."""
    for name in OUTPUTS:
        page.wait_for_selector(f"#out-{NAME}-{name}[data-state=ok]", timeout=30_000)
    values = {name: json.loads(page.get_attribute(f"#out-{NAME}-{name}", "data-value")) for name in OUTPUTS}
    feeds = {json.loads(page.get_attribute(f"#out-{NAME}-{name}", "data-feeds")) == {} for name in OUTPUTS}
    assert feeds == {False}
    return values, json.loads(page.get_attribute(f"#out-{NAME}-score", "data-feeds"))


def assert_like_python(model, values, feeds):
    want = model.run(feeds)
    for name in OUTPUTS:
        np.testing.assert_allclose(
            np.asarray(values[name], dtype=np.float32), want[name], rtol=1e-6, atol=1e-6
        )


@pytest.mark.slow
def test_page_form_from_signature_matches_python(browser, tmp_path):  # noqa: F811
    artifacts = anysig_dir(tmp_path / "artifacts")
    model = load(NAME, artifacts)
    server = WebServer(artifacts)
    try:
        page, errors = open_page(browser, server.url)
        assert "verified" in page.inner_text(f"#status-{NAME}")
        # three number boxes for features [rows, 3], one for ids [rows, 1], starting at the self-test row
        assert [page.input_value(f"#in-{NAME}-features-{i}") for i in range(3)] == [
            f"{v:g}" for v in SELFTEST_INPUTS["features"][0]
        ]
        assert page.input_value(f"#in-{NAME}-ids-0") == str(SELFTEST_INPUTS["ids"][0][0])
        values, feeds = shown(page)
        assert feeds == {"features": [SELFTEST_INPUTS["features"][0]], "ids": [SELFTEST_INPUTS["ids"][0]]}
        assert_like_python(model, values, feeds)

        page.fill(f"#in-{NAME}-features-1", "-2.5")
        page.fill(f"#in-{NAME}-ids-0", "-40")
        page.wait_for_selector(f'#out-{NAME}-pair[data-feeds*="-40"]', timeout=30_000)
        values, feeds = shown(page)
        assert feeds == {"features": [[1.0, -2.5, 3.0]], "ids": [[-40]]}
        assert_like_python(model, values, feeds)

        page.fill(f"#in-{NAME}-ids-0", "1.5")
        page.wait_for_selector(f"#out-{NAME}-score[data-state=error]", timeout=30_000)
        assert "is not an integer (int64)" in page.inner_text(f"#error-{NAME}")
        assert page.get_attribute("#results", "hidden") is not None  # no article table for this manifest
        assert errors == []
    finally:
        server.close()
