"""The page renders any model (issue 20 item 7), checked in headless Chromium as a person sees it: a
directory of only your own models (a CNN whose self-test is its probe file, a transformer, classifiers,
int64/bool outputs) and a mixed one (the article's two models beside three of yours). Each case is one
page load: every output table equals Python's onnxruntime on the inputs the form shows, a classifier's
top class is its argmax, the page is no wider than the viewport, and a screenshot is kept."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from oneneuron.schema import Manifest
from tests import architectures
from tests.test_web import WebServer, browser, open_page, ort_web_installed, python_ort  # noqa: F401 (fixtures)

OWN = list(architectures.ARCHITECTURES)
MIXED = ["classifier_torch", "cnn", "transformer"]


@pytest.fixture(scope="module")
def mixed_dir(exported_dir, architectures_dir, tmp_path_factory):
    """The article's exported directory plus three of the architectures, exported into the same manifest."""
    from export.byom import ByomConfig, export_byom
    from tests.conftest import copy_artifacts

    art = copy_artifacts(exported_dir, tmp_path_factory.mktemp("mixed") / "artifacts")
    for name in MIXED:
        framework, _, suffix = architectures.ARCHITECTURES[name]
        export_byom(art, ByomConfig(framework, architectures_dir / f"{name}{suffix}", name))
    return art


def assert_outputs_like_python(page, artifacts, names):
    """Every output shown for each model equals onnxruntime (CPU, Python) on the feeds it is for;
    returns {model: {output: Python's array}}."""
    entries = {e.model: e for e in Manifest.load(artifacts).entries("onnx")}
    outputs = {}
    for name in names:
        signature = entries[name].signature
        session = ort.InferenceSession(str(artifacts / f"{name}.onnx"), providers=["CPUExecutionProvider"])
        feeds = None
        for out in signature.outputs:
            box = f"#out-{name}-{out.name}"
            page.wait_for_selector(f"{box}[data-state=ok]", timeout=30_000)
            shown = json.loads(page.get_attribute(box, "data-feeds"))
            assert feeds is None or shown == feeds, name
            feeds = shown
        typed = {s.name: np.asarray(feeds[s.name], dtype=s.dtype) for s in signature.inputs}
        want = outputs[name] = dict(
            zip([o.name for o in session.get_outputs()], session.run(None, typed), strict=True)
        )
        for out in signature.outputs:
            got = np.asarray(json.loads(page.get_attribute(f"#out-{name}-{out.name}", "data-value")))
            w = want[out.name]
            assert got.shape == w.shape, (name, out.name)
            if w.dtype.kind == "f":
                np.testing.assert_allclose(got, w, rtol=1e-5, atol=1e-6, err_msg=f"{name}.{out.name}")
            else:
                np.testing.assert_array_equal(got.astype(w.dtype), w, err_msg=f"{name}.{out.name}")
    return outputs


def table_rows(page, selector) -> list[list[str]]:
    return page.eval_on_selector_all(
        f"{selector} tbody tr", "rows => rows.map(r => Array.from(r.cells, c => c.innerText.trim()))"
    )


def assert_topk_is_python_argmax(page, artifacts, name, output):
    """The top-k table a person reads: rank 1 is the argmax, with its probability to 4 decimals."""
    feeds = json.loads(page.get_attribute(f"#out-{name}-{output}", "data-feeds"))
    session = ort.InferenceSession(str(artifacts / f"{name}.onnx"), providers=["CPUExecutionProvider"])
    [probs] = session.run(None, {"x": np.asarray(feeds["x"], np.float32)})
    assert page.get_attribute(f"#out-{name}-{output}", "data-view") == "topk"
    rows = table_rows(page, f"#out-{name}-{output}")
    assert len(rows) == probs.shape[1]  # 3 classes: all of them, best first
    assert rows[0][:4] == ["0", "1", f"class {int(probs[0].argmax())}", f"{probs[0].max():.4f}"], rows
    assert [float(r[3]) for r in rows] == sorted((float(f"{p:.4f}") for p in probs[0]), reverse=True)


def assert_fits_the_viewport(page):
    width, viewport = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= viewport, f"the page is {width} px wide in a {viewport} px viewport"


@pytest.mark.slow
def test_page_of_only_your_own_models(browser, architectures_dir, tmp_path):  # noqa: F811
    artifacts = architectures_dir / "artifacts"
    server = WebServer(artifacts)
    try:
        page, errors = open_page(browser, server.url)
        assert page.inner_text("#status") == f"{len(OWN)} models loaded and verified."
        assert page.inner_text("#page-error") == ""
        assert not page.is_visible("#results") and not page.is_visible("#x")  # no article table, no x
        for name in OWN:
            assert page.inner_text(f"#status-{name}").startswith("✓ verified: sha256 matches the manifest")
        assert "self-test (probe file cnn." in page.inner_text("#status-cnn")
        # the form follows each signature: boxes for 4 features, rows of token ids, the image as JSON
        assert page.get_attribute("#in-classifier_torch-x-3", "data-mode") == "numbers"
        assert page.get_attribute("#in-transformer-input_ids", "data-mode") == "rows"
        assert page.get_attribute("#in-cnn-image", "data-mode") == "tensor"
        want = assert_outputs_like_python(page, artifacts, OWN)
        for name, output in (("classifier_torch", "output"), ("classifier_keras", "probs")):
            assert_topk_is_python_argmax(page, artifacts, name, output)
        label, positive = table_rows(page, "#out-labels-label"), table_rows(page, "#out-labels-positive")
        assert label == [["0", str(int(want["labels"]["label"][0]))]]
        assert positive == [["0", str(bool(want["labels"]["positive"][0])).lower()]]
        cnn = table_rows(page, "#out-cnn-output")[0]  # five scores, as shown (6 significant digits)
        np.testing.assert_allclose(
            [float(v) for v in cnn[1:]], want["cnn"]["output"][0], rtol=1e-5, atol=1e-6
        )
        assert_fits_the_viewport(page)
        page.screenshot(path=str(tmp_path / "own.png"), full_page=True)

        # a person's own rows (two token sequences), then a random example: still Python's numbers
        page.fill("#in-transformer-input_ids", "1, 2, 3\n4, 5, 6")
        page.fill("#in-transformer-attention_mask", "1, 1, 1\n1, 1, 0")
        page.wait_for_selector('#out-transformer-output[data-feeds*="[[1,1,1],[1,1,0]]"]', timeout=30_000)
        assert_outputs_like_python(page, artifacts, ["transformer"])
        assert len(table_rows(page, "#out-transformer-output")) == 2
        before = page.get_attribute("#out-classifier_keras-probs", "data-feeds")
        page.click("#random-classifier_keras")
        page.wait_for_function(
            "b => document.querySelector('#out-classifier_keras-probs').dataset.feeds !== b", arg=before
        )
        assert_topk_is_python_argmax(page, artifacts, "classifier_keras", "probs")
        page.fill("#in-classifier_torch-x-0", "abc")
        page.wait_for_selector("#out-classifier_torch-output[data-state=error]", timeout=30_000)
        assert "is not a number" in page.inner_text("#error-classifier_torch")
        assert errors == []
    finally:
        server.close()


@pytest.mark.slow
def test_page_of_the_article_and_your_models(browser, mixed_dir, tmp_path):  # noqa: F811
    server = WebServer(mixed_dir)
    try:
        page, errors = open_page(browser, server.url)
        # the article's view, as it is: its two models and the reference at x = 10
        assert page.input_value("#x") == "10"
        assert (
            page.inner_text("#status")
            == "2 models loaded and verified. 3 more model(s) below, each in its own section."
        )
        for key in ("keras_linear", "torch_linear", "reference"):
            page.wait_for_selector(f'#pred-{key}[data-x="10"][data-state=ok]', timeout=30_000)
        for model in ("keras_linear", "torch_linear"):
            got = float(page.get_attribute(f"#pred-{model}", "data-value"))
            assert abs(got - python_ort(mixed_dir / f"{model}.onnx", 10.0)) <= 1e-5, model
        headers = page.eval_on_selector_all("#head th", "ths => ths.map(t => t.id)")
        assert headers == [
            "",
            "head-keras_linear",
            "head-torch_linear",
            "head-reference",
        ]  # nobody squeezed in
        # and a section per model of your own
        for name in MIXED:
            assert page.inner_text(f"#status-{name}").startswith("✓ verified")
        assert_outputs_like_python(page, mixed_dir, MIXED)
        assert_topk_is_python_argmax(page, mixed_dir, "classifier_torch", "output")
        assert_fits_the_viewport(page)
        assert page.eval_on_selector("#results", "t => t.getBoundingClientRect().right") <= 1100
        page.screenshot(path=str(tmp_path / "mixed.png"), full_page=True)
        page.fill("#x", "3")  # the article's x still drives only its table
        page.wait_for_selector('#pred-torch_linear[data-x="3"][data-state=ok]', timeout=30_000)
        assert errors == []
    finally:
        server.close()
