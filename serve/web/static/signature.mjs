// The page's signature check (WebCrypto): `python -m serve.web --trust-key public.pem` serves the key
// at /trust/public.pem; the page then verifies /artifacts/model.sig with it before running any model.
//
// Same rules and messages as oneneuron/signing.py and serve/node/signature.mjs, with one limit: a page
// cannot list a directory, so the file set is checked at the level of the manifest's stored versions
// (every one signed, nothing else signed), and each model's bytes against its signed digest. Python and
// Node also walk SavedModel directories for added files; the page never loads those.

import {
  badSignature, checkDigest, checkHint, checkManifest, derToRaw, MANIFEST, pae, parseBundle, parseStatement,
  SIGNATURE, SignatureError, signFix,
} from "/lib/signature_core.mjs";

const DIR = "/artifacts";
const hex = (buf) => Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join("");

function pemBody(pem) {
  const match = /-----BEGIN PUBLIC KEY-----([A-Za-z0-9+/=\s]+)-----END PUBLIC KEY-----/.exec(pem);
  if (!match) throw new SignatureError("/trust/public.pem: not a PEM public key; restart python -m serve.web with --trust-key public.pem");
  return Uint8Array.from(atob(match[1].replace(/\s+/g, "")), (c) => c.charCodeAt(0));
}

// sha256 of the key's canonical PEM (64-column base64): the fingerprint Python and Node compute.
async function fingerprint(spki) {
  const b64 = btoa(String.fromCharCode(...spki)).match(/.{1,64}/g).join("\n");
  const pem = `-----BEGIN PUBLIC KEY-----\n${b64}\n-----END PUBLIC KEY-----\n`;
  return hex(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(pem)));
}

/**
 * Verify the directory's signature with the trusted key.
 * @returns {Promise<{fingerprint: string, checkFile: (path: string, sha: string, url: string) => string}>}
 */
export async function verifySignature(pem, manifestBytes, manifest) {
  if (!globalThis.crypto?.subtle) {
    throw new SignatureError("cannot verify signatures here: WebCrypto needs a secure context (https or loopback)");
  }
  const spki = pemBody(pem);
  const key = await crypto.subtle.importKey("spki", spki, { name: "ECDSA", namedCurve: "P-256" }, false, ["verify"]);
  const fp = await fingerprint(spki);
  const sigUrl = `${DIR}/${SIGNATURE}`;
  const response = await fetch(sigUrl);
  if (response.status === 404) throw new SignatureError(`${sigUrl}: not found: ${DIR} is unsigned; sign it with ${signFix("artifacts")}`);
  if (!response.ok) throw new SignatureError(`${sigUrl}: HTTP ${response.status}`);
  const { payload, sig, hint } = parseBundle(await response.text(), sigUrl, "artifacts");
  checkHint(hint, fp, sigUrl, "/trust/public.pem", "artifacts");
  let ok = false;
  try {
    ok = await crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, key, derToRaw(sig), pae(payload));
  } catch { ok = false; }
  if (!ok) throw badSignature(sigUrl, fp, "/trust/public.pem", "artifacts");
  const signed = parseStatement(payload, sigUrl);
  checkManifest(signed, hex(await crypto.subtle.digest("SHA-256", manifestBytes)), `${DIR}/${MANIFEST}`, "artifacts");
  const named = new Set([...manifest.artifacts, ...(manifest.previous_versions ?? [])].map((a) => a.path));
  const signedTop = new Set([...signed.keys()].filter((n) => n !== MANIFEST).map((n) => n.split("/")[0]));
  for (const p of named) {
    if (!signedTop.has(p)) throw new SignatureError(`${DIR}/${p}: added after signing (not covered by ${SIGNATURE}); re-sign with ${signFix("artifacts")}`);
  }
  for (const p of signedTop) {
    if (!named.has(p)) throw new SignatureError(`${DIR}/${p}: no longer named by the manifest after signing; re-sign with ${signFix("artifacts")}`);
  }
  return {
    fingerprint: fp,
    checkFile(path, sha, url) {
      checkDigest(signed, path, sha, url);
      return fp;
    },
  };
}
