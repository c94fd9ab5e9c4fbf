// Read a probe file (export/probe.py: an .npz, i.e. a zip of `inputs/<name>.npy` and
// `outputs/<name>.npy`) into typed arrays, bounded, without dependencies or Node APIs.
//
//   import { readNpz } from "./npz.mjs";
//   const arrays = await readNpz(bytes, { rows: 2 });  // {"inputs/x": {dtype, shape, data}, ...}
//
// Zip (APPNOTE 6.3.10): the end-of-central-directory record, then each central header (4.3.12) gives a
// member's method (0 stored, 8 deflate), sizes and local header offset. Deflated members are
// inflated with DecompressionStream("deflate-raw") (Node 20 and browsers alike), read only as far as
// the rows asked for need. .npy (numpy.lib.format): magic "\x93NUMPY", version, a little-endian
// header length, then a Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (n, ...)}.
// The caller checks the file's sha256 first; this refuses anything it does not understand.

import { CONTRACT, DTYPES } from "./contract.mjs";

const MAX_UNPACKED = CONTRACT.selftest.max_probe_unpacked;
const MAX_MEMBERS = CONTRACT.selftest.max_probe_members;
const BY_DESCR = Object.fromEntries(Object.values(DTYPES).map((d) => [d.descr, d]));

/** The bytes are not a probe file this reader understands. */
export class NpzError extends Error {
  get name() { return "NpzError"; }
}

const u16 = (b, at) => b[at] | (b[at + 1] << 8);
const u32 = (b, at) => (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16)) + b[at + 3] * 2 ** 24;

function members(bytes) {
  const min = Math.max(0, bytes.length - 22 - 65535);
  let end = -1;
  for (let i = bytes.length - 22; i >= min; i--) {
    if (u32(bytes, i) === 0x06054b50) { end = i; break; }
  }
  if (end < 0) throw new NpzError("no zip end-of-central-directory record");
  const count = u16(bytes, end + 10);
  if (count > MAX_MEMBERS) throw new NpzError(`${count} members, more than ${MAX_MEMBERS}`);
  let at = u32(bytes, end + 16);
  const out = [];
  let total = 0;
  for (let i = 0; i < count; i++) {
    if (at + 46 > bytes.length || u32(bytes, at) !== 0x02014b50) throw new NpzError(`central header ${i} is damaged`);
    const [method, packed, size] = [u16(bytes, at + 10), u32(bytes, at + 20), u32(bytes, at + 24)];
    const [nameLen, extraLen, commentLen] = [u16(bytes, at + 28), u16(bytes, at + 30), u16(bytes, at + 32)];
    const local = u32(bytes, at + 42);
    const name = new TextDecoder().decode(bytes.subarray(at + 46, at + 46 + nameLen));
    if (packed === 0xffffffff || size === 0xffffffff) throw new NpzError(`${name}: zip64 members are not read`);
    total += size;
    if (total > MAX_UNPACKED) throw new NpzError(`more than ${MAX_UNPACKED} bytes uncompressed`);
    if (local + 30 > bytes.length || u32(bytes, local) !== 0x04034b50) throw new NpzError(`${name}: local header is damaged`);
    const start = local + 30 + u16(bytes, local + 26) + u16(bytes, local + 28);
    if (start + packed > bytes.length) throw new NpzError(`${name}: runs past the end of the file`);
    if (method !== 0 && method !== 8) throw new NpzError(`${name}: compression method ${method} (only stored and deflate)`);
    out.push({ name, method, size, data: bytes.subarray(start, start + packed) });
    at += 46 + nameLen + extraLen + commentLen;
  }
  return out;
}

// The first `want` bytes of a member (all of them when want >= its size), inflated as far as needed.
async function memberBytes(member, want) {
  const limit = Math.min(want, member.size);
  if (member.method === 0) return member.data.subarray(0, limit);
  const reader = new Blob([member.data]).stream().pipeThrough(new DecompressionStream("deflate-raw")).getReader();
  const out = new Uint8Array(limit);
  let filled = 0;
  try {
    while (filled < limit) {
      const { value, done } = await reader.read();
      if (done) break;
      out.set(value.subarray(0, limit - filled), filled);
      filled += Math.min(value.length, limit - filled);
    }
  } catch (err) {
    throw new NpzError(`${member.name}: not valid deflate data (${err.message})`);
  } finally {
    reader.cancel().catch(() => {});
  }
  if (filled < limit) throw new NpzError(`${member.name}: shorter than its declared ${member.size} bytes`);
  return out;
}

function header(name, bytes) {
  if (bytes.length < 10 || bytes[0] !== 0x93 || new TextDecoder().decode(bytes.subarray(1, 6)) !== "NUMPY") {
    throw new NpzError(`${name}: not an .npy array`);
  }
  const major = bytes[6];
  if (major < 1 || major > 3) throw new NpzError(`${name}: .npy version ${major} is not 1, 2 or 3`);
  const lenSize = major === 1 ? 2 : 4;
  const length = lenSize === 2 ? u16(bytes, 8) : u32(bytes, 8);
  const offset = 8 + lenSize + length;
  if (offset > bytes.length) throw new NpzError(`${name}: .npy header runs past the data`);
  const text = new TextDecoder().decode(bytes.subarray(8 + lenSize, offset));
  const descr = /'descr':\s*'([^']*)'/.exec(text)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(text)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(text)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) throw new NpzError(`${name}: unreadable .npy header`);
  if (fortran === "True") throw new NpzError(`${name}: Fortran-ordered arrays are not read`);
  const dtype = BY_DESCR[descr === "|i1" || descr === "|u1" ? descr : descr.replace(/^=/, "<")];
  if (!dtype) throw new NpzError(`${name}: dtype ${descr} is not one of the contract's (little-endian ${Object.keys(BY_DESCR).join(", ")})`);
  const shape = shapeText.split(",").map((s) => s.trim()).filter(Boolean).map(Number);
  if (!shape.length || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new NpzError(`${name}: shape (${shapeText}) is not a batch of rows`);
  return { dtype, shape, offset };
}

/**
 * The arrays of an .npz, each cut to its first `rows` rows: {name without ".npy": {dtype, shape, data}}
 * (dtype: a DTYPES row; data: a typed array, float16 as bits).
 */
export async function readNpz(bytes, { rows = Infinity } = {}) {
  bytes = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength); // a Buffer's slice() is a view
  const out = {};
  for (const member of members(bytes)) {
    if (!member.name.endsWith(".npy")) throw new NpzError(`${member.name}: not an .npy member`);
    const head = header(member.name, await memberBytes(member, 4096 + 12));
    const itemSize = head.dtype.bits / 8;
    const rowSize = head.shape.slice(1).reduce((a, b) => a * b, 1);
    const shape = [Math.min(head.shape[0], rows), ...head.shape.slice(1)];
    const need = head.offset + shape[0] * rowSize * itemSize;
    if (head.offset + head.shape[0] * rowSize * itemSize !== member.size) {
      throw new NpzError(`${member.name}: ${member.size} bytes do not hold shape (${head.shape.join(", ")}) of ${head.dtype.name}`);
    }
    const raw = await memberBytes(member, need);
    const copy = raw.slice(head.offset, need); // aligned for the typed array
    out[member.name.slice(0, -4)] = { dtype: head.dtype, shape,
      data: new head.dtype.Array(copy.buffer, 0, shape[0] * rowSize) };
  }
  return out;
}
