// The contract Python and JavaScript share (contract.json beside this file; oneneuron/contract.py
// reads the same file): manifest limits and name pattern, self-test bounds, the dtype table and
// the fix commands.
//
//   import { CONTRACT, DTYPES, fix } from "./contract.mjs";
//   DTYPES.int8.range   // [-128, 127];   fix("onnx")  // "re-run python -m export.onnx"
//
// Runtime-agnostic: in Node the file is read from disk (a JSON module import still prints an
// ExperimentalWarning in Node 20), in the browser it is fetched from the page's /lib/.

const url = new URL("./contract.json", import.meta.url);
const text = url.protocol === "file:"
  ? await (await import("node:fs/promises")).readFile(url, "utf8")
  : await (await fetch(url)).text();

/** The parsed contract.json (frozen). */
export const CONTRACT = deepFreeze(JSON.parse(text));

const ARRAYS = {
  bool: Uint8Array, int8: Int8Array, int16: Int16Array, int32: Int32Array, int64: BigInt64Array,
  uint8: Uint8Array, uint16: Uint16Array, uint32: Uint32Array, uint64: BigUint64Array,
  float16: Uint16Array, float32: Float32Array, float64: Float64Array,
};

/**
 * dtype name -> its row of the contract's table, plus what JavaScript needs: `Array` (the typed array
 * onnxruntime takes; float16 as its bits in a Uint16Array), `range` ([lo, hi] for integers, BigInt
 * for 64 bits) and `descr` (the .npy little-endian type string, e.g. "<f4").
 */
export const DTYPES = Object.freeze(Object.fromEntries(CONTRACT.dtypes.map((row) => {
  const bytes = row.bits / 8;
  const code = { bool: "b", int: "i", uint: "u", float: "f" }[row.kind];
  let range = null;
  if (row.kind === "int" || row.kind === "uint") {
    const big = row.bits === 64;
    const one = big ? 1n : 1;
    const pow = (n) => (big ? 2n ** BigInt(n) : 2 ** n);
    range = row.kind === "int" ? [-pow(row.bits - 1), pow(row.bits - 1) - one] : [big ? 0n : 0, pow(row.bits) - one];
  }
  return [row.name, Object.freeze({ ...row, Array: ARRAYS[row.name], range, descr: `${bytes === 1 ? "|" : "<"}${code}${bytes}` })];
})));

/** The fix for `what` (a key of the contract's fixes), naming the artifacts directory when given (oneneuron/fixes.py). */
export function fix(what, directory = null) {
  const text = CONTRACT.fixes[what];
  return directory === null ? text.replace(" --artifacts {dir}", "") : text.replaceAll("{dir}", directory);
}

function deepFreeze(value) {
  if (value !== null && typeof value === "object") {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
