// Parse manifest.json with the rules of oneneuron/schema.py, for the fields JavaScript uses.
//
//   import { parseManifest } from "./manifest.mjs";
//   const manifest = parseManifest(text, "artifacts/manifest.json");  // throws SchemaError
//
// Shared by the Node module (model.mjs) and the page (serve/web/static/app.mjs): no Node APIs.
// The rules are oneneuron/schema.py's (Manifest.parse), their limits the shared contract's
// (contract.json, which Python reads too): a JSON object of at most MAX_JSON_BYTES and
// nesting depth MAX_DEPTH, schema_version 2, an `artifacts` list whose entries have a `name`,
// `model`, `path` (and `alias`, equal to `name`) matching NAME_PATTERN (so never '/', '..' or an
// absolute path), a `format` from FORMATS, a 64-hex `sha256`, an integer `size`, signature
// tensors of a dtype from DTYPES, an optional `probe` ({path, sha256}: the probe file, confined like
// `path`), and no two entries of one (model, format); `reference` and
// `data.features` (the page shows them) are checked too, and `generation` (absent or null: 0, a
// manifest from before generations; else an integer in [0, MAX_GENERATION]). tests/hostile_cases.json runs the same damaged directories through both sides.

import { CONTRACT, DTYPES as TABLE, fix } from "./contract.mjs";
import { IntegrityError } from "./errors.mjs";

const M = CONTRACT.manifest;
export const MANIFEST = M.file;
export const SCHEMA_VERSION = M.schema_version;
export const NAME_PATTERN = M.name_pattern;
export const FORMATS = Object.freeze(Object.keys(M.formats).sort());
export const DTYPES = Object.freeze(Object.values(TABLE).filter((d) => d.manifest).map((d) => d.name).sort());
export const MAX_JSON_BYTES = M.max_json_bytes;
export const MAX_DEPTH = M.max_depth;
export const MAX_ITEMS = M.max_items;
export const MAX_GENERATION = M.max_generation;
export const MAX_STRING = M.max_string;
const NAME = new RegExp(`^${NAME_PATTERN}$`);
const SHA256 = /^[0-9a-f]{64}$/;
export const MANIFEST_FIX = fix("export").replace(/^re-run /, ""); // "python -m export.all", after "re-run"

/** manifest.json is older than a floor (minGeneration); like oneneuron.errors.RollbackError, exit 1. */
export class RollbackError extends IntegrityError {}

/** The floor rule of oneneuron/manifest.py `require_generation`, worded alike. */
export function requireGeneration(source, generation, floor) {
  if (generation < floor) {
    throw new RollbackError(`${source}: generation ${generation} < the floor ${floor} (minGeneration); a ` +
      "rolled-back or stale directory: re-export, or lower the floor");
  }
}

/** manifest.json is not what this toolkit writes; like oneneuron.errors.SchemaError, exit 2. */
export class SchemaError extends IntegrityError {
  get exitCode() { return 2; }
}

function preview(value) {
  let s;
  try { s = JSON.stringify(value) ?? String(value); } catch { s = String(value); }
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

// Deepest nesting of [ and { outside strings, found without parsing (JSON.parse must never see
// a 100,000-deep document, and the walk after it must never recurse).
function nestingDepth(text, limit) {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92) i++; // backslash: skip the escaped character
      else if (c === 34) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 91 || c === 123) {
      if (++depth > limit) return depth;
    } else if (c === 93 || c === 125) depth--;
  }
  return depth;
}

/**
 * Parse and validate manifest.json's text.
 * @param {string} text the file's content
 * @param {string} source the file's path or URL, for messages
 * @returns {object} the parsed manifest (validated fields as documented above)
 */
export function parseManifest(text, source = MANIFEST) {
  const fail = (problem, field) => {
    const where = field ? `field ${field}: ` : "";
    throw new SchemaError(`${source}: ${where}${problem}; re-run ${MANIFEST_FIX}`);
  };
  if (typeof text !== "string") fail(`expected the file's text, got ${typeof text}`);
  if (text.length > MAX_JSON_BYTES) {
    fail(`${text.length.toLocaleString("en-US")} characters, more than the limit of ${MAX_JSON_BYTES.toLocaleString("en-US")}`);
  }
  if (nestingDepth(text, MAX_DEPTH) > MAX_DEPTH) fail(`JSON nested deeper than ${MAX_DEPTH} levels`);
  let obj;
  try {
    obj = JSON.parse(text);
  } catch (err) {
    fail(`not valid JSON (${String(err.message).slice(0, 120)})`);
  }
  const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
  if (!isObject(obj)) fail(`expected a JSON object, got ${preview(obj)}`, "top level");
  if (obj.schema_version !== SCHEMA_VERSION) {
    fail(`schema version ${preview(obj.schema_version)} is not ${SCHEMA_VERSION} (written by another version ` +
      "of this toolkit)", "schema_version");
  }
  // The commit count (oneneuron/schema.py Manifest.generation): what a rollback floor compares.
  if (obj.generation === undefined || obj.generation === null) obj.generation = 0;
  else if (!Number.isSafeInteger(obj.generation) || obj.generation < 0 || obj.generation > MAX_GENERATION) {
    fail(`expected an integer in [0, ${MAX_GENERATION}], got ${preview(obj.generation)}`, "generation");
  }
  const finite = (v, field) => {
    if (typeof v !== "number" || !Number.isFinite(v)) fail(`expected a finite number, got ${preview(v)}`, field);
    return v;
  };
  const list = (v, field) => {
    if (!Array.isArray(v) || v.length > MAX_ITEMS) {
      fail(`expected a list of at most ${MAX_ITEMS} items, got ${preview(v)}`, field);
    }
    return v;
  };
  const string = (v, field) => {
    if (typeof v !== "string" || !v || v.length > MAX_STRING) {
      fail(`expected a non-empty string of at most ${MAX_STRING} characters, got ${preview(v)}`, field);
    }
    return v;
  };
  const name = (v, field) => {
    string(v, field);
    if (!NAME.test(v)) {
      fail(`${preview(v)} is not a valid name (expected ${NAME_PATTERN}: a letter or digit, then letters, ` +
        "digits, '_', '.' or '-', at most 128 characters)", field);
    }
    return v;
  };

  // The training run's fields, as in oneneuron/schema.py: all present (a directory exported from a
  // training run) or all absent (models brought in as files).
  if (obj.training_record !== undefined && obj.training_record !== null) {
    if (!isObject(obj.reference)) fail(`expected a JSON object, got ${preview(obj.reference)}`, "reference");
    list(obj.reference.weights, "reference.weights").forEach((w, i) => finite(w, `reference.weights[${i}]`));
    finite(obj.reference.bias, "reference.bias");
    if (!isObject(obj.data)) fail(`expected a JSON object, got ${preview(obj.data)}`, "data");
    list(obj.data.features, "data.features").forEach((f, i) => string(f, `data.features[${i}]`));
    if (obj.data.features.length !== obj.reference.weights.length) {
      fail(`${obj.data.features.length} features for ${obj.reference.weights.length} weights`, "data.features");
    }
  }

  const checkEntry = (entry, at) => {
    if (!isObject(entry)) fail(`expected a JSON object, got ${preview(entry)}`, at);
    string(entry.format, `${at}.format`);
    if (!FORMATS.includes(entry.format)) fail(`${preview(entry.format)} is not one of ${FORMATS.join(", ")}`, `${at}.format`);
    name(entry.name, `${at}.name`);
    name(entry.path, `${at}.path`);
    name(entry.model, `${at}.model`);
    if (entry.alias !== undefined && entry.alias !== null) {
      name(entry.alias, `${at}.alias`);
      if (entry.alias !== entry.name) fail(`alias ${preview(entry.alias)} differs from name ${preview(entry.name)}`, `${at}.alias`);
    }
    if (typeof entry.sha256 !== "string" || !SHA256.test(entry.sha256)) {
      fail(`${preview(entry.sha256)} is not 64 lowercase hex digits`, `${at}.sha256`);
    }
    if (!Number.isSafeInteger(entry.size) || entry.size < 0) fail(`expected an integer >= 0, got ${preview(entry.size)}`, `${at}.size`);
    if (entry.probe !== undefined && entry.probe !== null) { // oneneuron/schema.py ProbeRef
      if (!isObject(entry.probe)) fail(`expected a JSON object, got ${preview(entry.probe)}`, `${at}.probe`);
      name(entry.probe.path, `${at}.probe.path`);
      if (typeof entry.probe.sha256 !== "string" || !SHA256.test(entry.probe.sha256)) {
        fail(`${preview(entry.probe.sha256)} is not 64 lowercase hex digits`, `${at}.probe.sha256`);
      }
    }
    if (!isObject(entry.signature)) fail(`expected a JSON object, got ${preview(entry.signature)}`, `${at}.signature`);
    for (const kind of ["inputs", "outputs"]) {
      const specs = list(entry.signature[kind], `${at}.signature.${kind}`);
      if (!specs.length) fail("expected at least one tensor", `${at}.signature.${kind}`);
      specs.forEach((spec, j) => {
        const where = `${at}.signature.${kind}[${j}]`;
        if (!isObject(spec)) fail(`expected a JSON object, got ${preview(spec)}`, where);
        string(spec.name, `${where}.name`);
        if (!DTYPES.includes(spec.dtype)) fail(`${preview(spec.dtype)} is not one of ${DTYPES.join(", ")}`, `${where}.dtype`);
      });
    }
  };
  const seen = new Map();
  const names = new Set();
  list(obj.artifacts, "artifacts").forEach((entry, i) => {
    const at = `artifacts[${i}]`;
    checkEntry(entry, at);
    const key = `${entry.model}\u0000${entry.format}`;
    if (seen.has(key) || names.has(entry.name)) {
      fail(`duplicate ${entry.format} artifact for ${preview(entry.model)} (see artifacts[${seen.get(key)}])`, at);
    }
    seen.set(key, i);
    names.add(entry.name);
  });
  obj.artifacts.forEach((entry, i) => {
    if (names.has(entry.path) && entry.path !== entry.name) {
      fail(`path ${preview(entry.path)} is another entry's name`, `artifacts[${i}].path`);
    }
  });
  // older kept versions of the same models (oneneuron/schema.py `previous`): the same per-entry rules
  if (obj.previous_versions !== undefined && obj.previous_versions !== null) {
    list(obj.previous_versions, "previous_versions").forEach((entry, i) => checkEntry(entry, `previous_versions[${i}]`));
  }
  return obj;
}

/** The entry whose stored version (`path`) or stable name (`alias`) is the file name `base`. */
export function findEntry(manifest, base) {
  // the newest versions first, so a stable name stands for the newest; then older kept versions by path
  return manifest.artifacts.find((a) => a.path === base || (a.alias ?? a.name) === base) ??
    (manifest.previous_versions ?? []).find((a) => a.path === base) ?? null;
}
