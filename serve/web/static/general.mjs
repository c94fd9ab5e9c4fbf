// The page for models of any signature (not the article's one float32 input and one output): one
// section per model, its form built from the signature read from the file (number boxes for a
// small static row, a check box for a bool, a JSON box otherwise), every output shown as it runs.
//
// Inputs start at the model's own self-test inputs (ONNX metadata `selftest`: a real input, not
// a placeholder). Values go through the same exact conversion as Node (tensors.mjs: run).
//
// Test hooks: each output cell has id "out-<model>-<output>" with data-state (loading, ok, error,
// failed) and data-value (the nested array as JSON); data-feeds holds the inputs it is for (JSON).

import { parseNumber } from "/lib/core.mjs";

const BOXES_MAX = 8; // a row of at most this many static values gets one box each; else a JSON box
const INTEGER = /^[+-]?\d+$/;
const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "dataset") Object.assign(node.dataset, v);
    else if (k in node) node[k] = v;
    else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
}

/** True when a manifest entry's signature is not the article's (one float32 [batch, n] input, one output). */
export function isGeneral(entry) {
  const sig = entry.signature;
  if (!sig || !Array.isArray(sig.inputs) || !Array.isArray(sig.outputs)) return false;
  const [x] = sig.inputs;
  return !(sig.inputs.length === 1 && sig.outputs.length === 1 && x.dtype === "float32" &&
    x.shape.length === 2 && Number.isInteger(x.shape[1]));
}

const json = (v) => JSON.stringify(v, (_, x) => (typeof x === "bigint" ? x.toString() : x));

function parseValue(name, dtype, text) {
  const t = String(text).trim();
  if (dtype.startsWith("int") || dtype.startsWith("uint")) {
    if (!INTEGER.test(t)) throw new Error(`input ${name}: ${JSON.stringify(t)} is not an integer (${dtype})`);
    const big = BigInt(t);
    return big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
  }
  try {
    return parseNumber(t);
  } catch (error) {
    throw new Error(`input ${name}: ${error.message}`);
  }
}

// Nest a flat row into `dims` (the dims after the batch dim).
function nest(flat, dims) {
  if (!dims.length) return flat[0];
  const stride = dims.slice(1).reduce((a, b) => a * b, 1);
  return Array.from({ length: dims[0] }, (_, i) => nest(flat.slice(i * stride, (i + 1) * stride), dims.slice(1)));
}

// One input's field(s) and a reader returning its value (rows first).
function inputField(key, spec, start) {
  const dims = spec.shape.slice(1);
  const count = dims.reduce((a, b) => a * (b ?? Infinity), 1);
  const label = el("label", { className: "feature" }, `${spec.name} `, el("span", { className: "hint" },
    `${spec.dtype} [${["rows", ...dims.map((d) => d ?? "any")].join(", ")}] `));
  if (Number.isFinite(count) && count <= BOXES_MAX) {
    const first = start === undefined ? [] : [start].flat(Infinity);
    const boxes = Array.from({ length: count }, (_, i) => {
      const id = `in-${key}-${spec.name}-${i}`;
      const value = first[i] ?? (spec.dtype === "bool" ? false : 0);
      return spec.dtype === "bool" ? el("input", { id, type: "checkbox", checked: value === true, ariaLabel: `${spec.name}[${i}]` })
        : el("input", { id, type: "text", inputMode: "decimal", value: String(value), ariaLabel: `${spec.name}[${i}]` });
    });
    label.append(...boxes);
    const read = () => [nest(boxes.map((b) => (spec.dtype === "bool" ? b.checked : parseValue(spec.name, spec.dtype, b.value))), dims)];
    return { node: label, read };
  }
  const box = el("textarea", { id: `in-${key}-${spec.name}`, rows: 3, cols: 50, spellcheck: false,
    value: json(start !== undefined ? [start] : []) });
  label.append(box);
  const read = () => {
    try {
      return JSON.parse(box.value);
    } catch (error) {
      throw new Error(`input ${spec.name}: not JSON (${error.message}); give the rows as a nested array`);
    }
  };
  return { node: label, read };
}

function selftestInputs(model) {
  try {
    const doc = JSON.parse(model.metadata.selftest ?? "null");
    return doc?.inputs ?? {};
  } catch {
    return {};
  }
}

function section(entry) {
  const key = entry.model ?? entry.name;
  const outputs = entry.signature.outputs.map((o) => el("tr", {},
    el("th", { scope: "row" }, `${o.name} (${o.dtype})`),
    el("td", { id: `out-${key}-${o.name}`, className: "mono loading", dataset: { state: "loading" } }, "loading…")));
  const node = el("section", { className: "model", id: `model-${key}` },
    el("h2", {}, `${key} (${entry.framework}, ${entry.signature.inputs.length} input(s), ${entry.signature.outputs.length} output(s))`),
    el("p", { id: `status-${key}`, className: "status", role: "status" }, "loading and verifying (sha256, self-test)…"),
    el("form", { id: `form-${key}`, autocomplete: "off" }),
    el("p", { id: `error-${key}`, className: "error", role: "alert" }),
    el("table", {}, el("caption", {}, "every output for the inputs above"), el("tbody", {}, ...outputs)));
  return { key, node };
}

const sequence = new Map(); // model key -> number of the latest run: an older one never overwrites it

async function runAndShow(key, model, readers) {
  const mine = (sequence.get(key) ?? 0) + 1;
  sequence.set(key, mine);
  let feeds;
  let result;
  let error = null;
  try {
    feeds = Object.fromEntries(readers.map(([name, read]) => [name, read()]));
    result = await model.run(feeds);
  } catch (e) {
    error = e;
  }
  if (sequence.get(key) !== mine) return;
  $(`error-${key}`).textContent = error ? error.message : "";
  for (const spec of model.signature.outputs) {
    const cell = $(`out-${key}-${spec.name}`);
    cell.classList.remove("loading");
    cell.dataset.state = error ? "error" : "ok";
    cell.dataset.value = error ? "" : json(result[spec.name]);
    cell.dataset.feeds = error ? "" : json(feeds);
    cell.textContent = error ? "—" : json(result[spec.name]);
  }
}

/**
 * Show every general model of the manifest; resolves when each has loaded (or failed) and run once.
 * @param {object[]} entries manifest entries with isGeneral(entry)
 * @param {(entry) => Promise<{model, sha, signedBy}>} loadModel app.mjs's verified loader
 */
export async function showGeneral(entries, loadModel) {
  if (!entries.length) return;
  const container = el("div", { id: "general" });
  $("page-error").before(container);
  await Promise.all(entries.map(async (entry) => {
    const { key, node } = section(entry);
    container.append(node);
    let loaded;
    try {
      loaded = await loadModel(entry);
    } catch (error) {
      $(`status-${key}`).textContent = `failed to load: ${error.message}`;
      $(`status-${key}`).classList.add("error");
      for (const o of entry.signature.outputs) Object.assign($(`out-${key}-${o.name}`).dataset, { state: "failed" });
      return;
    }
    const { model, signedBy } = loaded;
    const st = model.selftestResult;
    $(`status-${key}`).textContent = `✓ verified: sha256 matches the manifest, self-test within ${st.tolerance} ` +
      `(|Δ| ${Math.abs(st.actual - st.expected).toExponential(2)})${signedBy ? `, signed by sha256:${signedBy.slice(0, 16)}…` : ""}`;
    const start = selftestInputs(model);
    const readers = model.signature.inputs.map((spec) => {
      const field = inputField(key, spec, start[spec.name]?.[0]);
      $(`form-${key}`).append(field.node);
      return [spec.name, field.read];
    });
    const form = $(`form-${key}`);
    form.addEventListener("input", () => runAndShow(key, model, readers));
    form.addEventListener("submit", (event) => { event.preventDefault(); runAndShow(key, model, readers); });
    await runAndShow(key, model, readers);
  }));
}
