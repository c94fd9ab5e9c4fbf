// Verify a signed artifacts directory in Node with node:crypto only (oneneuron/signing.py's rules).
//
//   import { verifyDirectory } from "./serve/node/signature.mjs";
//   const { keyFingerprint, files } = await verifyDirectory("artifacts", "keys/public.pem");
//
// model.mjs's `load(file, { trustKey })` calls `verifyFile` before onnxruntime reads a byte.

import { createHash, createPublicKey, verify } from "node:crypto";
import { lstat, readdir, readFile } from "node:fs/promises";
import path from "node:path";

import { InputError, MissingModelError } from "./errors.mjs";
import { parseManifest } from "./manifest.mjs";
import {
  badSignature, checkDigest, checkHint, checkManifest, MANIFEST, pae, parseBundle, parseStatement, SIGNATURE,
  SignatureError, signFix,
} from "./signature_core.mjs";

export { SIGNATURE, SignatureError } from "./signature_core.mjs";

const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");

/** Read a PEM EC P-256 public key; returns {key, fingerprint}. A private or other key: InputError (exit 2). */
export async function loadPublicKey(file) {
  let pem;
  try {
    pem = await readFile(file, "utf8");
  } catch {
    throw new MissingModelError(`${file}: trust key not found; pass the public key (public.pem) that python -m export.keys wrote`);
  }
  if (pem.includes("PRIVATE KEY")) {
    throw new InputError(`${file}: is a private key; pass the public key (public.pem) to verify, never the private one`);
  }
  let key;
  try {
    key = createPublicKey(pem);
  } catch (err) {
    throw new InputError(`${file}: not a PEM public key (${err.message}); pass public.pem from python -m export.keys`);
  }
  if (key.asymmetricKeyType !== "ec" || key.asymmetricKeyDetails?.namedCurve !== "prime256v1") {
    throw new InputError(`${file}: not an EC P-256 public key; make a key pair with python -m export.keys --out DIR`);
  }
  return { key, fingerprint: sha256(key.export({ type: "spki", format: "pem" })) };
}

// manifest.json plus every file of every stored version the manifest names (no symlinks, nothing outside).
async function signedFiles(dir, manifest) {
  const root = path.resolve(dir);
  const files = new Set([MANIFEST]);
  // every kept version: the newest (artifacts) and the older ones (previous_versions)
  for (const entry of [...(manifest.artifacts ?? []), ...(manifest.previous_versions ?? [])]) {
    const full = path.resolve(root, String(entry.path));
    if (!full.startsWith(root + path.sep)) throw new SignatureError(`${path.join(dir, MANIFEST)}: entry path ${entry.path} leaves ${dir}`);
    let info;
    try { info = await lstat(full); } catch { continue; } // named but missing: reported as removed
    if (info.isSymbolicLink()) throw new SignatureError(`${full}: is a symlink; the manifest must name stored versions`);
    if (!info.isDirectory()) { files.add(path.relative(root, full).split(path.sep).join("/")); continue; }
    for (const d of await readdir(full, { recursive: true, withFileTypes: true })) {
      const p = path.join(d.parentPath ?? d.path, d.name);
      if (d.isSymbolicLink()) throw new SignatureError(`${p}: a symlink inside a stored version; re-run python -m export.all`);
      if (d.isFile()) files.add(path.relative(root, p).split(path.sep).join("/"));
    }
  }
  return files;
}

const RETRIES = 5; // re-reads of a (model.sig, manifest.json) pair caught between an export's two renames

/** model.sig's text and manifest.json's bytes, each null when absent. */
async function readPair(dir) {
  const sig = await readFile(path.join(dir, SIGNATURE), "utf8").catch(() => null);
  const manifest = await readFile(path.join(dir, MANIFEST)).catch(() => null);
  return { sig, manifest };
}

const samePair = (a, b) => a.sig === b.sig &&
  (a.manifest === null ? b.manifest === null : b.manifest !== null && a.manifest.equals(b.manifest));

/**
 * Verify dir/model.sig with the public key file `trustKey` (see oneneuron/signing.py for the order).
 * Each file is read once; the manifest returned is parsed from the bytes whose signed sha256 was
 * checked. An export commits manifest.json and model.sig with two renames, so a failure is retried
 * while either file is still changing, and reported once both are stable (as oneneuron/signing.py).
 * @param {{only?: string}} options hash only this stored version's files (the index is always checked)
 * @returns {Promise<{keyFingerprint: string, files: string[], signed: Map<string, string>, manifest: object}>}
 */
export async function verifyDirectory(dir, trustKey, { only } = {}) {
  const { key, fingerprint } = await loadPublicKey(trustKey);
  let pair = await readPair(dir);
  for (let attempt = 0; ; attempt++) {
    try {
      return await verifyPair(dir, trustKey, key, fingerprint, pair, only);
    } catch (err) {
      if (!(err instanceof SignatureError) || attempt === RETRIES) throw err;
      await new Promise((resolve) => setTimeout(resolve, 20));
      const again = await readPair(dir);
      if (samePair(again, pair)) throw err; // nothing moved: the error stands
      pair = again;
    }
  }
}

async function verifyPair(dir, trustKey, key, fingerprint, pair, only) {
  const sigPath = path.join(dir, SIGNATURE);
  if (pair.sig === null) {
    throw new SignatureError(`${sigPath}: not found: ${dir} is unsigned; sign it with ${signFix(dir)}`);
  }
  const { payload, sig, hint } = parseBundle(pair.sig, sigPath, dir);
  checkHint(hint, fingerprint, sigPath, trustKey, dir);
  if (!verify("sha256", pae(payload), { key, dsaEncoding: "der" }, sig)) throw badSignature(sigPath, fingerprint, trustKey, dir);
  const signed = parseStatement(payload, sigPath);
  const manifestPath = path.join(dir, MANIFEST);
  const manifestBytes = pair.manifest;
  if (manifestBytes === null) {
    throw new SignatureError(`${manifestPath}: removed after signing; re-run python -m export.all and sign`);
  }
  checkManifest(signed, sha256(manifestBytes), manifestPath, dir);
  const manifest = parseManifest(manifestBytes.toString("utf8"), manifestPath); // the signed bytes, parsed once
  const present = await signedFiles(dir, manifest);
  const added = [...present].filter((f) => !signed.has(f)).sort();
  const removed = [...signed.keys()].filter((f) => !present.has(f)).sort();
  for (const name of removed) {
    try { await lstat(path.join(dir, name)); } catch {
      throw new SignatureError(`${path.join(dir, name)}: signed but removed after signing; re-run python -m export.all`);
    }
  }
  if (added.length || removed.length) {
    throw new SignatureError(`${path.join(dir, (added.length ? added : removed)[0])}: ` +
      `${added.length ? "added" : "no longer named by the manifest"} after signing (the signature covers ` +
      `${signed.size} files); re-sign with ${signFix(dir)}`);
  }
  for (const name of [...signed.keys()].sort()) {
    if (name === MANIFEST || (only !== undefined && name !== only && !name.startsWith(`${only}/`))) continue;
    checkDigest(signed, name, sha256(await readFile(path.join(dir, name))), path.join(dir, name));
  }
  return { keyFingerprint: fingerprint, files: [...signed.keys()].sort(), signed, manifest };
}

/** Verify the directory, then that `file` (a stored version or its alias) holds the bytes the
 * signature records for its entry in the verified manifest; pass the `bytes` you will load, so
 * what is verified is exactly what runs. */
export async function verifyFile(file, dir, trustKey, bytes = undefined) {
  const verified = await verifyDirectory(dir, trustKey, { only: MANIFEST }); // signature, manifest, file set
  const manifest = verified.manifest;
  const entry = [...(manifest.artifacts ?? []), ...(manifest.previous_versions ?? [])].find((a) => path.resolve(dir, a.path) === path.resolve(file) ||
    (a.alias !== undefined && path.resolve(dir, a.alias) === path.resolve(file)));
  if (!entry) {
    throw new SignatureError(`${file}: not named by the signed ${path.join(dir, MANIFEST)}, so not covered by ${SIGNATURE}`);
  }
  // named as the stored version (the stable name is a hard link to it), as oneneuron/signing.py does
  checkDigest(verified.signed, entry.path, sha256(bytes ?? await readFile(file)), path.join(dir, entry.path));
  return verified;
}
