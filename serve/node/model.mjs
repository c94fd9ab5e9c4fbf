// Embed an exported ONNX model in a Node.js app with onnxruntime-node.
//
//   import { load, predict } from "oneneuron-embed";   // npm install <checkout>/serve/node
//   const model = await load("artifacts/keras_linear.onnx");   // verifies sha256 + self-test
//   console.log(await predict(model, [10]), model.metadata.source_framework);  // [ 18.98169326... ]
//
// `load` reads the file, checks its sha256 against manifest.json when one beside it lists the
// file, reads the ONNX metadata (onnx_info.mjs) and runs the embedded self-test. With
// `{ trustKey: "public.pem" }` it first verifies the directory's model.sig (signature.mjs) and that
// the bytes it loads are the signed ones; `model.signedBy` is then the key's fingerprint (else null).

import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import ort from "onnxruntime-node";

import { createModel, EXPORT_FIX, IntegrityError, MissingModelError } from "./core.mjs";
import { verifyFile } from "./signature.mjs";

export { EmbedError, InputError, IntegrityError, MissingModelError, parseRow, SELFTEST_ATOL, SELFTEST_RTOL }
  from "./core.mjs";
export { SignatureError, verifyDirectory } from "./signature.mjs";

const MANIFEST = "manifest.json";

/**
 * Load an ONNX model file and verify it.
 * @param {string} file path to a .onnx file
 * @param {{selftest?: boolean, verifySha256?: boolean, threads?: number, trustKey?: string}} [options]
 *   every check is on unless turned off explicitly; threads: onnxruntime intra-op threads;
 *   trustKey: a PEM public key file; the file must be covered by the directory's model.sig
 * @returns {Promise<import("./core.mjs").Model>}
 */
export async function load(file, { selftest = true, verifySha256 = true, threads = 1, trustKey = null } = {}) {
  let bytes;
  try {
    bytes = await readFile(file);
  } catch (err) {
    const why = err.code === "ENOENT" ? "no such file" : err.code === "EISDIR" ? "is a directory" : err.message;
    throw new MissingModelError(`${file}: ${why}; give the path of an exported .onnx file ` +
      `(e.g. artifacts/keras_linear.onnx; ${EXPORT_FIX} writes them)`);
  }
  const signedBy = trustKey === null ? null
    : (await verifyFile(file, path.dirname(path.resolve(file)), trustKey, bytes)).keyFingerprint;
  if (verifySha256) await checkSha256(file, bytes);
  const sessionOptions = { intraOpNumThreads: threads, interOpNumThreads: 1, executionProviders: ["cpu"] };
  const model = await createModel(ort, new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), file,
    { selftest, sessionOptions });
  model.signedBy = signedBy;
  return model;
}

/** Predict for a number, an array of numbers, or an array of rows; resolves to one number per row. */
export async function predict(model, x) {
  return model.predict(x);
}

// When a manifest.json beside the file lists it, the file's sha256 must match the entry.
async function checkSha256(file, bytes) {
  const directory = path.dirname(path.resolve(file));
  let manifest;
  try {
    manifest = JSON.parse(await readFile(path.join(directory, MANIFEST), "utf8"));
  } catch (err) {
    if (err.code === "ENOENT") return; // a lone .onnx file: the self-test still runs
    throw new IntegrityError(`${path.join(directory, MANIFEST)}: unreadable (${err.message}); re-run ${EXPORT_FIX}`);
  }
  // the stored version itself, or its stable alias (keras_linear.onnx -> keras_linear.<sha12>.onnx)
  // the newest versions first, so an alias resolves to the newest; then the older kept versions
  const entry = [...(manifest.artifacts ?? []), ...(manifest.previous_versions ?? [])].find((a) => path.resolve(directory, a.path) === path.resolve(file) ||
    (a.alias !== undefined && path.resolve(directory, a.alias) === path.resolve(file)));
  if (!entry) return;
  const actual = createHash("sha256").update(bytes).digest("hex");
  if (actual !== entry.sha256) {
    throw new IntegrityError(`${file}: sha256 ${actual} != manifest ${entry.sha256}; the file was changed ` +
      `or truncated after export; re-run ${EXPORT_FIX}`);
  }
}
