// The self-test every model carries, one path for every signature (serve/selftest.py and
// serve/model.py's `selftest` are the Python side; the bounds are the shared contract's).
//
// A self-test is a case {inputs: {name: rows}, outputs: {name: rows}, atol, rtol}, taken from the
// first of these the ONNX metadata has:
//   - `selftest`: the case as JSON (at most max_chars characters, 1 to max_rows rows);
//   - `selftest_probe`: the sha256 of the model's probe file (export/probe.py), which the manifest
//     entry names (`probe`): the digest must equal the entry's, the file (read bounded by the
//     caller) must hash to it, and its first max_rows rows are the case;
//   - `selftest_x` / `selftest_y` (the article's models): one row of n floats and the output there.
// The inputs run once and as a doubled batch (the first half must equal the single run exactly);
// every listed output must be within atol + rtol·|expected| of the stored values.

import { CONTRACT, fix } from "./contract.mjs";
import { IntegrityError, InputError, preview } from "./errors.mjs";
import { NpzError, readNpz } from "./npz.mjs";
import { flatten, toNested } from "./tensors.mjs";

const S = CONTRACT.selftest;
const SHA256 = /^[0-9a-f]{64}$/;
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const EXPORT_FIX = fix("onnx");
const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

/**
 * The model's self-test case (see the module comment); throws IntegrityError naming what is missing.
 * @param {import("./core.mjs").Model} model
 * @param {{entry?: object|null, readProbe?: ((probe: {path: string, sha256: string}) =>
 *   Promise<{bytes: Uint8Array, sha256: string, source: string}>)|null}} from the manifest entry
 *   naming the file, and how to read (bounded) and hash its probe file
 */
export async function selftestCase(model, { entry = null, readProbe = null } = {}) {
  const { metadata } = model;
  // the article's exports write its keys beside the same test in 'selftest': its keys first keep the
  // CLI's output for those models as it was (Python checks that both describe the same test)
  if (metadata.selftest_x !== undefined || metadata.selftest_y !== undefined) return articleCase(model);
  if (metadata[S.key] !== undefined) return embeddedCase(model);
  if (metadata[S.probe_key] !== undefined) return probeCase(model, entry, readProbe);
  throw new IntegrityError(`${model.source}: no self-test: its ONNX metadata has no '${S.key}' (rows as JSON), no ` +
    `'${S.probe_key}' (a probe file's sha256) and no 'selftest_x'/'selftest_y'; ${EXPORT_FIX}, or load it with ` +
    "{ selftest: false }");
}

function embeddedCase(model) {
  const bad = (why) => new IntegrityError(`${model.source}: metadata '${S.key}' is not usable (${why}); ${EXPORT_FIX}`);
  const text = model.metadata[S.key];
  if (text.length > S.max_chars) throw bad(`${text.length} characters, more than ${S.max_chars}`);
  let doc;
  try { doc = JSON.parse(text); } catch (err) { throw bad(`not JSON: ${err.message.slice(0, 80)}`); }
  if (!isObject(doc) || !isObject(doc.inputs) || !isObject(doc.outputs)) {
    throw bad('expected {"inputs": {name: rows}, "outputs": {name: rows}, "atol", "rtol"}');
  }
  const { atol, rtol } = doc;
  if (![atol, rtol].every((t) => typeof t === "number" && t >= 0 && t <= S.max_tol)) {
    throw bad(`tolerance ${preview(atol)} + ${preview(rtol)}·|y| is outside [0, ${S.max_tol}]`);
  }
  for (const [name, rows] of Object.entries(doc.inputs)) {
    if (!Array.isArray(rows) || rows.length < 1 || rows.length > S.max_rows) {
      throw bad(`input ${name} must be a list of 1 to ${S.max_rows} rows`);
    }
  }
  return { inputs: doc.inputs, outputs: doc.outputs, atol, rtol, origin: `metadata '${S.key}'`, bad };
}

async function probeCase(model, entry, readProbe) {
  const digest = model.metadata[S.probe_key];
  const bad = (why) => new IntegrityError(`${model.source}: ${why}; ${EXPORT_FIX}`);
  if (!SHA256.test(digest)) throw bad(`metadata '${S.probe_key}' ${preview(digest, 20)} is not a sha256`);
  if (entry === null || !isObject(entry.probe) || readProbe === null) {
    throw new IntegrityError(`${model.source}: its self-test is the probe file with sha256 ${digest.slice(0, 12)}..., ` +
      "which only its manifest names; load it from its artifacts directory (beside its manifest.json), or pass " +
      "{ selftest: false }");
  }
  if (entry.probe.sha256 !== digest) {
    throw bad(`metadata '${S.probe_key}' ${digest.slice(0, 12)}... is not the manifest's probe ` +
      `${entry.probe.sha256.slice(0, 12)}... (${entry.probe.path})`);
  }
  const { bytes, sha256, source } = await readProbe(entry.probe);
  if (sha256 !== digest) {
    throw new IntegrityError(`${source}: sha256 ${sha256.slice(0, 12)}... differs from the model's '${S.probe_key}' ` +
      `${digest.slice(0, 12)}...; the probe was changed after export; ${EXPORT_FIX}`);
  }
  let arrays;
  try {
    arrays = await readNpz(bytes, { rows: S.max_rows });
  } catch (err) {
    if (!(err instanceof NpzError)) throw err;
    throw new IntegrityError(`${source}: not a readable probe file (${err.message.slice(0, 160)}); ${EXPORT_FIX}`);
  }
  const want = [...model.signature.inputs.map((s) => `inputs/${s.name}`), ...model.signature.outputs.map((s) => `outputs/${s.name}`)];
  const held = Object.keys(arrays);
  if (want.length !== held.length || !want.every((k) => held.includes(k))) {
    throw new IntegrityError(`${source}: holds ${preview(held.sort(), 160)}, expected ${preview(want.sort(), 160)}; ${EXPORT_FIX}`);
  }
  const nested = (a) => toNested({ type: a.dtype.name, data: a.data, dims: a.shape });
  const pick = (kind, specs) => Object.fromEntries(specs.map((s) => [s.name, nested(arrays[`${kind}/${s.name}`])]));
  const tol = model.signature.outputs.some((s) => s.dtype === "float16") ? S.probe_tol_float16 : S.probe_tol;
  return { inputs: pick("inputs", model.signature.inputs), outputs: pick("outputs", model.signature.outputs),
    atol: tol, rtol: tol, origin: `probe file ${entry.probe.path}`,
    bad: (why) => new IntegrityError(`${source}: not a usable self-test (${why}); ${EXPORT_FIX}`) };
}

// The article's keys, validated as serve/model.py (`_selftest_values`) and oneneuron/selftest.py do.
function articleCase(model) {
  const bad = (why) => new IntegrityError(`${model.source}: metadata has no usable self-test (${why}); ${EXPORT_FIX}`);
  const { metadata, signature } = model;
  const [input] = signature.inputs;
  if (signature.inputs.length !== 1 || signature.outputs.length !== 1 || input.dtype !== "float32" || input.shape.length !== 2) {
    throw bad("selftest_x / selftest_y need one float32 input [batch, n] and one output");
  }
  const nFeatures = model.nFeatures;
  const text = metadata.selftest_x;
  if (typeof text !== "string" || typeof metadata.selftest_y !== "string") throw bad("selftest_x / selftest_y missing");
  if (text.length > S.max_chars) {
    throw bad(`selftest_x is ${text.length.toLocaleString("en-US")} characters, more than ${S.max_chars.toLocaleString("en-US")}`);
  }
  let rows;
  try { rows = JSON.parse(text); } catch (err) { throw bad(String(err.message).slice(0, 120)); }
  const row = Array.isArray(rows) && rows.length === 1 && Array.isArray(rows[0]) ? rows[0] : null;
  if (row === null || row.length !== nFeatures || !row.every((v) => typeof v === "number" && Number.isFinite(v))) {
    throw bad(`selftest_x must be one row of ${nFeatures} finite number(s), got ${preview(rows)}`);
  }
  const number = (key, fallback) => {
    const value = metadata[key];
    if (value === undefined) return fallback;
    const n = DECIMAL.test(String(value).trim()) ? Number(value) : NaN;
    if (!Number.isFinite(n)) throw bad(`${key} ${preview(value)} is not a finite number`);
    return n;
  };
  const expected = number("selftest_y", null);
  const atol = number("selftest_atol", S.atol);
  const rtol = number("selftest_rtol", S.rtol);
  if (!(atol >= 0 && atol <= S.max_tol && rtol >= 0 && rtol <= S.max_tol)) {
    throw bad(`tolerance ${atol} + ${rtol}·|y| is outside [0, ${S.max_tol}]`);
  }
  return { inputs: { [input.name]: [row] }, outputs: { [signature.outputs[0].name]: [[expected]] }, atol, rtol,
    origin: "metadata 'selftest_x'", bad };
}

/**
 * Run a self-test case; throws IntegrityError beyond tolerance. Resolves to {x (the single input's
 * rows, or every input), inputs (every input), expected and actual (the element farthest from its expected value),
 * tolerance there, outputs, origin}.
 */
export async function runSelftest(model, testCase) {
  const { inputs, outputs, atol, rtol, origin, bad } = testCase;
  const names = model.signature.outputs.map((s) => s.name);
  const wanted = Object.keys(outputs);
  if (!wanted.length || wanted.some((n) => !names.includes(n))) {
    throw bad(`outputs ${preview(wanted)} are not among the model's ${preview(names)}`);
  }
  const doubled = Object.fromEntries(Object.entries(inputs).map(([k, rows]) => [k, [...rows, ...rows]]));
  let once;
  let twice;
  try {
    once = await model.run(inputs);
    twice = await model.run(doubled);
  } catch (err) {
    if (err instanceof InputError) throw bad(`its inputs do not fit the model: ${err.message}`);
    throw err;
  }
  const single = model.signature.inputs.length === 1;
  const x = single ? inputs[model.signature.inputs[0].name] : inputs;
  const at = single ? `${model.signature.inputs[0].name} = ${preview(x, 120)}` : preview(inputs, 120);
  let worst = { expected: 0, actual: 0, error: -1, tolerance: atol };
  for (const name of wanted) {
    let want;
    try { want = flatten(name, outputs[name]); } catch { throw bad(`output ${name} is not a rectangular array`); }
    const got = flatten(name, once[name]);
    const again = flatten(name, twice[name]);
    if (preview(want.shape) !== preview(got.shape)) {
      throw new IntegrityError(`${model.source}: self-test output ${name} has shape ${preview(got.shape)}; expected ` +
        `${preview(want.shape)}; ${EXPORT_FIX}`);
    }
    want.flat.forEach((e, i) => {
      if (typeof e !== "number" && typeof e !== "boolean" && typeof e !== "bigint") throw bad(`output ${name} holds ${preview(e)}`);
      const a = Number(got.flat[i]);
      const error = Math.abs(a - Number(e));
      const tolerance = atol + rtol * Math.abs(Number(e));
      if (!(error <= tolerance)) {
        throw new IntegrityError(`${model.source}: self-test at ${at} expected ${Number(e)}, got ${a} (output ${name}, ` +
          `element ${i}, tolerance ${atol} + ${rtol}·|y|); ${EXPORT_FIX}`);
      }
      if (again.flat[i] !== got.flat[i]) {
        throw new IntegrityError(`${model.source}: self-test output ${name} element ${i} is ${a} alone but ` +
          `${Number(again.flat[i])} in a doubled batch; expected the same rows twice; ${EXPORT_FIX}`);
      }
      if (error > worst.error) worst = { expected: Number(e), actual: a, error, tolerance };
    });
  }
  return { x, inputs, expected: worst.expected, actual: worst.actual, tolerance: worst.tolerance, outputs: once, origin };
}
