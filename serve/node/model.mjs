// Embed an exported ONNX model in a Node.js app with onnxruntime-node.
//
//   import { load, predict } from "oneneuron-embed";   // npm install <checkout>/serve/node
//   const model = await load("artifacts/keras_linear.onnx");   // verifies sha256 + self-test
//   console.log(await predict(model, [10]), model.metadata.source_framework);  // [ 18.98169326... ]
//
// `load` reads the file, checks its sha256 against manifest.json when one beside it lists the
// file, reads the ONNX metadata (onnx_info.mjs) and runs the model's self-test (selftest.mjs:
// embedded, or its probe file, whose sha256 must be the manifest's and the metadata's). With
// `{ trustKey: "public.pem" }` it first verifies the directory's model.sig (signature.mjs) and that
// the bytes it loads are the signed ones; `model.signedBy` is then the key's fingerprint (else null).

import { createHash } from "node:crypto";
import { constants } from "node:fs";
import { lstat, open, realpath } from "node:fs/promises";
import path from "node:path";
import ort from "onnxruntime-node";

import { CONTRACT } from "./contract.mjs";
import { createModel, EXPORT_FIX, IntegrityError, MissingModelError } from "./core.mjs";
import { findEntry, MANIFEST, MANIFEST_FIX, MAX_JSON_BYTES, parseManifest, requireGeneration } from "./manifest.mjs";
import { verifyFile } from "./signature.mjs";

export { EmbedError, InputError, IntegrityError, MissingModelError, parseRow, SELFTEST_ATOL, SELFTEST_RTOL }
  from "./core.mjs";
export { CONTRACT, DTYPES, fix } from "./contract.mjs";
export { parseManifest, RollbackError, SchemaError } from "./manifest.mjs";
export { SignatureError, verifyDirectory } from "./signature.mjs";

const MAX_MODEL_BYTES = 2 ** 31; // oneneuron/fsio.py Root.read_bytes
const MAX_PROBE_BYTES = CONTRACT.selftest.max_probe_bytes; // export/probe.py MAX_PROBE_BYTES

/**
 * Load an ONNX model file and verify it.
 * @param {string} file path to a .onnx file
 * @param {{selftest?: boolean, verifySha256?: boolean, threads?: number, trustKey?: string,
 *   minGeneration?: number}} [options]
 *   every check is on unless turned off explicitly; threads: onnxruntime intra-op threads;
 *   trustKey: a PEM public key file; the file must be covered by the directory's model.sig;
 *   minGeneration: refuse (RollbackError) a manifest of a lower `generation` (with trustKey, the
 *   signed manifest's), as serve/loader.py's min_generation does; a lone file counts as 0
 * @returns {Promise<import("./core.mjs").Model>}
 */
export async function load(file, { selftest = true, verifySha256 = true, threads = 1, trustKey = null,
  minGeneration = null } = {}) {
  const directory = path.dirname(path.resolve(file));
  // As serve/loader.py resolves a path: when the manifest beside the file lists it (as its stored
  // version or its stable name), the stored version is what is read (an export in progress may
  // not have repointed the stable name yet): a regular file inside the directory whose bytes
  // have the manifest's hash. A file it does not list is a lone model (a regular file; only its
  // self-test vouches for it).
  const manifest = await readManifest(directory);
  const entry = manifest === null ? null : findEntry(manifest, path.basename(file));
  const target = entry === null ? file : path.join(directory, entry.path);
  const bytes = await readRegular(target, entry === null ? null : directory, MAX_MODEL_BYTES);
  const verified = trustKey === null ? null : await verifyFile(target, directory, trustKey, bytes);
  const signedBy = verified === null ? null : verified.keyFingerprint;
  if (minGeneration !== null) { // with a key, the generation of the manifest whose signature verified
    const source = verified === null ? manifest : verified.manifest;
    requireGeneration(path.join(directory, MANIFEST), entry === null ? 0 : source.generation, minGeneration);
  }
  if (verifySha256 && entry !== null) checkSha256(file, bytes, entry);
  const sessionOptions = { intraOpNumThreads: threads, interOpNumThreads: 1, executionProviders: ["cpu"] };
  // The probe file the manifest entry names: confined to the directory, a regular file, bounded.
  const readProbe = async (probe) => {
    const probeFile = path.join(directory, probe.path);
    const data = await readRegular(probeFile, directory, MAX_PROBE_BYTES);
    return { bytes: data, sha256: createHash("sha256").update(data).digest("hex"), source: probeFile };
  };
  const model = await createModel(ort, new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), file,
    { selftest, sessionOptions, entry, readProbe });
  model.signedBy = signedBy;
  return model;
}

/**
 * Run a model of any signature on named inputs (name -> nested array, converted to each input's dtype
 * only when exact); resolves to {output name: nested array}. See tensors.mjs.
 */
export async function run(model, feeds) {
  return model.run(feeds);
}

/** Predict for a number, an array of numbers, or an array of rows; resolves to one number per row. */
export async function predict(model, x) {
  return model.predict(x);
}

const KINDS = [["isDirectory", "directory"], ["isFIFO", "FIFO"], ["isCharacterDevice", "character device"],
  ["isBlockDevice", "block device"], ["isSocket", "socket"]];

/**
 * Read `file` (at most `limit` bytes), which must be a regular file; with `inside`, one that
 * resolves (symlinks followed) inside that directory. Opened non-blocking and checked with fstat
 * before a byte is read, so a FIFO or a device is refused, never waited on.
 */
async function readRegular(file, inside, limit, { statOnly = false } = {}) {
  const missing = (why) => new MissingModelError(`${file}: ${why}; give the path of an exported .onnx file ` +
    `(e.g. artifacts/keras_linear.onnx; ${EXPORT_FIX} writes them)`);
  let real;
  try {
    real = await realpath(file);
  } catch (err) {
    if (err.code === "ENOENT") throw missing((await isLink(file)) ? "a dangling symlink" : "no such file");
    throw new MissingModelError(`${file}: ${err.message}; check the path and its permissions`);
  }
  if (inside !== null) {
    const rel = path.relative(await realpath(inside), real);
    if (!rel || rel.startsWith("..") || path.isAbsolute(rel)) {
      throw new IntegrityError(`${file}: leads outside ${inside} (to ${real}); nothing outside the artifacts ` +
        `directory is read; replace it with the file; re-run ${MANIFEST_FIX}`);
    }
  }
  let handle;
  try {
    handle = await open(real, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW);
  } catch (err) {
    if (err.code === "ENOENT") throw missing("no such file");
    if (err.code === "EISDIR") throw missing("is a directory");
    throw new MissingModelError(`${file}: ${err.message}; check the path and its permissions`);
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) {
      const kind = KINDS.find(([test]) => info[test]())?.[1] ?? "special file";
      if (kind === "directory") throw missing("is a directory");
      throw new IntegrityError(`${file}: not a regular file (a ${kind}); re-run ${MANIFEST_FIX}`);
    }
    if (info.size > limit) {
      throw new IntegrityError(`${file}: ${info.size.toLocaleString("en-US")} bytes, more than the limit of ` +
        `${limit.toLocaleString("en-US")}; re-run ${MANIFEST_FIX}`);
    }
    return statOnly ? null : await handle.readFile();
  } finally {
    await handle.close();
  }
}

async function isLink(file) {
  try {
    return (await lstat(file)).isSymbolicLink();
  } catch {
    return false;
  }
}

// manifest.json beside the model, parsed with the shared rules; null when there is none.
async function readManifest(directory) {
  const file = path.join(directory, MANIFEST);
  try {
    await lstat(file);
  } catch (err) {
    if (err.code === "ENOENT") return null; // a lone .onnx file: the self-test still runs
    throw new IntegrityError(`${file}: unreadable (${err.message}); re-run ${MANIFEST_FIX}`);
  }
  const bytes = await readRegular(file, directory, MAX_JSON_BYTES);
  let text;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new IntegrityError(`${file}: not UTF-8 text; re-run ${MANIFEST_FIX}`);
  }
  return parseManifest(text, file);
}

// The file's sha256 must match its manifest entry.
function checkSha256(file, bytes, entry) {
  const actual = createHash("sha256").update(bytes).digest("hex");
  if (actual !== entry.sha256) {
    throw new IntegrityError(`${file}: sha256 ${actual} != manifest ${entry.sha256}; the file was changed ` +
      `or truncated after export; re-run ${EXPORT_FIX}`);
  }
}
