// What Node and the browser share: errors, input checks, the self-test and the Model wrapper.
//
// Runtime-agnostic: it is handed an onnxruntime module (onnxruntime-node or onnxruntime-web,
// same API) and the model's bytes, so `model.mjs` (Node) and `serve/web/app.mjs` (browser) run
// the very same checks. The rules mirror the Python loader (serve/loader.py).

import { OnnxFormatError, readOnnxInfo } from "./onnx_info.mjs";
import { generalSelftest, runModel, signatureOf } from "./tensors.mjs";

// Same model across runtimes: |y - selftest_y| <= ATOL + RTOL * |selftest_y| (README "The check").
export const SELFTEST_ATOL = 1e-5;
export const SELFTEST_RTOL = 1e-6;
export const MAX_SELFTEST_CHARS = 65536; // selftest_x in the ONNX metadata (serve/loader.py)
export const MAX_SELFTEST_TOL = 1e-3; // a file claiming a looser self-test tolerance is refused
export const EXPORT_FIX = "python -m export.onnx";

/** Base class; `exitCode` follows oneneuron/errors.py: 2 for input/usage, 1 for a failed integrity check. */
export class EmbedError extends Error {
  get exitCode() { return 2; }
  get name() { return this.constructor.name; }
}
/** A value given to predict (or on the command line) is not what the model takes. */
export class InputError extends EmbedError {}
/** The model file is not there or not readable. */
export class MissingModelError extends EmbedError {}
/** The file is not a usable ONNX model, its sha256 differs, or its self-test fails. */
export class IntegrityError extends EmbedError {
  get exitCode() { return 1; }
}

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
 * Convert predict's input to a float32 batch.
 * With one feature: a number, or an array of numbers (one per row), or an array of [x] rows.
 * With n features: one row of n numbers, or an array of rows.
 * @returns {{data: Float32Array, rows: number}}
 */
export function toBatch(x, nFeatures) {
  const expected = nFeatures === 1 ? "a number, an array of numbers, or an array of [x] rows"
    : `one row of ${nFeatures} numbers or an array of such rows`;
  let rows;
  if (typeof x === "number") rows = [[x]];
  else if (Array.isArray(x) && x.length > 0 && x.every((r) => typeof r === "number")) {
    rows = nFeatures === 1 ? x.map((v) => [v]) : [x];
  } else if (Array.isArray(x) && x.length > 0 && x.every(Array.isArray)) rows = x;
  else throw new InputError(`got ${preview(x)}; expected ${expected}`);
  const data = new Float32Array(rows.length * nFeatures);
  rows.forEach((row, i) => {
    if (row.length !== nFeatures || !row.every((v) => typeof v === "number")) {
      throw new InputError(`row ${i} is ${preview(row)}; expected ${nFeatures} number(s) per row (${expected})`);
    }
    row.forEach((v, j) => { data[i * nFeatures + j] = v; });
  });
  if (!data.every(Number.isFinite)) {
    throw new InputError(`input ${preview(x)} holds NaN, infinity or a value beyond float32's range; expected finite numbers`);
  }
  return { data, rows: rows.length };
}

function preview(x) {
  let s;
  try { s = JSON.stringify(x) ?? String(x); } catch { s = String(x); }
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/** One ONNX model in an onnxruntime session, with its metadata. */
export class Model {
  constructor({ ort, session, info, source }) {
    this.ort = ort;
    this.session = session;
    this.source = source; // path or URL, for messages
    this.metadata = info.metadata; // ONNX metadata_props: model, source_framework, selftest_x, ...
    this.opset = info.opsets[""] ?? info.opsets["ai.onnx"] ?? null;
    this.irVersion = info.irVersion;
    this.producer = `${info.producerName} ${info.producerVersion}`.trim();
    this.name = this.metadata.model ?? String(source).split("/").pop().replace(/\.onnx$/, "");
    this.signature = signatureOf(session); // any signature: `run(feeds)` (tensors.mjs)
    if (!isClassic(this.signature)) { // predict needs one float32 input [batch, n] and one output
      this.inputName = this.outputName = this.nFeatures = null;
      return;
    }
    this.inputName = session.inputNames[0];
    this.outputName = session.outputNames[0];
    this.nFeatures = featureCount(session, this.metadata, source);
  }

  /** Predict for one or more rows (see `toBatch`); resolves to one number per row. */
  async predict(x) {
    if (this.nFeatures === null) {
      throw new InputError(`predict needs one float32 input [batch, n]; this model's inputs are ` +
        `${preview(this.signature.inputs.map((s) => s.name))}: use run(model, {name: nested array, ...})`);
    }
    const { data, rows } = toBatch(x, this.nFeatures);
    return this.runRows(data, rows);
  }

  /** Run on named inputs (any signature); resolves to {output name: nested array}. */
  async run(feeds) {
    return runModel(this, feeds);
  }

  /**
   * Run the embedded self-test; throws IntegrityError beyond tolerance. A general model's `selftest`
   * metadata (named tensors) goes through tensors.mjs; the article's keys follow serve/loader.py
   * (Model.selftest): selftest_x is one row of nFeatures finite numbers (at most MAX_SELFTEST_CHARS
   * characters), selftest_y finite, the tolerance from the metadata (selftest_atol / selftest_rtol,
   * each in [0, MAX_SELFTEST_TOL]); the input runs as one row and as a two-row batch, and each must
   * give float32 with one value per row.
   */
  async selftest() {
    // the article's keys when present (its exports write them beside the same test in `selftest`)
    if (this.metadata.selftest !== undefined && this.metadata.selftest_x === undefined) return generalSelftest(this);
    const { x, expected, atol, rtol } = selftestValues(this.metadata, this.nFeatures, this.source);
    const out = await this.runRows(Float32Array.from(x), 1);
    const batch = await this.runRows(Float32Array.from([...x, ...x]), 2);
    const actual = out[0];
    const tolerance = atol + rtol * Math.abs(expected);
    if (!(Math.abs(actual - expected) <= tolerance) || batch[1] !== actual) {
      throw new IntegrityError(`${this.source}: self-test at x = ${JSON.stringify([x])} expected ${expected}, ` +
        `got ${actual} (tolerance ${atol} + ${rtol}·|y|); re-run ${EXPORT_FIX}`);
    }
    return { x: [x], expected, actual, tolerance };
  }

  // Run `rows` rows of float32 input; the output must be float32 with one value per row.
  async runRows(data, rows) {
    const feeds = { [this.inputName]: new this.ort.Tensor("float32", data, [rows, this.nFeatures]) };
    const out = (await this.session.run(feeds))[this.outputName];
    if (out.type !== "float32" || out.data.length !== rows) {
      throw new IntegrityError(`${this.source}: output ${out.type} ${preview(out.dims)} for ${rows} row(s); ` +
        `expected float32 [${rows}, 1]; re-run ${EXPORT_FIX}`);
    }
    return Array.from(out.data, Number);
  }

  async release() {
    await this.session.release?.();
  }
}

/** The self-test values in an ONNX model's metadata, validated (see `Model.selftest`). */
export function selftestValues(metadata, nFeatures, source) {
  const bad = (why) => new IntegrityError(`${source}: metadata has no usable self-test (${why}); re-run ${EXPORT_FIX}`);
  const text = metadata.selftest_x;
  if (typeof text !== "string" || typeof metadata.selftest_y !== "string") throw bad("selftest_x / selftest_y missing");
  if (text.length > MAX_SELFTEST_CHARS) {
    throw bad(`selftest_x is ${text.length.toLocaleString("en-US")} characters, more than ${MAX_SELFTEST_CHARS.toLocaleString("en-US")}`);
  }
  let rows;
  try {
    rows = JSON.parse(text);
  } catch (err) {
    throw bad(String(err.message).slice(0, 120));
  }
  const row = Array.isArray(rows) && rows.length === 1 && Array.isArray(rows[0]) ? rows[0] : null;
  if (row === null || row.length !== nFeatures || !row.every((v) => typeof v === "number" && Number.isFinite(v))) {
    throw bad(`selftest_x must be one row of ${nFeatures} finite number(s), got ${preview(rows)}`);
  }
  const number = (key, fallback) => {
    const value = metadata[key];
    if (value === undefined) return fallback;
    try {
      return parseNumber(value);
    } catch {
      throw bad(`${key} ${preview(value)} is not a finite number`);
    }
  };
  const expected = number("selftest_y", null);
  const atol = number("selftest_atol", SELFTEST_ATOL);
  const rtol = number("selftest_rtol", SELFTEST_RTOL);
  if (!(atol >= 0 && atol <= MAX_SELFTEST_TOL && rtol >= 0 && rtol <= MAX_SELFTEST_TOL)) {
    throw bad(`tolerance ${atol} + ${rtol}·|y| is outside [0, ${MAX_SELFTEST_TOL}]`);
  }
  return { x: row, expected, atol, rtol };
}

// One float32 input of rank 2 and one output: the article's signature, which `predict` takes.
function isClassic({ inputs, outputs }) {
  return inputs.length === 1 && outputs.length === 1 && inputs[0].dtype === "float32" && inputs[0].shape.length === 2;
}

// The input's second dimension when it is fixed; else the metadata's n_features.
function featureCount(session, metadata, source) {
  const shape = session.inputMetadata?.[0]?.shape;
  let n = Array.isArray(shape) && shape.length === 2 && Number.isInteger(shape[1]) ? shape[1] : null;
  const declared = metadata.n_features === undefined ? null : Number(metadata.n_features);
  if (n === null) n = declared;
  if (!Number.isInteger(n) || n < 1) {
    throw new IntegrityError(`${source}: cannot tell the number of features (input shape ${preview(shape)}, ` +
      `metadata n_features ${preview(metadata.n_features)}); re-run ${EXPORT_FIX}`);
  }
  if (declared !== null && declared !== n) {
    throw new IntegrityError(`${source}: input shape says ${n} feature(s) but metadata n_features says ` +
      `${metadata.n_features}; re-run ${EXPORT_FIX}`);
  }
  return n;
}

/**
 * Open a model from its bytes with the given onnxruntime module and run its self-test.
 * @param {object} ort onnxruntime-node or onnxruntime-web
 * @param {Uint8Array} bytes the .onnx file
 * @param {string} source path or URL, for messages
 * @param {{selftest?: boolean, sessionOptions?: object}} options
 */
export async function createModel(ort, bytes, source, { selftest = true, sessionOptions = {} } = {}) {
  let info;
  let session;
  try {
    info = readOnnxInfo(bytes);
    session = await ort.InferenceSession.create(bytes, { logSeverityLevel: 3, ...sessionOptions });
  } catch (err) {
    if (err instanceof EmbedError) throw err;
    const why = err instanceof OnnxFormatError ? err.message : String(err.message ?? err).split("\n")[0].slice(0, 200);
    throw new IntegrityError(`${source}: not a loadable ONNX model (${why}); re-run ${EXPORT_FIX}`);
  }
  const model = new Model({ ort, session, info, source });
  if (selftest) model.selftestResult = await model.selftest();
  return model;
}
