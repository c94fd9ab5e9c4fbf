// What Node and the browser share: input parsing, the Model wrapper and its self-test.
//
// Runtime-agnostic: it is handed an onnxruntime module (onnxruntime-node or onnxruntime-web,
// same API) and the model's bytes, so `model.mjs` (Node) and `serve/web/static/app.mjs` (browser)
// run the very same checks. One model kind: every signature runs through `run` (tensors.mjs) and
// the one self-test (selftest.mjs); the article's x -> y models are one-input, one-output instances,
// and `predict` is a convenience over `run` for any model with one input of rows of numbers.

import { OnnxFormatError, readOnnxInfo } from "./onnx_info.mjs";
import { CONTRACT, fix } from "./contract.mjs";
import { EmbedError, InputError, IntegrityError, preview } from "./errors.mjs";
import { runSelftest, selftestCase } from "./selftest.mjs";
import { runModel, signatureOf } from "./tensors.mjs";

export { EmbedError, InputError, IntegrityError, MissingModelError } from "./errors.mjs";

// Same model across runtimes: |y - expected| <= ATOL + RTOL * |expected| (README "The check").
export const SELFTEST_ATOL = CONTRACT.selftest.atol;
export const SELFTEST_RTOL = CONTRACT.selftest.rtol;
export const MAX_SELFTEST_CHARS = CONTRACT.selftest.max_chars;
export const MAX_SELFTEST_TOL = CONTRACT.selftest.max_tol;
export const EXPORT_FIX = fix("onnx").replace(/^re-run /, ""); // "python -m export.onnx", for messages saying "re-run"

const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/** Parse one decimal number strictly ("1e3", "-2.5"; not "", "0x10", "1,5", "NaN", "Infinity"). */
export function parseNumber(textValue) {
  const trimmed = String(textValue).trim();
  if (!DECIMAL.test(trimmed)) {
    throw new InputError(`${JSON.stringify(String(textValue))} is not a number; give a decimal such as 10, -2.5 or 1e3`);
  }
  const value = Number(trimmed);
  if (!Number.isFinite(Math.fround(value))) {
    throw new InputError(`${trimmed} is beyond float32's range (±3.4e38); give a finite number such as 10`);
  }
  return value;
}

/**
 * Parse one row as typed by a person: one number, or n comma-separated numbers for n features.
 * @returns {number[]} the row, of length nFeatures
 */
export function parseRow(textValue, nFeatures) {
  const parts = String(textValue).split(",");
  if (parts.length !== nFeatures) {
    const example = Array.from({ length: nFeatures }, (_, i) => i + 1).join(",");
    throw new InputError(`${JSON.stringify(String(textValue))} has ${parts.length} value(s); the model takes ` +
      `${nFeatures} feature(s) per row: give ${nFeatures === 1 ? "one number, e.g. 10" : `a comma-separated row, e.g. ${example}`}`);
  }
  return parts.map(parseNumber);
}

/**
 * predict's input as rows of nFeatures values: a number, an array of numbers (one per row with one
 * feature, else one row), or an array of rows. Values are converted (exactly) by `run`.
 */
export function toRows(x, nFeatures) {
  const expected = nFeatures === 1 ? "a number, an array of numbers, or an array of [x] rows"
    : `one row of ${nFeatures} numbers or an array of such rows`;
  let rows;
  if (typeof x === "number") rows = [[x]];
  else if (Array.isArray(x) && x.length > 0 && x.every((r) => typeof r === "number")) {
    rows = nFeatures === 1 ? x.map((v) => [v]) : [x];
  } else if (Array.isArray(x) && x.length > 0 && x.every(Array.isArray)) rows = x;
  else throw new InputError(`got ${preview(x)}; expected ${expected}`);
  rows.forEach((row, i) => {
    if (row.length !== nFeatures) {
      throw new InputError(`row ${i} is ${preview(row)}; expected ${nFeatures} value(s) per row (${expected})`);
    }
  });
  return rows;
}

/**
 * A queue running async jobs one at a time. The page passes one to every model: onnxruntime-web's
 * WASM build shares one heap between sessions, and runs (or a session being created) interleaved at
 * their awaits fail at random ("output name cannot be empty", seen with a CNN loading beside a
 * transformer; transformers.js issue 1234 reports the same). Node runs sessions concurrently.
 */
export function serialQueue() {
  let tail = Promise.resolve();
  return (job) => {
    const result = tail.then(job);
    tail = result.catch(() => {});
    return result;
  };
}

const direct = (job) => job();

/** One ONNX model in an onnxruntime session, with its metadata and signature. */
export class Model {
  constructor({ ort, session, info, source, exclusive = direct }) {
    this.ort = ort;
    this.exclusive = exclusive; // how session.run is called (serialQueue on the page)
    this.session = session;
    this.source = source; // path or URL, for messages
    this.metadata = info.metadata; // ONNX metadata_props: model, source_framework, selftest, ...
    this.opset = info.opsets[""] ?? info.opsets["ai.onnx"] ?? null;
    this.irVersion = info.irVersion;
    this.producer = `${info.producerName} ${info.producerVersion}`.trim();
    this.name = this.metadata.model ?? String(source).split("/").pop().replace(/\.onnx$/, "");
    this.signature = signatureOf(session); // [{name, dtype, shape}] for inputs and outputs
    this.nFeatures = featureCount(this.signature, this.metadata, source); // null unless one input of rows
    this.inputName = this.nFeatures === null ? null : this.signature.inputs[0].name;
    this.outputName = this.signature.outputs.length === 1 ? this.signature.outputs[0].name : null;
  }

  /**
   * Predict for one or more rows (see `toRows`) of a model with one input [batch, n]. Resolves to one
   * entry per row: its output's row (a number when the output has one value per row), or, with
   * several outputs, {output name: row}.
   */
  async predict(x) {
    if (this.nFeatures === null) {
      throw new InputError(`predict needs one input of rows [batch, n]; this model's inputs are ` +
        `${preview(this.signature.inputs.map((s) => `${s.name} ${s.dtype} [${s.shape.map((d) => d ?? "any")}]`))}: ` +
        "use run(model, {name: nested array, ...})");
    }
    const out = await this.run({ [this.inputName]: toRows(x, this.nFeatures) });
    const row = (value) => (Array.isArray(value) && value.length === 1 ? value[0] : value);
    if (this.outputName !== null) return out[this.outputName].map(row);
    const rows = out[this.signature.outputs[0].name].length;
    return Array.from({ length: rows }, (_, i) => Object.fromEntries(Object.entries(out).map(([k, v]) => [k, row(v[i])])));
  }

  /** Run on named inputs (any signature); resolves to {output name: nested array}. */
  async run(feeds) {
    return runModel(this, feeds);
  }

  /**
   * Run the model's self-test (selftest.mjs: embedded JSON, its probe file, or the article's keys);
   * throws IntegrityError beyond tolerance or when there is none.
   */
  async selftest({ entry = null, readProbe = null } = {}) {
    return runSelftest(this, await selftestCase(this, { entry, readProbe }));
  }

  async release() {
    await this.session.release?.();
  }
}

// One input of rank 2 (any dtype): its second dimension when fixed, else the metadata's n_features;
// null for any other signature (predict then points to run).
function featureCount(signature, metadata, source) {
  const [input] = signature.inputs;
  if (signature.inputs.length !== 1 || input.shape.length !== 2) return null;
  const declared = metadata.n_features === undefined ? null : Number(metadata.n_features);
  const n = input.shape[1] ?? declared;
  if (n === null) return null;
  if (!Number.isInteger(n) || n < 1 || (declared !== null && declared !== n)) {
    throw new IntegrityError(`${source}: input shape says ${input.shape[1] ?? "any"} feature(s) but metadata n_features ` +
      `says ${preview(metadata.n_features)}; re-run ${EXPORT_FIX}`);
  }
  return n;
}

/**
 * Open a model from its bytes with the given onnxruntime module and run its self-test.
 * @param {object} ort onnxruntime-node or onnxruntime-web
 * @param {Uint8Array} bytes the .onnx file
 * @param {string} source path or URL, for messages
 * @param {{selftest?: boolean, sessionOptions?: object, entry?: object|null, readProbe?: Function|null}} options
 *   entry: the file's manifest entry; readProbe: reads (bounded) and hashes its probe file (selftest.mjs);
 *   queue: a serialQueue() shared by the models of one WASM runtime
 */
export async function createModel(ort, bytes, source, { selftest = true, sessionOptions = {}, entry = null,
  readProbe = null, queue = direct } = {}) {
  let info;
  let session;
  try {
    info = readOnnxInfo(bytes);
    session = await queue(() => ort.InferenceSession.create(bytes, { logSeverityLevel: 3, ...sessionOptions }));
  } catch (err) {
    if (err instanceof EmbedError) throw err;
    const why = err instanceof OnnxFormatError ? err.message : String(err.message ?? err).split("\n")[0].slice(0, 200);
    throw new IntegrityError(`${source}: not a loadable ONNX model (${why}); re-run ${EXPORT_FIX}`);
  }
  const model = new Model({ ort, session, info, source, exclusive: queue });
  if (selftest) model.selftestResult = await model.selftest({ entry, readProbe });
  return model;
}
