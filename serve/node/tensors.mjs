// Named tensors of any signature, for Node and the browser alike (runtime-agnostic, like core.mjs).
//
//   import { run } from "oneneuron-embed";
//   const out = await run(model, { features: [[1, 2, 3]], ids: [[7]] });  // { score: [[...]], pair: [[...]] }
//
// The signature (names, dtypes, shapes) is read from the file through onnxruntime's
// inputMetadata/outputMetadata. Values convert to the input's dtype only when exact, as the Python
// loader's `Model.run` does (serve/loader.py): integers must be integers within the dtype's range
// (int8 refuses 300), floats finite within the dtype's range (float16 refuses 1e6, rounding is
// fine), a bool input takes only true/false and a bool is not a number; every input needs the
// model's rank, its static dims and the same number of rows. The dtypes are the shared contract's
// table (contract.mjs). Typed arrays are taken as they are (a probe file's rows, already exact).

import { DTYPES, fix } from "./contract.mjs";
import { InputError, IntegrityError, preview } from "./errors.mjs";

const FLOAT16_LIMIT = 65520; // values at or beyond round to infinity in float16 (numpy agrees)

/** The model's inputs and outputs as [{name, dtype, shape}] (shape: numbers, null for dynamic dims). */
export function signatureOf(session) {
  const describe = (names, metadata) => names.map((name, i) => {
    const meta = metadata?.[i] ?? {};
    if (meta.isTensor === false || !(meta.type in DTYPES)) {
      throw new IntegrityError(`tensor ${name}: type ${meta.type ?? "unknown"} is not supported; expected one of ` +
        `${Object.keys(DTYPES).join(", ")}`);
    }
    return { name, dtype: meta.type, shape: (meta.shape ?? []).map((d) => (Number.isInteger(d) ? d : null)) };
  });
  return { inputs: describe(session.inputNames, session.inputMetadata),
    outputs: describe(session.outputNames, session.outputMetadata) };
}

// float64 -> float16 bits, round to nearest even (|v| < 65520 checked by the caller).
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
function toHalf(v) {
  f32[0] = v;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp < 103) return sign; // underflows to ±0
  if (exp < 113) { // subnormal half
    mant |= 0x800000;
    const shift = 126 - exp;
    let half = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rest > mid || (rest === mid && (half & 1))) half += 1;
    return sign | half;
  }
  let half = ((exp - 112) << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (half & 1))) half += 1;
  return sign | half;
}

/** float16 bits -> number (outputs). */
function fromHalf(h) {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 31) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** One value converted exactly to `dtype`, or an InputError naming the input. */
function convert(name, dtype, v) {
  if (dtype === "bool") {
    if (typeof v !== "boolean") throw new InputError(`input ${JSON.stringify(name)}: got ${preview(v)}; expected true or false (bool)`);
    return v ? 1 : 0;
  }
  if (typeof v === "boolean") throw new InputError(`input ${JSON.stringify(name)}: got ${v}; a bool is not a number (${dtype})`);
  const { range } = DTYPES[dtype];
  if (range !== null) {
    const [lo, hi] = range;
    const isInt = typeof v === "bigint" || (typeof v === "number" && Number.isInteger(v));
    if (!isInt) throw new InputError(`input ${JSON.stringify(name)}: got ${preview(v)}; expected integers (${dtype}; floats are not truncated)`);
    if (typeof v === "number" && typeof lo === "bigint" && !Number.isSafeInteger(v)) {
      throw new InputError(`input ${JSON.stringify(name)}: ${v} is beyond 2^53, not exact as a JS number; pass a BigInt`);
    }
    const big = typeof lo === "bigint";
    const value = big ? BigInt(v) : Number(v);
    if (value < lo || value > hi) throw new InputError(`input ${JSON.stringify(name)}: ${v} is out of range for ${dtype} [${lo}, ${hi}]`);
    return value;
  }
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw new InputError(`input ${JSON.stringify(name)}: got ${preview(v)}; expected finite numbers (${dtype})`);
  }
  if ((dtype === "float32" && !Number.isFinite(Math.fround(v))) || (dtype === "float16" && Math.abs(v) >= FLOAT16_LIMIT)) {
    throw new InputError(`input ${JSON.stringify(name)}: ${v} is beyond ${dtype}'s range; expected finite ${dtype} values`);
  }
  return dtype === "float16" ? toHalf(v) : v;
}

/** Nested arrays -> {shape, flat values}; refuses ragged input. */
export function flatten(name, value) {
  const shape = [];
  for (let level = value; Array.isArray(level); level = level[0]) shape.push(level.length);
  const flat = [];
  const walk = (v, depth) => {
    if (depth === shape.length) {
      if (Array.isArray(v)) throw new InputError(`input ${JSON.stringify(name)}: nested arrays are ragged`);
      flat.push(v);
      return;
    }
    if (!Array.isArray(v) || v.length !== shape[depth]) {
      throw new InputError(`input ${JSON.stringify(name)}: nested arrays are ragged (not a rectangular array)`);
    }
    for (const item of v) walk(item, depth + 1);
  };
  walk(value, 0);
  return { shape, flat };
}

const shapeText = (shape) => `[${shape.map((d, i) => (i === 0 ? "rows" : d ?? "any")).join(", ")}]`;

/** Convert named feeds (name -> nested array) to onnxruntime tensors for the model's signature. */
export function toTensors(ort, signature, feeds) {
  if (feeds === null || typeof feeds !== "object" || Array.isArray(feeds)) {
    throw new InputError(`feeds must be an object of input name -> nested array, got ${preview(feeds)}`);
  }
  const names = signature.inputs.map((s) => s.name);
  const given = Object.keys(feeds);
  const missing = names.filter((n) => !given.includes(n));
  const unknown = given.filter((n) => !names.includes(n));
  if (missing.length || unknown.length) {
    throw new InputError(`feeds have inputs ${preview(given)}; the model's inputs are ${preview(names)} ` +
      `(missing ${preview(missing)}, unknown ${preview(unknown)})`);
  }
  const tensors = {};
  let rows = null;
  for (const spec of signature.inputs) {
    const { shape, flat } = flatten(spec.name, feeds[spec.name]);
    if (shape.length !== spec.shape.length || spec.shape.some((d, i) => i > 0 && d !== null && d !== shape[i])) {
      throw new InputError(`input ${JSON.stringify(spec.name)}: got shape ${preview(shape)}; expected ${shapeText(spec.shape)}`);
    }
    if (shape[0] === 0) throw new InputError(`input ${JSON.stringify(spec.name)}: got 0 rows; expected at least one row`);
    if (rows === null) rows = shape[0];
    else if (shape[0] !== rows) {
      throw new InputError(`input ${JSON.stringify(spec.name)} has ${shape[0]} rows but ${JSON.stringify(names[0])} has ` +
        `${rows}; every input needs the same number of rows`);
    }
    const data = new DTYPES[spec.dtype].Array(flat.length);
    flat.forEach((v, i) => { data[i] = convert(spec.name, spec.dtype, v); });
    tensors[spec.name] = new ort.Tensor(spec.dtype, data, shape);
  }
  return tensors;
}

/** An output tensor as nested arrays (numbers; booleans for bool; int64 as numbers when exact, else BigInt). */
export function toNested(tensor) {
  const values = Array.from(tensor.data, (v) => {
    if (tensor.type === "bool") return Boolean(v);
    if (tensor.type === "float16") return fromHalf(v);
    if (typeof v === "bigint") return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
    return Number(v);
  });
  const dims = Array.from(tensor.dims);
  const build = (offset, depth) => {
    if (depth === dims.length) return values[offset];
    const stride = dims.slice(depth + 1).reduce((a, b) => a * b, 1);
    return Array.from({ length: dims[depth] }, (_, i) => build(offset + i * stride, depth + 1));
  };
  return dims.length === 0 ? values[0] : build(0, 0);
}

/** Run `model` (a core.mjs Model) on named feeds; resolves to {output name: nested array}. */
export async function runModel(model, feeds) {
  const tensors = toTensors(model.ort, model.signature, feeds);
  const rows = tensors[model.signature.inputs[0].name].dims[0];
  const results = await model.exclusive(() => model.session.run(tensors));
  const out = {};
  for (const spec of model.signature.outputs) {
    const tensor = results[spec.name];
    if (!tensor.dims.length || tensor.dims[0] !== rows) {
      throw new IntegrityError(`${model.source}: output ${spec.name} ${tensor.type} ${preview(Array.from(tensor.dims))} ` +
        `for ${rows} row(s); expected one output row per input row; re-run ${fix("onnx")}`);
    }
    out[spec.name] = toNested(tensor);
  }
  return out;
}
