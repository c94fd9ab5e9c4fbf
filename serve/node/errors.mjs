// The error classes Node and the page share; `exitCode` follows oneneuron/errors.py: 2 for
// input/usage, 1 for a failed integrity check.

/** Base class of every error this package throws on purpose. */
export class EmbedError extends Error {
  get exitCode() { return 2; }
  get name() { return this.constructor.name; }
}
/** A value given to predict/run (or on the command line) is not what the model takes. */
export class InputError extends EmbedError {}
/** The model file is not there or not readable. */
export class MissingModelError extends EmbedError {}
/** The file is not a usable ONNX model, its sha256 differs, or its self-test fails. */
export class IntegrityError extends EmbedError {
  get exitCode() { return 1; }
}

/** A value as at most `limit` characters of JSON (BigInt as digits), for messages. */
export function preview(x, limit = 80) {
  let s;
  try { s = JSON.stringify(x, (_, v) => (typeof v === "bigint" ? v.toString() : v)) ?? String(x); } catch { s = String(x); }
  return s.length > limit ? `${s.slice(0, limit - 3)}...` : s;
}
