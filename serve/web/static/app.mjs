// The page: load every ONNX model listed in manifest.json with onnxruntime-web (WASM), verify
// each one (sha256 against the manifest, embedded self-test: the same core.mjs the Node CLI
// uses), then predict whatever x the person types, beside the analytic reference.
//
// Test hooks: <body data-ready="true"> once every model has loaded or failed; each prediction
// cell has id "pred-<model>" (and "pred-reference"), with data-value (full precision) and
// data-x (the input it is for) set after each prediction.

import * as ort from "/ort/ort.wasm.min.mjs";
import { createModel, EXPORT_FIX, parseRow } from "/lib/core.mjs";
import { parseManifest } from "/lib/manifest.mjs";

// WASM files come from this server (never a CDN); one thread needs no cross-origin isolation.
ort.env.wasm.wasmPaths = "/ort/";
ort.env.wasm.numThreads = 1;

const LABELS = { tensorflow: "Keras-origin", torch: "PyTorch-origin" };
const ROWS = [
  ["pred", "prediction y(x)"],
  ["delta", "|y − reference|"],
  ["framework", "source framework"],
  ["opset", "ONNX opset"],
  ["selftest", "self-test"],
  ["file", "file"],
];

const $ = (id) => document.getElementById(id);
const fmt = (v) => (Number.isFinite(v) ? v.toFixed(6) : "—");

function addColumn(key, title) {
  const th = document.createElement("th");
  th.scope = "col";
  th.id = `head-${key}`;
  th.textContent = title;
  $("head").append(th);
  for (const [row] of ROWS) {
    const td = document.createElement("td");
    td.id = `${row}-${key}`;
    td.className = row === "pred" ? "pred" : row === "file" ? "mono" : "";
    $(`row-${row}`).append(td);
  }
}

function setCell(id, text, className) {
  const cell = $(id);
  cell.textContent = text;
  if (className !== undefined) cell.classList.add(className);
  return cell;
}

function buildTable() {
  for (const [row, label] of ROWS) {
    const tr = document.createElement("tr");
    tr.id = `row-${row}`;
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = label;
    tr.append(th);
    $("body").append(tr);
  }
}

async function sha256Hex(bytes) {
  if (!globalThis.crypto?.subtle) return null; // only in secure contexts (loopback counts)
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function loadModel(entry) {
  const url = `/artifacts/${entry.path}`;
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}; re-run ${EXPORT_FIX}`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  const sha = await sha256Hex(bytes);
  if (sha !== null && sha !== entry.sha256) {
    throw new Error(`${url}: sha256 ${sha.slice(0, 12)}… != manifest ${entry.sha256.slice(0, 12)}…; re-run ${EXPORT_FIX}`);
  }
  const model = await createModel(ort, bytes, url, { sessionOptions: { executionProviders: ["wasm"] } });
  return { model, sha };
}

function showModel(key, entry, { model, sha }) {
  const st = model.selftestResult;
  setCell(`framework-${key}`, model.metadata.source_framework_version ?? model.metadata.source_framework ?? "?");
  setCell(`opset-${key}`, `${model.opset} (IR ${model.irVersion}, ${model.producer})`);
  setCell(`selftest-${key}`, `✓ y(${JSON.stringify(st.x)}) = ${fmt(st.actual)}, stored ${fmt(st.expected)}`, "ok");
  setCell(`file-${key}`, `${entry.path}, ${entry.size} bytes, sha256 ${entry.sha256.slice(0, 12)}… ` +
    (sha === null ? "(not checked: needs a secure context)" : "✓ matches manifest"));
  setCell(`pred-${key}`, "type x");
}

function showFailure(key, error) {
  for (const [row] of ROWS) $(`${row}-${key}`).classList.add("failed");
  setCell(`pred-${key}`, "unavailable", "error");
  setCell(`selftest-${key}`, `failed to load: ${error.message}`, "error");
  $(`pred-${key}`).dataset.state = "failed";
}

function reference(manifest) {
  const { weights, bias } = manifest.reference;
  const terms = weights.map((w, i) => `${+w.toPrecision(6)}·x${weights.length > 1 ? i + 1 : ""}`);
  return {
    nFeatures: weights.length,
    formula: `y = ${terms.join(" + ")} ${bias < 0 ? "−" : "+"} ${Math.abs(+bias.toPrecision(6))}`,
    predict: (row) => row.reduce((sum, v, i) => sum + weights[i] * v, bias),
  };
}

let sequence = 0;

// One feature: the single box #x. n features: one box per feature (#x-1 ... #x-n, labelled with
// the manifest's feature names); their values join into the comma-separated row parseRow reads.
function featureBoxes(ref, names) {
  if (ref.nFeatures === 1) return () => $("x").value.trim();
  const boxes = Array.from({ length: ref.nFeatures }, (_, i) => {
    const label = document.createElement("label");
    label.className = "feature";
    label.textContent = `${names[i] ?? `x${i + 1}`} `;
    const input = document.createElement("input");
    input.id = `x-${i + 1}`;
    input.inputMode = "decimal";
    input.placeholder = String(i + 1);
    label.append(input);
    $("x").before(label);
    return input;
  });
  $("x").hidden = true;
  $("x-label").textContent = `x (${ref.nFeatures} features)`;
  return () => (boxes.every((b) => !b.value.trim()) ? "" : boxes.map((b) => b.value.trim()).join(","));
}

async function update(columns, ref, readX) {
  const text = readX();
  const mine = ++sequence;
  $("x-error").textContent = "";
  const cells = [["reference", null], ...columns.filter((c) => c.model).map((c) => [c.key, c.model])];
  const results = await Promise.all(cells.map(async ([key, model]) => {
    if (!text) return [key, null, null];
    try {
      const row = parseRow(text, model ? model.nFeatures : ref.nFeatures);
      return [key, model ? (await model.predict([row]))[0] : ref.predict(row), null];
    } catch (error) {
      return [key, null, error];
    }
  }));
  if (mine !== sequence) return; // a newer keystroke already rendered
  const refValue = results[0][1];
  for (const [key, value, error] of results) {
    const cell = setCell(`pred-${key}`, value === null ? "—" : fmt(value));
    cell.dataset.x = text;
    cell.dataset.value = value === null ? "" : String(value);
    cell.dataset.state = error ? "error" : value === null ? "empty" : "ok";
    if (key !== "reference") {
      setCell(`delta-${key}`, value !== null && refValue !== null ? Math.abs(value - refValue).toExponential(2) : "—");
    }
    if (error && !$("x-error").textContent) $("x-error").textContent = error.message;
  }
}

async function start() {
  buildTable();
  let manifest;
  try {
    const response = await fetch("/artifacts/manifest.json");
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    manifest = parseManifest(await response.text(), "/artifacts/manifest.json"); // the rules Node applies
  } catch (error) {
    $("page-error").textContent = `Cannot read /artifacts/manifest.json (${error.message}); run make run, ` +
      "then python -m serve.web --artifacts artifacts";
    document.body.dataset.ready = "true";
    return;
  }
  const ref = reference(manifest);
  const readX = featureBoxes(ref, manifest.data?.features ?? []);
  const entries = manifest.artifacts.filter((a) => a.format === "onnx");
  const columns = entries.map((entry) => ({ entry, key: entry.model ?? entry.name, model: null }));
  for (const c of columns) {
    addColumn(c.key, `${LABELS[c.entry.framework] ?? c.entry.framework} (${c.entry.name})`);
  }
  addColumn("reference", `analytic reference: ${ref.formula}`);
  setCell("framework-reference", manifest.reference.method ?? "least squares");
  setCell("file-reference", "manifest.json → reference");
  if (!entries.length) $("page-error").textContent = `manifest.json lists no ONNX model; run ${EXPORT_FIX}`;

  await Promise.all(columns.map(async (c) => {
    try {
      const loaded = await loadModel(c.entry);
      c.model = loaded.model;
      showModel(c.key, c.entry, loaded);
    } catch (error) {
      showFailure(c.key, error);
    }
  }));
  $("form").addEventListener("input", () => update(columns, ref, readX));
  $("form").addEventListener("submit", (event) => { event.preventDefault(); update(columns, ref, readX); });
  await update(columns, ref, readX);
  document.body.dataset.ready = "true";
}

start().catch((error) => {
  $("page-error").textContent = `The page failed to start: ${error.message}`;
  document.body.dataset.ready = "true";
});
