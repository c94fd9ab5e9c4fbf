// The page: load every ONNX model listed in manifest.json with onnxruntime-web (WASM), verify
// each one (sha256 against the manifest, its self-test, embedded or in its probe file: the same
// core.mjs the Node CLI uses), then run it on what the person types.
//
// One model kind, two views: the article's models (one float32 input of the training run's n
// features, one output per row, in a directory that has the training run's `reference`) keep the
// article's table, beside the analytic reference; every other model gets a section with a form
// built from its signature and its outputs as tables (form.mjs). A directory of only your own
// models shows only sections; a mixed one shows both.
//
// While a model loads its column says so (data-state="loading"); once every model has loaded
// or failed, x starts at the manifest's headline input (probe.headline_x: the article's x = 10)
// and every column shows its real prediction for it.
//
// Test hooks: <body data-ready="true"> once every model has loaded or failed; each prediction
// cell has id "pred-<model>" (and "pred-reference"), with data-state (loading, ok, error,
// empty, failed), data-value (full precision) and data-x (the input it is for).

import * as ort from "/ort/ort.wasm.min.mjs";
import { CONTRACT } from "/lib/contract.mjs";
import { createModel, EXPORT_FIX, IntegrityError, parseRow, serialQueue } from "/lib/core.mjs";
import { parseManifest } from "/lib/manifest.mjs";
import { showModels } from "./form.mjs";
import { verifySignature } from "./signature.mjs";

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
  ["signature", "signature"],
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

function showLoading(key) {
  const cell = setCell(`pred-${key}`, "loading…", "loading");
  cell.dataset.state = "loading";
  setCell(`selftest-${key}`, "loading and verifying (sha256, self-test)…", "loading");
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

const MAX_PROBE_BYTES = CONTRACT.selftest.max_probe_bytes;
const queue = serialQueue(); // one WASM heap: sessions are created and run one at a time (core.mjs)

// A model's probe file (its self-test rows, when too large to embed): fetched, bounded, hashed.
async function readProbe(probe) {
  const url = `/artifacts/${probe.path}`;
  const response = await fetch(url);
  if (!response.ok) throw new IntegrityError(`${url}: HTTP ${response.status}; re-run ${EXPORT_FIX}`);
  if (Number(response.headers.get("content-length") ?? 0) > MAX_PROBE_BYTES) {
    throw new IntegrityError(`${url}: more than ${MAX_PROBE_BYTES} bytes; re-run ${EXPORT_FIX}`);
  }
  const bytes = new Uint8Array(await response.arrayBuffer());
  if (bytes.length > MAX_PROBE_BYTES) throw new IntegrityError(`${url}: more than ${MAX_PROBE_BYTES} bytes; re-run ${EXPORT_FIX}`);
  const sha256 = await sha256Hex(bytes);
  if (sha256 === null) throw new IntegrityError(`${url}: cannot check its sha256 here (WebCrypto needs https or loopback)`);
  return { bytes, sha256, source: url };
}

async function loadModel(entry, trust) {
  const url = `/artifacts/${entry.path}`;
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}; re-run ${EXPORT_FIX}`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  const sha = await sha256Hex(bytes);
  const signedBy = trust === null ? null : (await trust).checkFile(entry.path, sha, url); // before onnxruntime
  if (sha !== null && sha !== entry.sha256) {
    throw new Error(`${url}: sha256 ${sha.slice(0, 12)}… != manifest ${entry.sha256.slice(0, 12)}…; re-run ${EXPORT_FIX}`);
  }
  const model = await createModel(ort, bytes, url, { sessionOptions: { executionProviders: ["wasm"] }, entry, readProbe,
    queue });
  return { model, sha, signedBy };
}

function showModel(key, entry, { model, sha, signedBy }) {
  const st = model.selftestResult;
  setCell(`framework-${key}`, model.metadata.source_framework_version ?? model.metadata.source_framework ?? "?");
  setCell(`opset-${key}`, `${model.opset} (IR ${model.irVersion}, ${model.producer})`);
  setCell(`selftest-${key}`, `✓ y(${JSON.stringify(st.x)}) = ${fmt(st.actual)}, stored ${fmt(st.expected)}`, "ok");
  setCell(`file-${key}`, `${entry.path}, ${entry.size} bytes, sha256 ${entry.sha256.slice(0, 12)}… ` +
    (sha === null ? "(not checked: needs a secure context)" : "✓ matches manifest"));
  setCell(`signature-${key}`, signedBy ? `✓ signed by key sha256:${signedBy.slice(0, 16)}…` : "unsigned (no --trust-key)",
    signedBy ? "ok" : undefined);
  $(`pred-${key}`).classList.remove("loading");
  $(`selftest-${key}`).classList.remove("loading");
}

function showFailure(key, error) {
  for (const [row] of ROWS) {
    $(`${row}-${key}`).classList.remove("loading");
    $(`${row}-${key}`).classList.add("failed");
  }
  setCell(`pred-${key}`, "unavailable", "error");
  setCell(`selftest-${key}`, `failed to load: ${error.message}`, "error");
  $(`pred-${key}`).dataset.state = "failed";
}

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

/** True for a model the article's table shows: the training run's n features in, one value per row out
 * (not a variant of it). */
function isArticle(entry, manifest) {
  const sig = entry.signature;
  if (!isObject(manifest.reference) || !Array.isArray(manifest.reference.weights)) return false;
  if (entry.variant) return false; // a variant (export.optimize) is one more model: its own section
  const [x] = sig.inputs;
  const [y] = sig.outputs;
  return sig.inputs.length === 1 && sig.outputs.length === 1 && x.dtype === "float32" && x.shape.length === 2 &&
    x.shape[1] === manifest.reference.weights.length && y.shape.length === 2 && y.shape[1] === 1;
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
// Each box starts at the manifest's headline row (`start`), a real input, not a placeholder.
function featureBoxes(ref, names, start) {
  if (ref.nFeatures === 1) {
    $("x").value = String(start[0]);
    return () => $("x").value.trim();
  }
  const boxes = Array.from({ length: ref.nFeatures }, (_, i) => {
    const label = document.createElement("label");
    label.className = "feature";
    label.textContent = `${names[i] ?? `x${i + 1}`} `;
    const input = document.createElement("input");
    input.id = `x-${i + 1}`;
    input.type = "text";
    input.inputMode = "decimal";
    input.value = String(start[i]);
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
  let trust = null; // with a trusted key: a promise of the verified signature (signature.mjs)
  try {
    const response = await fetch("/artifacts/manifest.json");
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const manifestBytes = new Uint8Array(await response.arrayBuffer());
    // the rules Node applies (serve/node/manifest.mjs)
    manifest = parseManifest(new TextDecoder().decode(manifestBytes), "/artifacts/manifest.json");
    const key = await fetch("/trust/public.pem");
    if (key.ok) {
      trust = verifySignature(await key.text(), manifestBytes, manifest);
      trust.catch(() => {}); // reported in every model's column
    }
  } catch (error) {
    $("page-error").textContent = `Cannot read /artifacts/manifest.json (${error.message}); run make run, ` +
      "then python -m serve.web --artifacts artifacts";
    $("status").textContent = "No models to load.";
    $("results").setAttribute("aria-busy", "false");
    document.body.dataset.ready = "true";
    return;
  }
  // Every model that is not the article's gets a section, with a form built from its signature (form.mjs).
  const onnx = manifest.artifacts.filter((a) => a.format === "onnx");
  const others = onnx.filter((a) => !isArticle(a, manifest));
  const othersDone = showModels(others, (entry) => loadModel(entry, trust));
  if (!onnx.some((a) => isArticle(a, manifest))) {
    for (const id of ["form", "results"]) $(id).hidden = true;
    document.querySelector(".note").hidden = true; // it explains the article's table
    document.querySelector("h1").textContent = "Your exported models, in your browser";
    $("lede").textContent = "Each exported ONNX model runs here with onnxruntime-web (WebAssembly); nothing is sent " +
      "to a server. Change an input, or draw a random example, and read its outputs.";
    $("status").textContent = `Loading ${others.length} model(s)…`;
    if (!others.length) $("page-error").textContent = `manifest.json lists no ONNX model; run ${EXPORT_FIX}`;
    await othersDone;
    const failed = others.filter((a) => $(`status-${a.model ?? a.name}`)?.classList.contains("error")).length;
    $("status").textContent = failed ? `${others.length - failed} of ${others.length} models ready; ${failed} failed to ` +
      "load (its section says why)." : `${others.length} models loaded and verified.`;
    $("results").setAttribute("aria-busy", "false");
    document.body.dataset.ready = "true";
    return;
  }
  const ref = reference(manifest);
  const headline = manifest.probe?.headline_x;
  const start = Array.isArray(headline) && headline.length === ref.nFeatures ? headline : Array(ref.nFeatures).fill(10);
  const readX = featureBoxes(ref, manifest.data?.features ?? [], start);
  const entries = onnx.filter((a) => isArticle(a, manifest));
  const columns = entries.map((entry) => ({ entry, key: entry.model ?? entry.name, model: null }));
  for (const c of columns) {
    addColumn(c.key, `${LABELS[c.entry.framework] ?? c.entry.framework} (${c.entry.name})`);
    showLoading(c.key);
  }
  addColumn("reference", `analytic reference: ${ref.formula}`);
  setCell("framework-reference", manifest.reference.method ?? "least squares");
  setCell("file-reference", "manifest.json → reference");
  if (!entries.length) $("page-error").textContent = `manifest.json lists no ONNX model; run ${EXPORT_FIX}`;

  let done = 0;
  const progress = () => { $("status").textContent = `Loading the models: ${done} of ${columns.length} ready…`; };
  progress();
  // x works at once: the reference answers now, each model as soon as it has loaded.
  $("form").addEventListener("input", () => update(columns, ref, readX));
  $("form").addEventListener("submit", (event) => { event.preventDefault(); update(columns, ref, readX); });
  $("x").disabled = false;
  await update(columns, ref, readX);

  await Promise.all(columns.map(async (c) => {
    try {
      const loaded = await loadModel(c.entry, trust);
      c.model = loaded.model;
      showModel(c.key, c.entry, loaded);
    } catch (error) {
      showFailure(c.key, error);
    }
    done += 1;
    progress();
    if (c.model) await update(columns, ref, readX);
  }));
  await othersDone;
  const failed = columns.filter((c) => !c.model).length;
  $("status").textContent = (failed
    ? `${columns.length - failed} of ${columns.length} models ready; ${failed} failed to load (its column says why).`
    : `${columns.length} models loaded and verified.`) +
    (others.length ? ` ${others.length} more model(s) below, each in its own section.` : "");
  $("results").setAttribute("aria-busy", "false");
  document.body.dataset.ready = "true";
}

start().catch((error) => {
  $("page-error").textContent = `The page failed to start: ${error.message}`;
  $("status").textContent = "";
  document.body.dataset.ready = "true";
});
