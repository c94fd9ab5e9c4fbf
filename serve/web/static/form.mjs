// The page for any model: one section per model, its form built from the signature read from the
// file, its outputs as tables. The article's two x -> y models keep their own view (app.mjs);
// every other model, and every model of a directory without the article's training run, comes here.
//
// Inputs, by signature: a row of at most BOXES_MAX static values gets one box each ("numbers";
// a check box for bool); another [batch, n] input a text area of rows, one comma-separated row per
// line ("rows", e.g. token ids of any length); any other rank a text area holding the tensor as JSON
// (rows first). Every field starts at the model's own self-test input (a real input, not a
// placeholder); "Random example" fills each with a fresh random row of the same shape (floats
// N(0, 1), integers within the self-test's range, bools either way). Values go through the same
// exact conversion as Node (tensors.mjs).
//
// Outputs: one table per output, a row per input row: the values when a row holds at most
// COLUMNS_MAX of them, the top TOP_K classes when the row is a probability distribution (values
// in [0, 1] summing to 1), else its shape, range and first values.
//
// Test hooks: each output's element has id "out-<model>-<output>" with data-state (loading, ok,
// error, failed), data-value (the nested array as JSON), data-feeds (the inputs it is for, JSON)
// and data-view (values, topk, summary); inputs are "in-<model>-<input>[-<i>]" with data-mode.

import { parseNumber } from "/lib/core.mjs";

const BOXES_MAX = 8; // a row of at most this many static values gets one box each
const COLUMNS_MAX = 8; // an output row of at most this many values is shown in full
const TOP_K = 5;
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

const json = (v) => JSON.stringify(v, (_, x) => (typeof x === "bigint" ? x.toString() : x));
const isInt = (dtype) => dtype.startsWith("int") || dtype.startsWith("uint");

function parseValue(name, dtype, text) {
  const t = String(text).trim();
  if (dtype === "bool") {
    if (t === "true" || t === "1") return true;
    if (t === "false" || t === "0") return false;
    throw new Error(`input ${name}: ${JSON.stringify(t)} is not true or false (bool)`);
  }
  if (isInt(dtype)) {
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

const shapeOf = (v) => (Array.isArray(v) ? [v.length, ...shapeOf(v[0])] : []);

/** How the form takes an input: "numbers" (boxes), "rows" (a line per row) or "tensor" (JSON). */
export function inputMode(spec) {
  const dims = spec.shape.slice(1);
  if (dims.length === 1 && dims[0] !== null && dims[0] <= BOXES_MAX) return "numbers";
  if (dims.length === 1) return "rows";
  if (dims.length === 0) return "rows"; // [batch]: one value per line
  return "tensor";
}

// One input's field: {node, read() -> rows, write(rows)}.
function inputField(key, spec, startRows) {
  const mode = inputMode(spec);
  const dims = spec.shape.slice(1);
  const hint = { numbers: "one row", rows: "one comma-separated row per line", tensor: "JSON, rows first" }[mode];
  const label = el("label", { className: `feature ${mode}` }, `${spec.name} `, el("span", { className: "hint" },
    `${spec.dtype} [${["rows", ...dims.map((d) => d ?? "any")].join(", ")}], ${hint} `));
  if (mode === "numbers") {
    const boxes = Array.from({ length: dims[0] }, (_, i) => {
      const id = `in-${key}-${spec.name}-${i}`;
      return spec.dtype === "bool"
        ? el("input", { id, type: "checkbox", ariaLabel: `${spec.name}[${i}]`, dataset: { mode } })
        : el("input", { id, type: "text", inputMode: "decimal", ariaLabel: `${spec.name}[${i}]`, dataset: { mode } });
    });
    label.append(...boxes);
    const write = (rows) => boxes.forEach((b, i) => {
      const v = rows[0]?.[i] ?? (spec.dtype === "bool" ? false : 0);
      if (spec.dtype === "bool") b.checked = v === true;
      else b.value = String(v);
    });
    write(startRows);
    const read = () => [nest(boxes.map((b) => (spec.dtype === "bool" ? b.checked : parseValue(spec.name, spec.dtype, b.value))), dims)];
    return { node: label, read, write };
  }
  const box = el("textarea", { id: `in-${key}-${spec.name}`, rows: mode === "rows" ? 3 : 4, spellcheck: false, dataset: { mode } });
  label.append(box);
  if (mode === "rows") {
    const write = (rows) => { box.value = rows.map((r) => (Array.isArray(r) ? r.map(String).join(", ") : String(r))).join("\n"); };
    write(startRows);
    const read = () => {
      const lines = box.value.split("\n").map((l) => l.trim()).filter(Boolean);
      if (!lines.length) throw new Error(`input ${spec.name}: give at least one row`);
      return lines.map((line) => (dims.length === 0 ? parseValue(spec.name, spec.dtype, line)
        : line.split(",").map((v) => parseValue(spec.name, spec.dtype, v))));
    };
    return { node: label, read, write };
  }
  const write = (rows) => { box.value = json(rows); };
  write(startRows);
  const read = () => {
    try {
      return JSON.parse(box.value);
    } catch (error) {
      throw new Error(`input ${spec.name}: not JSON (${error.message}); give the rows as a nested array`);
    }
  };
  return { node: label, read, write };
}

// Standard normal (Box-Muller), rounded to 4 decimals so the example stays readable.
function gauss() {
  const u = 1 - Math.random();
  const v = Math.random();
  return Math.round(Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v) * 1e4) / 1e4;
}

/** A random row for `spec` shaped like `like` (the self-test's row); ints within the self-test's range. */
export function randomRow(spec, like) {
  const flat = [like].flat(Infinity);
  const numbers = flat.map(Number).filter(Number.isFinite);
  const [lo, hi] = numbers.length ? [Math.min(...numbers), Math.max(...numbers)] : [0, 9];
  const draw = () => {
    if (spec.dtype === "bool") return Math.random() < 0.5;
    if (isInt(spec.dtype)) return lo + Math.floor(Math.random() * (hi - lo + 1));
    return gauss();
  };
  const shape = shapeOf(like);
  return nest(Array.from({ length: Math.max(1, shape.reduce((a, b) => a * b, 1)) }, draw), shape);
}

// A row of probabilities: finite values in [0, 1] summing to 1 (softmax output).
function isDistribution(row) {
  return Array.isArray(row) && row.length >= 2 && row.every((v) => typeof v === "number" && v >= 0 && v <= 1) &&
    Math.abs(row.reduce((a, b) => a + b, 0) - 1) <= 1e-3;
}

const fmt = (v) => (typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toPrecision(6)) : String(v));

/** The table for one output's value (rows first) and which view it is. */
export function outputTable(value) {
  const rows = Array.isArray(value) ? value : [value];
  const cell = (text, className = "") => el("td", { className }, text);
  if (rows.length && rows.every(isDistribution)) {
    const k = Math.min(TOP_K, rows[0].length);
    const body = rows.flatMap((row, r) => row.map((p, c) => [c, p]).sort((a, b) => b[1] - a[1]).slice(0, k)
      .map(([c, p], rank) => el("tr", {}, cell(rank === 0 ? String(r) : ""), cell(String(rank + 1)), cell(`class ${c}`),
        cell(p.toFixed(4), "num"), el("td", {}, el("span", { className: "bar", style: `width: ${Math.round(p * 100)}%` })))));
    return { view: "topk", table: el("table", { className: "out topk" },
      el("thead", {}, el("tr", {}, ...["row", "rank", "class", "probability", ""].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, ...body)) };
  }
  const widths = rows.map((r) => (Array.isArray(r) ? [r].flat(Infinity).length : 1));
  if (rows.every((r) => !Array.isArray(r) || r.every((v) => !Array.isArray(v))) && Math.max(...widths) <= COLUMNS_MAX) {
    const n = Math.max(...widths);
    const head = Array.isArray(rows[0]) ? Array.from({ length: n }, (_, i) => `[${i}]`) : ["value"];
    return { view: "values", table: el("table", { className: "out values" },
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "row"), ...head.map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, ...rows.map((r, i) => el("tr", {}, cell(String(i)), ...[r].flat().map((v) => cell(fmt(v), "num")))))) };
  }
  return { view: "summary", table: el("table", { className: "out summary" },
    el("thead", {}, el("tr", {}, ...["row", "shape", "min", "max", "first values"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, ...rows.map((r, i) => {
      const flat = [r].flat(Infinity).map(Number);
      return el("tr", {}, cell(String(i)), cell(`[${shapeOf(r).join(", ")}]`), cell(fmt(Math.min(...flat)), "num"),
        cell(fmt(Math.max(...flat)), "num"), cell(`${flat.slice(0, 6).map(fmt).join(", ")}${flat.length > 6 ? ", …" : ""}`, "mono"));
    }))) };
}

function section(entry) {
  const key = entry.model ?? entry.name;
  const sig = entry.signature;
  const outputs = sig.outputs.map((o) => el("div", { className: "output" },
    el("h3", {}, `${o.name} `, el("span", { className: "hint" }, `${o.dtype} [${o.shape.map((d) => (typeof d === "number" ? d : "any")).join(", ")}]`)),
    el("div", { id: `out-${key}-${o.name}`, className: "loading", dataset: { state: "loading" } }, "loading…")));
  const framework = entry.framework ?? entry.source_framework ?? "onnx";
  const node = el("section", { className: "model", id: `model-${key}` },
    el("h2", {}, `${key} `, el("span", { className: "hint" },
      `${framework}, ${sig.inputs.length} input(s), ${sig.outputs.length} output(s)${entry.variant ? `, variant of ${entry.variant.parent}` : ""}`)),
    el("p", { id: `status-${key}`, className: "status", role: "status" }, "loading and verifying (sha256, self-test)…"),
    el("form", { id: `form-${key}`, autocomplete: "off" }),
    el("p", { id: `error-${key}`, className: "error", role: "alert" }),
    el("div", { className: "outputs", "aria-label": `outputs of ${key}` }, ...outputs));
  return { key, node };
}

const sequence = new Map(); // model key -> number of the latest run: an older one never overwrites it

async function runAndShow(key, model, fields) {
  const mine = (sequence.get(key) ?? 0) + 1;
  sequence.set(key, mine);
  let feeds;
  let result;
  let error = null;
  try {
    feeds = Object.fromEntries(fields.map(([name, field]) => [name, field.read()]));
    result = await model.run(feeds);
  } catch (e) {
    error = e;
  }
  if (sequence.get(key) !== mine) return;
  $(`error-${key}`).textContent = error ? error.message : "";
  for (const spec of model.signature.outputs) {
    const box = $(`out-${key}-${spec.name}`);
    box.classList.remove("loading");
    box.dataset.state = error ? "error" : "ok";
    box.dataset.value = error ? "" : json(result[spec.name]);
    box.dataset.feeds = error ? "" : json(feeds);
    if (error) {
      box.replaceChildren("—");
      box.dataset.view = "";
      continue;
    }
    const { view, table } = outputTable(result[spec.name]);
    box.dataset.view = view;
    box.replaceChildren(table);
  }
}

/**
 * Show a section per model; resolves when each has loaded (or failed) and run once.
 * @param {object[]} entries manifest entries
 * @param {(entry) => Promise<{model, sha, signedBy}>} loadModel app.mjs's verified loader
 */
export async function showModels(entries, loadModel) {
  if (!entries.length) return;
  const container = el("div", { id: "models" });
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
      for (const o of entry.signature.outputs) {
        Object.assign($(`out-${key}-${o.name}`), { textContent: "unavailable" }).dataset.state = "failed";
      }
      return;
    }
    const { model, signedBy } = loaded;
    const st = model.selftestResult;
    $(`status-${key}`).textContent = `✓ verified: sha256 matches the manifest, self-test (${st.origin}) within ` +
      `${st.tolerance.toExponential(2)} (|Δ| ${Math.abs(st.actual - st.expected).toExponential(2)})` +
      `${signedBy ? `, signed by sha256:${signedBy.slice(0, 16)}…` : ""}`;
    const form = $(`form-${key}`);
    const fields = model.signature.inputs.map((spec) => {
      const field = inputField(key, spec, (st.inputs[spec.name] ?? []).slice(0, 1));
      form.append(field.node);
      return [spec.name, field];
    });
    const buttons = el("div", { className: "buttons" },
      el("button", { type: "submit", id: `run-${key}` }, "Run"),
      el("button", { type: "button", id: `random-${key}` }, "Random example"));
    form.append(buttons);
    $(`random-${key}`).addEventListener("click", () => {
      for (const [name, field] of fields) {
        const spec = model.signature.inputs.find((s) => s.name === name);
        field.write([randomRow(spec, st.inputs[name]?.[0] ?? [])]);
      }
      runAndShow(key, model, fields);
    });
    form.addEventListener("input", () => runAndShow(key, model, fields));
    form.addEventListener("submit", (event) => { event.preventDefault(); runAndShow(key, model, fields); });
    await runAndShow(key, model, fields);
  }));
}
