// Read an ONNX model's header fields (metadata_props, opset, IR version, producer) from its bytes.
//
//   import { readOnnxInfo } from "./onnx_info.mjs";
//   readOnnxInfo(bytes)  // -> { irVersion, producerName, producerVersion, opsets: {"": 18}, metadata: {...} }
//
// Why this exists: onnxruntime's JS InferenceSession (node and web, 1.30) exposes input/output
// names and shapes but not the model's custom metadata_props, which carry the self-test. This is
// a minimal protobuf wire-format reader for the top level of ModelProto only (onnx/onnx.proto3:
// ir_version = 1, producer_name = 2, producer_version = 3, opset_import = 8, metadata_props = 14);
// everything else, the graph included, is skipped by its length without being decoded.
// No dependencies and no Node APIs, so the browser page imports the same file.

const WIRE_VARINT = 0;
const WIRE_I64 = 1;
const WIRE_LEN = 2;
const WIRE_I32 = 5;

/** Thrown when the bytes are not a well-formed protobuf message. */
export class OnnxFormatError extends Error {}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Decode the fields of one message as [fieldNumber, wireType, value] (value: number or Uint8Array). */
export function* fields(bytes, start = 0, end = bytes.length) {
  let pos = start;
  const varint = () => {
    // Values here (tags, lengths, versions) fit in 2^53; multiply rather than shift past 31 bits.
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (pos >= end) throw new OnnxFormatError(`truncated varint at byte ${pos}`);
      const b = bytes[pos++];
      value += (b & 0x7f) * scale;
      if (b < 0x80) {
        if (value > Number.MAX_SAFE_INTEGER) throw new OnnxFormatError(`varint beyond 2^53 at byte ${pos}`);
        return value;
      }
      scale *= 128;
    }
    throw new OnnxFormatError(`varint longer than 10 bytes at byte ${pos}`);
  };
  const take = (n) => {
    if (n > end - pos) throw new OnnxFormatError(`field of ${n} bytes runs past the end at byte ${pos}`);
    const slice = bytes.subarray(pos, pos + n);
    pos += n;
    return slice;
  };
  while (pos < end) {
    const tag = varint();
    const field = Math.floor(tag / 8);
    const wire = tag % 8;
    if (field === 0) throw new OnnxFormatError(`field number 0 at byte ${pos}`);
    if (wire === WIRE_VARINT) yield [field, wire, varint()];
    else if (wire === WIRE_LEN) yield [field, wire, take(varint())];
    else if (wire === WIRE_I64) yield [field, wire, take(8)];
    else if (wire === WIRE_I32) yield [field, wire, take(4)];
    else throw new OnnxFormatError(`unsupported wire type ${wire} (field ${field}) at byte ${pos}`);
  }
}

function text(value, what) {
  if (!(value instanceof Uint8Array)) throw new OnnxFormatError(`${what} is not a string field`);
  try {
    return utf8.decode(value);
  } catch {
    throw new OnnxFormatError(`${what} is not valid UTF-8`);
  }
}

function submessage(value, what, decode) {
  if (!(value instanceof Uint8Array)) throw new OnnxFormatError(`${what} is not a message field`);
  const out = {};
  for (const [field, , v] of fields(value)) decode(out, field, v);
  return out;
}

/**
 * Read the top-level fields of an ONNX ModelProto.
 * @param {Uint8Array} bytes the whole .onnx file
 * @returns {{irVersion: number|null, producerName: string, producerVersion: string,
 *            opsets: Object<string, number>, metadata: Object<string, string>}}
 *   opsets maps each domain ("" is the default ai.onnx domain) to its version.
 */
export function readOnnxInfo(bytes) {
  if (!(bytes instanceof Uint8Array)) throw new TypeError("readOnnxInfo expects a Uint8Array (or Buffer)");
  // Null-prototype maps: a key such as "__proto__" in a file stays plain data.
  const info = { irVersion: null, producerName: "", producerVersion: "", opsets: Object.create(null),
                metadata: Object.create(null) };
  let sawGraph = false;
  for (const [field, wire, value] of fields(bytes)) {
    if (field === 1 && wire === WIRE_VARINT) info.irVersion = value;
    else if (field === 2) info.producerName = text(value, "producer_name");
    else if (field === 3) info.producerVersion = text(value, "producer_version");
    else if (field === 7 && wire === WIRE_LEN) sawGraph = true;
    else if (field === 8) {
      const op = submessage(value, "opset_import", (o, f, v) => {
        if (f === 1) o.domain = text(v, "opset_import.domain");
        else if (f === 2 && typeof v === "number") o.version = v;
      });
      info.opsets[op.domain ?? ""] = op.version ?? 0;
    } else if (field === 14) {
      const kv = submessage(value, "metadata_props", (o, f, v) => {
        if (f === 1) o.key = text(v, "metadata_props.key");
        else if (f === 2) o.value = text(v, "metadata_props.value");
      });
      info.metadata[kv.key ?? ""] = kv.value ?? "";
    }
  }
  if (info.irVersion === null || !sawGraph) {
    throw new OnnxFormatError("no ir_version or no graph: not an ONNX model");
  }
  return info;
}
