// Verify a signed artifacts directory in Node with node:crypto only (core/signing.py's rules).
//
//   import { verifyDirectory } from "./serve/node/signature.mjs";
//   const { keyFingerprint, files } = await verifyDirectory("artifacts", "keys/public.pem");
//
// model.mjs's `load(file, { trustKey })` calls `verifyFile` before onnxruntime reads a byte.

import { createHash, createPublicKey, verify } from "node:crypto";
import { lstat, readdir, readFile } from "node:fs/promises";
import path from "node:path";

import { InputError, MissingModelError } from "./core.mjs";
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

/**
 * Verify dir/model.sig with the public key file `trustKey` (see core/signing.py for the order).
 * @param {{only?: string}} options hash only this stored version's files (the index is always checked)
 * @returns {Promise<{keyFingerprint: string, files: string[], signed: Map<string, string>}>}
 */
export async function verifyDirectory(dir, trustKey, { only } = {}) {
  const { key, fingerprint } = await loadPublicKey(trustKey);
  const sigPath = path.join(dir, SIGNATURE);
  let text;
  try {
    text = await readFile(sigPath, "utf8");
  } catch {
    throw new SignatureError(`${sigPath}: not found: ${dir} is unsigned; sign it with ${signFix(dir)}`);
  }
  const { payload, sig, hint } = parseBundle(text, sigPath, dir);
  checkHint(hint, fingerprint, sigPath, trustKey, dir);
  if (!verify("sha256", pae(payload), { key, dsaEncoding: "der" }, sig)) throw badSignature(sigPath, fingerprint, trustKey, dir);
  const signed = parseStatement(payload, sigPath);
  const manifestPath = path.join(dir, MANIFEST);
  let manifestBytes;
  try { manifestBytes = await readFile(manifestPath); } catch {
    throw new SignatureError(`${manifestPath}: removed after signing; re-run python -m export.all and sign`);
  }
  checkManifest(signed, sha256(manifestBytes), manifestPath, dir);
  const present = await signedFiles(dir, JSON.parse(manifestBytes.toString("utf8")));
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
    if (only !== undefined && name !== only && !name.startsWith(`${only}/`)) continue;
    checkDigest(signed, name, sha256(await readFile(path.join(dir, name))), path.join(dir, name));
  }
  return { keyFingerprint: fingerprint, files: [...signed.keys()].sort(), signed };
}

/** Verify the directory, then that `file` (a stored version or its alias) holds signed bytes;
 * pass the `bytes` you will load, so what is verified is exactly what runs. */
export async function verifyFile(file, dir, trustKey, bytes = undefined) {
  const manifest = JSON.parse(await readFile(path.join(dir, MANIFEST), "utf8").catch(() => "{}"));
  const entry = [...(manifest.artifacts ?? []), ...(manifest.previous_versions ?? [])].find((a) => path.resolve(dir, a.path) === path.resolve(file) ||
    (a.alias !== undefined && path.resolve(dir, a.alias) === path.resolve(file)));
  if (!entry) {
    await verifyDirectory(dir, trustKey, { only: MANIFEST }); // unsigned or altered: say that first
    throw new SignatureError(`${file}: not named by the signed ${path.join(dir, MANIFEST)}, so not covered by ${SIGNATURE}`);
  }
  const verified = await verifyDirectory(dir, trustKey, { only: entry.path });
  if (verified.signed.get(entry.path) !== sha256(bytes ?? await readFile(file))) {
    throw new SignatureError(`${file}: its bytes are not the signed ${entry.path}; re-run python -m export.all and sign`);
  }
  return verified;
}
