"""The page with `python -m serve.web --trust-key`: WebCrypto verifies model.sig before any model runs;
a refused model's column says why, the other still predicts; without a key the page says unsigned."""

from __future__ import annotations

import re

import pytest

from oneneuron.signing import load_public_key
from serve.web.app import WebConfig, build_app
from tests.signed import CASES, damage
from tests.test_web import MODELS, TestClient, WebServer, browser, open_page, ort_web_installed  # noqa: F401

# A page cannot list a directory: files added to or removed from inside a SavedModel directory (which
# the page never loads) are refused by Python and Node only (README "Signing").
PAGE_CASES = sorted(set(CASES) - {"added", "removed"})


def test_serves_the_key_and_the_signature(signed_dir, signing_keys):
    key = signing_keys["trusted"] / "public.pem"
    with TestClient(build_app(WebConfig(artifacts=signed_dir, trust_key=key))) as c:
        assert c.get("/trust/public.pem").content == key.read_bytes()
        assert c.get("/artifacts/model.sig").status_code == 200
        assert (
            c.get("/signature.mjs").status_code == 200 and c.get("/lib/signature_core.mjs").status_code == 200
        )
    with TestClient(build_app(WebConfig(artifacts=signed_dir))) as c:
        assert c.get("/trust/public.pem").status_code == 404
    with pytest.raises(ValueError, match="is a private key"):
        build_app(WebConfig(artifacts=signed_dir, trust_key=signing_keys["trusted"] / "private.pem"))


@pytest.mark.slow
def test_page_verifies_the_signature(browser, signed_dir, signing_keys):  # noqa: F811
    key = signing_keys["trusted"] / "public.pem"
    fingerprint = load_public_key(key)[1]
    server = WebServer(signed_dir, "--trust-key", str(key))
    try:
        page, errors = open_page(browser, server.url)
        page.fill("#x", "10")
        for model in MODELS:
            page.wait_for_selector(f'#pred-{model}[data-x="10"][data-state=ok]', timeout=30_000)
            assert page.inner_text(f"#signature-{model}") == f"✓ signed by key sha256:{fingerprint[:16]}…"
        assert errors == []
    finally:
        server.close()
    server = WebServer(signed_dir)
    try:
        page, _ = open_page(browser, server.url)
        assert page.inner_text("#signature-keras_linear") == "unsigned (no --trust-key)"
    finally:
        server.close()


@pytest.mark.slow
@pytest.mark.parametrize("kind", PAGE_CASES)
def test_page_refuses(browser, signed_copy, signing_keys, kind):  # noqa: F811
    pattern = damage(signed_copy, signing_keys, kind)
    server = WebServer(signed_copy, "--trust-key", str(signing_keys["trusted"] / "public.pem"))
    try:
        page, errors = open_page(browser, server.url)
        message = page.inner_text("#selftest-keras_linear")
        assert message.startswith("failed to load: ") and re.search(pattern, message), message
        assert page.inner_text("#pred-keras_linear") == "unavailable"
        torch_ok = kind == "changed"  # only keras_linear's file changed; everything else is shared
        assert (page.inner_text("#pred-torch_linear") != "unavailable") == torch_ok
        assert errors == []
    finally:
        server.close()
