// What Node and the browser share to verify `model.sig` (OpenSSF model signing, key mode): parse the
// Sigstore bundle, rebuild the DSSE pre-authentication encoding, read the signed in-toto statement and
// compare it with the files. Runtime-agnostic: the caller does the ECDSA check (node:crypto or
// WebCrypto) and the file reads. The rules and messages mirror oneneuron/signing.py.

import { IntegrityError } from "./errors.mjs";

export const SIGNATURE = "model.sig";
export const MANIFEST = "manifest.json";
const BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle";
const PAYLOAD_TYPE = "application/vnd.in-toto+json";
const STATEMENT_TYPE = "https://in-toto.io/Statement/v1";
const PREDICATE_TYPE = "https://model_signing/signature/v1.0";

/** The directory is unsigned, signed by another key, or changed after signing (exit 1). */
export class SignatureError extends IntegrityError {}

export const signFix = (dir) => `python -m export.sign --artifacts ${dir} --key private.pem`;

// An error message quoting the file's bytes stays one printable line.
const oneLine = (text) => String(text).replace(/[^\x20-\x7e]+/g, " ").slice(0, 100);

function fromBase64(text) {
  if (typeof text !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) {
    throw new TypeError("not base64");
  }
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

/** Parse a bundle's text; returns {payload, sig (DER bytes), hint}. Malformed: SignatureError. */
export function parseBundle(text, source, dir) {
  let bundle;
  let envelope;
  try {
    bundle = JSON.parse(text);
    envelope = bundle.dsseEnvelope;
    const out = {
      payload: fromBase64(envelope.payload),
      sig: fromBase64(envelope.signatures[0].sig),
      hint: bundle.verificationMaterial?.publicKey?.hint ?? "",
    };
    if (!String(bundle.mediaType).startsWith(BUNDLE_MEDIA_TYPE) || envelope.payloadType !== PAYLOAD_TYPE) {
      throw new SignatureError(`${source}: bundle type ${bundle.mediaType} / ${envelope.payloadType} is not a ` +
        `model-signing DSSE bundle; re-sign with ${signFix(dir)}`);
    }
    return out;
  } catch (err) {
    if (err instanceof SignatureError) throw err;
    throw new SignatureError(`${source}: not a valid signature bundle (${err.name}: ${oneLine(err.message)}); ` +
      `it is truncated or not model-signing's JSON; re-sign with ${signFix(dir)}`);
  }
}

/** DSSE v1 pre-authentication encoding of the payload: the bytes the signature is over. */
export function pae(payload) {
  const head = new TextEncoder().encode(`DSSEv1 ${PAYLOAD_TYPE.length} ${PAYLOAD_TYPE} ${payload.length} `);
  const out = new Uint8Array(head.length + payload.length);
  out.set(head);
  out.set(payload, head.length);
  return out;
}

/** The signed statement's resources as a Map(relative path -> sha256 hex). */
export function parseStatement(payload, source) {
  try {
    const statement = JSON.parse(new TextDecoder().decode(payload));
    if (statement._type !== STATEMENT_TYPE || statement.predicateType !== PREDICATE_TYPE) {
      throw new Error(`statement type ${statement._type} / ${statement.predicateType}`);
    }
    if (statement.predicate.serialization.method !== "files") throw new Error("serialization is not 'files'");
    const resources = new Map();
    for (const r of statement.predicate.resources) {
      if (r.algorithm !== "sha256") throw new Error(`algorithm ${r.algorithm}, expected sha256`);
      resources.set(String(r.name), String(r.digest));
    }
    return resources;
  } catch (err) {
    throw new SignatureError(`${source}: the signed statement is not model-signing's v1.0 file list (${err.message})`);
  }
}

/** The key hint must name the trusted key (model-signing writes sha256 of the public key's PEM). */
export function checkHint(hint, fingerprint, source, keyName, dir) {
  if (hint && hint !== fingerprint) {
    throw new SignatureError(`${source}: signed by key ${hint.slice(0, 16)}, not the trusted key ` +
      `${fingerprint.slice(0, 16)} (${keyName}); pass that key's public.pem, or re-sign with ${signFix(dir)}`);
  }
}

export function badSignature(source, fingerprint, keyName, dir) {
  return new SignatureError(`${source}: the signature does not verify with the trusted key ${fingerprint.slice(0, 16)} ` +
    `(${keyName}): signed by another key, or the bundle was altered; re-sign with ${signFix(dir)}`);
}

/** manifest.json's sha256 must be the signed one (else: edited, or a signature from another export). */
export function checkManifest(signed, actual, manifestSource, dir) {
  const expected = signed.get(MANIFEST);
  if (expected === undefined) throw new SignatureError(`${manifestSource}: not covered by ${SIGNATURE}; re-sign with ${signFix(dir)}`);
  if (actual !== expected) {
    throw new SignatureError(`${manifestSource}: sha256 ${actual.slice(0, 12)} != signed ${expected.slice(0, 12)}: the ` +
      `manifest changed after signing (or ${SIGNATURE} comes from another export); re-sign with ${signFix(dir)}`);
  }
}

/** A file's bytes must hash to the signed digest. */
export function checkDigest(signed, name, actual, source) {
  const expected = signed.get(name);
  if (actual !== expected) {
    throw new SignatureError(`${source}: sha256 ${actual.slice(0, 12)} != signed ${String(expected).slice(0, 12)}: ` +
      "changed after signing; re-run python -m export.all and sign again");
  }
}

/** WebCrypto wants ECDSA signatures as r || s (32 bytes each for P-256); bundles hold DER. */
export function derToRaw(der) {
  const fail = () => { throw new TypeError("not a DER ECDSA signature"); };
  if (der[0] !== 0x30) fail();
  let i = der[1] & 0x80 ? 2 + (der[1] & 0x7f) : 2;
  const out = new Uint8Array(64);
  for (let k = 0; k < 2; k++) {
    if (der[i] !== 0x02) fail();
    const len = der[i + 1];
    let int = der.subarray(i + 2, i + 2 + len);
    while (int.length > 32 && int[0] === 0) int = int.subarray(1);
    if (int.length > 32) fail();
    out.set(int, 32 * k + 32 - int.length);
    i += 2 + len;
  }
  return out;
}
