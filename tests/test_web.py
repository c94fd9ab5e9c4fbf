"""serve/web: the allowlisted ASGI app in-process, then the real page in headless Chromium."""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

with warnings.catch_warnings():  # starlette 1.10 prefers httpx2 for TestClient; httpx is what is pinned
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

from oneneuron.errors import MissingArtifactError
from serve.web.app import ORT_DIST, ORT_FILES, WebConfig, build_app
from tests.conftest import ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
MODELS = ("keras_linear", "torch_linear")


@pytest.fixture(scope="module", autouse=True)
def ort_web_installed():
    if not all((ORT_DIST / name).is_file() for name in ORT_FILES):
        if shutil.which("npm") is None:
            pytest.skip(
                "npm not found: install Node.js and npm (apt-get install -y nodejs npm), then "
                "`npm ci --ignore-scripts`, to run the browser embedding tests"
            )
        pytest.fail(
            f"{ORT_DIST} is missing: run `npm ci --ignore-scripts` at the repository root (make test does)"
        )


@pytest.fixture
def client(exported_dir):
    with TestClient(build_app(WebConfig(artifacts=exported_dir))) as c:
        yield c


def test_serves_only_what_the_page_needs(client):
    for path in (
        "/",
        "/index.html",
        "/app.mjs",
        "/style.css",
        "/lib/core.mjs",
        "/lib/onnx_info.mjs",
        "/artifacts/manifest.json",
        "/artifacts/keras_linear.onnx",
        "/artifacts/torch_linear.onnx",
        *(f"/ort/{name}" for name in ORT_FILES),
    ):
        assert client.get(path).status_code == 200, path
    assert client.get("/ort/ort-wasm-simd-threaded.wasm").headers["content-type"] == "application/wasm"
    assert client.get("/app.mjs").headers["content-type"].startswith("text/javascript")
    for path in (
        "/artifacts/training.json",
        "/artifacts/keras_linear.keras",
        "/artifacts/torch_linear.pt",
        "/artifacts/keras_linear.savedmodel/saved_model.pb",
        "/artifacts/",
        "/ort/ort.all.js",
        "/ort/",
        "/lib/model.mjs",
        "/lib/predict.mjs",
        "/artifacts/../README.md",
        "/artifacts/%2e%2e/README.md",
        "/lib/..%2f..%2fREADME.md",
        "/../README.md",
        "/README.md",
    ):
        assert client.get(path).status_code == 404, path


def test_missing_inputs_name_the_fix(exported_dir, tmp_path):
    with pytest.raises(MissingArtifactError, match="npm ci --ignore-scripts"):
        build_app(WebConfig(artifacts=exported_dir, ort_dist=tmp_path))
    result = subprocess.run(
        [sys.executable, "-m", "serve.web", "--artifacts", str(tmp_path / "none")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path / 'none' / 'manifest.json'}: not found; re-run python -m export.all "
        f"--artifacts {tmp_path / 'none'}"
    )


class WebServer:
    """`python -m serve.web` on a free loopback port (--port 0), stopped on exit."""

    def __init__(self, artifacts: Path, *extra: str):
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "serve.web", "--artifacts", str(artifacts), "--port", "0", *extra],
            cwd=ROOT,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in self.proc.stderr], daemon=True).start()
        seen = []
        while True:
            try:
                line = lines.get(timeout=60)
            except queue.Empty:
                self.close()
                raise AssertionError(f"serve.web did not start within 60 s: {seen}") from None
            seen.append(line)
            match = re.search(r"serving (http://127\.0\.0\.1:\d+/)", line)
            if match:
                self.url = match.group(1)
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"serve.web exited {self.proc.returncode}: {seen}")

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} not found: install Debian's Chromium (apt-get install -y chromium) "
            "to run the browser test"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def open_page(browser, url):
    page = browser.new_page(viewport={"width": 1100, "height": 720})
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]", timeout=60_000)
    return page, errors


def python_ort(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return float(session.run(None, {"x": np.array([[x]], dtype=np.float32)})[0][0, 0])


@pytest.mark.slow
def test_page_predicts_x10_like_python_onnxruntime(browser, exported_dir, tmp_path):
    server = WebServer(exported_dir)
    try:
        page, errors = open_page(browser, server.url)
        # No typing: x starts at the manifest's headline input and every column shows its prediction.
        assert page.input_value("#x") == "10" and page.get_attribute("#x", "placeholder") is None
        for key in (*MODELS, "reference"):
            page.wait_for_selector(f'#pred-{key}[data-x="10"][data-state=ok]', timeout=30_000)
        assert page.inner_text("#status") == "2 models loaded and verified."
        assert page.get_attribute("#results", "aria-busy") == "false"
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        for model in MODELS:
            got = float(page.get_attribute(f"#pred-{model}", "data-value"))
            assert abs(got - python_ort(exported_dir / f"{model}.onnx", 10.0)) <= 1e-5, model
            assert page.inner_text(f"#selftest-{model}").startswith("✓ y([[10]])")
            assert page.inner_text(f"#opset-{model}").startswith("18 ")
            assert "matches manifest" in page.inner_text(f"#file-{model}")
        assert page.inner_text("#framework-keras_linear").startswith("tensorflow")
        assert page.inner_text("#framework-torch_linear").startswith("torch")
        assert abs(float(page.get_attribute("#pred-reference", "data-value")) - 19.0) <= 1e-9
        assert "2·x − 1" in page.inner_text("#head-reference")
        page.fill("#x", "abc")
        page.wait_for_selector('#pred-keras_linear[data-x="abc"][data-state=error]')
        assert "is not a number" in page.inner_text("#x-error")
        assert errors == []
        assert (tmp_path / "page.png").stat().st_size > 10_000
        # The README's browser snippet, run as shown in the page (its console.log captured).
        section = (ROOT / "README.md").read_text().split("\n### Browser\n", 1)[1].split("\n### ", 1)[0]
        snippet = re.search(r"```js\n(.*?)```", section, re.S).group(1)
        logged = page.evaluate(
            "async () => { const out = []; const console = {log: (...a) => out.push(a)};\n"
            f"{snippet}\nreturn out; }}"
        )
        [[prediction, framework]] = logged
        assert framework == "tensorflow" and len(prediction) == 1
        assert abs(prediction[0] - python_ort(exported_dir / "keras_linear.onnx", 10.0)) <= 1e-5
        assert "[18.981693267822266] 'tensorflow'" in snippet
    finally:
        server.close()


@pytest.mark.slow
def test_page_shows_a_loading_state_per_model_and_works_by_keyboard(browser, exported_dir, tmp_path):
    server = WebServer(exported_dir)
    try:
        page = browser.new_page(viewport={"width": 1100, "height": 720})
        held = []  # torch_linear's ONNX file is held back until the loading state has been seen
        page.route(
            re.compile(r".*/artifacts/torch_linear\.[0-9a-f]{12}\.onnx$"), lambda route: held.append(route)
        )
        page.goto(server.url)
        page.wait_for_selector("#pred-torch_linear[data-state=loading]", timeout=30_000)
        page.wait_for_selector("#selftest-keras_linear.ok", timeout=30_000)  # the other one loads
        assert page.inner_text("#pred-torch_linear") == "loading…"
        assert page.inner_text("#selftest-torch_linear").startswith("loading and verifying")
        assert page.inner_text("#status") == "Loading the models: 1 of 2 ready…"
        assert page.get_attribute("#results", "aria-busy") == "true"
        page.screenshot(path=str(tmp_path / "page-loading.png"), full_page=True)
        assert len(held) == 1
        held[0].continue_()
        page.wait_for_selector("body[data-ready=true]", timeout=60_000)

        # Labelled controls, reachable and usable from the keyboard alone.
        assert page.inner_text("label[for=x]") == "x"
        assert page.locator("#results caption").count() == 1
        page.locator("body").focus()
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == "x"
        page.keyboard.press("Control+A")
        page.keyboard.type("3")
        page.keyboard.press("Enter")
        for key in (*MODELS, "reference"):
            page.wait_for_selector(f'#pred-{key}[data-x="3"][data-state=ok]', timeout=30_000)
        assert abs(float(page.get_attribute("#pred-reference", "data-value")) - 5.0) <= 1e-9
    finally:
        server.close()


@pytest.mark.slow
def test_page_says_when_a_model_fails_to_load(browser, exported_copy, tmp_path):
    damaged = exported_copy / "torch_linear.onnx"
    damaged.write_bytes(damaged.read_bytes()[:-20])
    server = WebServer(exported_copy)
    try:
        page, _ = open_page(browser, server.url)
        message = page.inner_text("#selftest-torch_linear")
        assert re.match(r"failed to load: /artifacts/torch_linear\.[0-9a-f]{12}\.onnx: sha256 ", message), (
            message
        )
        assert "re-run python -m export.onnx" in message
        assert page.inner_text("#pred-torch_linear") == "unavailable"
        assert page.inner_text("#status").startswith("1 of 2 models ready; 1 failed to load")
        page.fill("#x", "2")  # the other model still works
        page.wait_for_selector('#pred-keras_linear[data-x="2"][data-state=ok]')
        page.screenshot(path=str(tmp_path / "page-failed.png"), full_page=True)
    finally:
        server.close()


@pytest.fixture(scope="module")
def three_feature_dir(tmp_path_factory):
    """Both models trained on a small 3-feature CSV (y = 1.5a - 2b + 0.5c + 3) and exported to ONNX."""
    from tests.conftest import run_cli

    work = tmp_path_factory.mktemp("three")
    rng = np.random.default_rng(7)
    x = rng.normal(size=(30, 3))
    y = x @ np.array([1.5, -2.0, 0.5]) + 3.0
    (work / "data.csv").write_text(
        "a,b,c,y\n" + "".join(f"{r[0]},{r[1]},{r[2]},{t}\n" for r, t in zip(x, y, strict=True))
    )
    art = work / "artifacts"
    trained = run_cli(
        "-m",
        "train.all",
        "--data",
        str(work / "data.csv"),
        "--artifacts",
        str(art),
        "--epochs",
        "200",
        "--standardize",
    )
    assert trained.returncode == 0, trained.stderr
    exported = run_cli("-m", "export.onnx", "--artifacts", str(art))
    assert exported.returncode == 0, exported.stderr
    return art


@pytest.mark.slow
def test_page_shows_one_box_per_feature(browser, three_feature_dir, tmp_path):
    server = WebServer(three_feature_dir)
    try:
        page, errors = open_page(browser, server.url)
        assert not page.is_visible("#x")
        assert [page.inner_text(f"label:has(#x-{i})").strip() for i in (1, 2, 3)] == ["a", "b", "c"]
        for i, value in enumerate(("1", "-2", "0.5"), start=1):
            page.fill(f"#x-{i}", value)
        for key in (*MODELS, "reference"):
            page.wait_for_selector(f'#pred-{key}[data-x="1,-2,0.5"][data-state=ok]', timeout=30_000)
        page.screenshot(path=str(tmp_path / "page3.png"), full_page=True)
        row = np.array([[1.0, -2.0, 0.5]], dtype=np.float32)
        for model in MODELS:
            session = ort.InferenceSession(
                str(three_feature_dir / f"{model}.onnx"), providers=["CPUExecutionProvider"]
            )
            expected = float(session.run(None, {"x": row})[0][0, 0])
            assert abs(float(page.get_attribute(f"#pred-{model}", "data-value")) - expected) <= 1e-5, model
        assert abs(float(page.get_attribute("#pred-reference", "data-value")) - 8.75) <= 1e-6
        assert errors == []
    finally:
        server.close()


@pytest.mark.slow
def test_page_applies_the_hostile_table(browser, exported_dir, tmp_path):
    """Two cases of tests/hostile_cases.json in the page (core.mjs and manifest.mjs, as in Node): a model
    returning one row for a batch fails its self-test; a manifest naming '..' is refused as a whole."""
    from tests.hostile import CASES, Damage

    damage = Damage(tmp_path, exported_dir)
    damage.apply(CASES["wrong_rows"])  # re-hashed: the server serves it, the page must refuse it
    server = WebServer(damage.art)
    try:
        page, errors = open_page(browser, server.url)
        message = page.inner_text("#selftest-keras_linear")
        assert message.startswith("failed to load: /artifacts/keras_linear.") and "for 2 row(s)" in message, (
            message
        )
        assert page.inner_text("#selftest-torch_linear").startswith("✓")
        damage.apply(CASES["name_dotdot"])  # after start-up: the server serves only manifest.json
        page.reload()
        page.wait_for_selector("body[data-ready=true]", timeout=60_000)
        message = page.inner_text("#page-error")
        assert "/artifacts/manifest.json: field artifacts[" in message, message
        assert '".." is not a valid name' in message, message
        assert errors == []
    finally:
        server.close()


def test_port_in_use_is_one_error_line_naming_port(exported_dir):
    import socket

    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "serve.web", "--artifacts", str(exported_dir), "--port", str(port)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.splitlines()[-1]
    assert last.startswith(f"error: cannot listen on 127.0.0.1:{port}: the port is in use"), last
    assert "--port" in last
    assert "serving" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
