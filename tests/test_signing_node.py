"""Signed artifacts in Node (serve/node/signature.mjs, node:crypto only): the module and the CLI
accept what export.sign wrote, agree with the Python verifier, and refuse every damaged case."""

from __future__ import annotations

import json
import re

import pytest

from oneneuron.signing import load_public_key, verify_dir
from tests.signed import CASES, damage
from tests.test_node import CLI, NODE, node, node_eval

pytestmark = pytest.mark.skipif(
    NODE is None, reason="node not found: install Node.js 20+ to run the Node tests"
)


def test_cli_and_module_verify_a_signed_directory(signed_dir, signing_keys):
    key = signing_keys["trusted"] / "public.pem"
    fingerprint = load_public_key(key)[1]
    result = node(CLI, "--json", "--trust-key", str(key), str(signed_dir / "keras_linear.onnx"), "10")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["signed_by"] == fingerprint and abs(doc["y"][0] - 19) < 0.05
    assert f"signature ok: signed by key sha256:{fingerprint[:16]}" in result.stderr
    script = (
        'import { verifyDirectory } from "./serve/node/model.mjs";\n'
        f"const v = await verifyDirectory({json.dumps(str(signed_dir))}, {json.dumps(str(key))});\n"
        "console.log(JSON.stringify({fp: v.keyFingerprint, files: v.files}));"
    )
    out = node_eval(script)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"fp": fingerprint, "files": verify_dir(signed_dir, key).files}


def test_without_a_key_the_cli_says_unsigned(signed_dir):
    result = node(CLI, "--json", str(signed_dir / "torch_linear.onnx"), "10")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["signed_by"] is None
    assert "unsigned: no --trust-key given" in result.stderr


@pytest.mark.parametrize("kind", sorted(CASES))
def test_cli_refuses(signed_copy, signing_keys, kind):
    pattern = damage(signed_copy, signing_keys, kind)
    key = signing_keys["trusted"] / "public.pem"
    result = node(CLI, "--trust-key", str(key), str(signed_copy / "keras_linear.onnx"), "10")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert re.search(pattern, lines[0]), lines[0]
    assert result.stdout == ""


def test_refuses_an_unsigned_file_and_bad_keys(signed_copy, signing_keys, tmp_path):
    key = signing_keys["trusted"] / "public.pem"
    extra = signed_copy / "keras_linear.0123456789ab.onnx"
    extra.write_bytes((signed_copy / "keras_linear.onnx").read_bytes())
    result = node(CLI, "--trust-key", str(key), str(extra), "10")
    assert (
        result.returncode == 1 and "keras_linear.0123456789ab.onnx: not named by the signed" in result.stderr
    )
    result = node(CLI, "--trust-key", str(signing_keys["trusted"] / "private.pem"), str(extra), "10")
    assert result.returncode == 2 and "is a private key; pass the public key" in result.stderr
    result = node(CLI, "--trust-key", str(tmp_path / "none.pem"), str(extra), "10")
    assert result.returncode == 2 and "trust key not found" in result.stderr
    result = node(CLI, str(extra), "10", "--trust-key")
    assert result.returncode == 2 and "error: --trust-key needs a value" in result.stderr


def test_verifier_never_sees_another_commits_signature(signed_copy, signing_keys):
    """A Node process verifies in a loop (until a stop file appears) while 30 signed commits land
    (each changes the manifest; manifest.json and model.sig are two renames): no failure."""
    import subprocess
    import time
    from dataclasses import replace

    from export.sign import Sealer
    from oneneuron.fsio import Root
    from oneneuron.manifest import write
    from oneneuron.schema import Manifest
    from tests.conftest import ROOT

    key = signing_keys["trusted"] / "public.pem"
    stop, started = signed_copy.parent / "stop", signed_copy.parent / "started"
    script = (
        'import { existsSync, writeFileSync } from "node:fs";\n'
        'import { verifyDirectory } from "./serve/node/model.mjs";\n'
        "let reads = 0; const failures = [];\n"
        f"while (!existsSync({json.dumps(str(stop))})) {{\n"
        f"  try {{ await verifyDirectory({json.dumps(str(signed_copy))}, {json.dumps(str(key))}); }}\n"
        "  catch (err) { failures.push(err.message); }\n"
        f"  if (reads++ === 0) writeFileSync({json.dumps(str(started))}, '');\n"
        "}\n"
        "console.log(JSON.stringify({ reads, failures: failures.slice(0, 3), failed: failures.length }));"
    )
    proc = subprocess.Popen(
        [NODE, "--input-type=module", "-e", script], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    root, sealer = Root(signed_copy), Sealer(signing_keys["trusted"] / "private.pem")
    try:
        deadline = time.monotonic() + 30
        while not started.exists() and time.monotonic() < deadline:  # Node is up and reading
            time.sleep(0.01)
        for i in range(30):
            with root.locked():
                write(root, replace(Manifest.load(signed_copy), selftest_rtol=(1 + i % 2) * 1e-5), sealer)
    finally:
        stop.write_text("")
        out, _ = proc.communicate(timeout=60)
    got = json.loads(out)
    assert got["failed"] == 0 and got["reads"] > 10, got
