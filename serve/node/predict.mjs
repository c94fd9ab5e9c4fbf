#!/usr/bin/env node
// node serve/node/predict.mjs artifacts/keras_linear.onnx 10 -1 2.5
//
// Prints one prediction per x, one per line, after verifying the model (sha256 against the
// manifest beside it, when there is one, and its self-test). For a model with n > 1 features each
// x is one comma-separated row: `predict.mjs model.onnx 1,2,3 4,5,6`; an output of one value per
// row prints as a number, a wider one (a classifier's probabilities) as a JSON array per line.
// Any other signature (images, token ids, several inputs) takes `--inputs FILE.json`.
// Errors are one line on stderr; exit 2 for a bad path or input, 1 for a failed check.

import { readFile, stat } from "node:fs/promises";

import { preview } from "./errors.mjs";
import { EmbedError, InputError, load, parseRow } from "./model.mjs";

const USAGE = `usage: node serve/node/predict.mjs [--json] [--trust-key PEM] [-v] <model.onnx> <x> [<x> ...]
       node serve/node/predict.mjs [--json] [--trust-key PEM] [-v] <model.onnx> --inputs FILE.json

Load an exported ONNX model with onnxruntime-node, verify its sha256 (when a manifest.json
beside it lists the file) and its self-test, then print one prediction per x.

  <x>     a number (e.g. 10, -2.5, 1e3); for a model with n > 1 features, one row of n
          comma-separated numbers (e.g. 1,2,3); a model with one input [batch, n] takes x's,
          and prints a number per row, or a JSON array per row for a wider output
  --inputs FILE.json  any signature: a JSON object of input name -> nested array (rows first), e.g.
          {"features": [[1, 2, 3]], "ids": [[7]]}; prints {output name: nested array} as one JSON line
  --json  print {"model", "source_framework", "opset", "selftest", "signed_by", "x", "y"} as one JSON line
          (with --inputs: "inputs" and "outputs" instead of "x" and "y")
  --trust-key PEM  refuse the model unless the directory's model.sig is this public key's signature
          over the manifest and the model (python -m export.keys makes the pair)
  -v      full stack traces on errors

example:
  node serve/node/predict.mjs artifacts/keras_linear.onnx 10 -1 2.5`;

function parseArgs(argv) {
  const options = { json: false, verbose: false, help: false, trustKey: null };
  const positional = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--json") options.json = true;
    else if (arg === "--inputs") {
      options.inputs = argv[++i] ?? "";
      if (!options.inputs) options.missingValue = "--inputs needs a value: a JSON file of input name -> nested array";
    } else if (arg.startsWith("--inputs=")) options.inputs = arg.slice("--inputs=".length);
    else if (arg === "--trust-key") {
      options.trustKey = argv[++i] ?? "";
      if (!options.trustKey) options.missingValue = "--trust-key needs a value: the public key file (public.pem)";
    } else if (arg.startsWith("--trust-key=")) options.trustKey = arg.slice("--trust-key=".length);
    else if (arg === "-v" || arg === "--verbose") options.verbose = true;
    else if (arg === "-h" || arg === "--help") options.help = true;
    else positional.push(arg); // "-1" is a number, not a flag
  }
  return { options, positional };
}

async function main(argv) {
  const { options, positional } = parseArgs(argv);
  if (options.help) {
    console.log(USAGE);
    return 0;
  }
  if (options.missingValue) {
    console.error(`error: ${options.missingValue}\n\n${USAGE}`);
    return 2;
  }
  if (options.inputs !== undefined) return runInputs(positional, options);
  if (positional.length < 2) {
    console.error(`error: give a model path and at least one x\n\n${USAGE}`);
    return 2;
  }
  const [file, ...xs] = positional;
  try {
    const model = await load(file, { trustKey: options.trustKey });
    if (model.nFeatures === null) {
      throw new InputError(`${file} has inputs ${JSON.stringify(model.signature.inputs.map((t) => t.name))}, not one ` +
        "row of numbers: give --inputs FILE.json with input name -> nested array");
    }
    const rows = xs.map((x) => parseRow(x, model.nFeatures));
    const y = await model.predict(rows);
    const st = model.selftestResult;
    console.error(`self-test ok: ${model.name} (${model.metadata.source_framework ?? "unknown framework"}) ` +
      `y(${preview(st.x, 200)}) = ${st.actual}, stored ${st.expected}, |Δ| ${Math.abs(st.actual - st.expected)} ` +
      `<= ${st.tolerance.toExponential(2)}`);
    console.error(model.signedBy ? `signature ok: signed by key sha256:${model.signedBy.slice(0, 16)} (${options.trustKey})`
      : "unsigned: no --trust-key given, model.sig not checked");
    if (options.json) {
      console.log(JSON.stringify({ model: model.name, source_framework: model.metadata.source_framework ?? null,
        opset: model.opset, selftest: st, signed_by: model.signedBy, x: rows, y }));
    } else {
      for (const value of y) console.log(typeof value === "number" ? String(value) : text(value));
    }
    await model.release();
    return 0;
  } catch (err) {
    if (!(err instanceof EmbedError)) throw err;
    if (options.verbose) console.error(err.stack);
    console.error(`error: ${err.message}`);
    return err.exitCode;
  }
}

const MAX_INPUTS_BYTES = 64 * 1024 * 1024;

// `--inputs FILE.json`: named inputs for a model of any signature; one JSON line of outputs.
async function runInputs(positional, options) {
  if (positional.length !== 1) {
    console.error(`error: with --inputs give exactly one model path (got ${positional.length} positional ` +
      `arguments); the rows come from the JSON file\n\n${USAGE}`);
    return 2;
  }
  try {
    const feeds = await readInputs(options.inputs);
    const model = await load(positional[0], { trustKey: options.trustKey });
    const outputs = await model.run(feeds);
    console.error(`self-test ok: ${model.name} (${model.metadata.source_framework ?? "unknown framework"})`);
    console.log(options.json ? text({ model: model.name, source_framework: model.metadata.source_framework ?? null,
      opset: model.opset, signed_by: model.signedBy, inputs: feeds, outputs }) : text(outputs));
    await model.release();
    return 0;
  } catch (err) {
    if (!(err instanceof EmbedError)) throw err;
    if (options.verbose) console.error(err.stack);
    console.error(`error: ${err.message}`);
    return err.exitCode;
  }
}

// JSON with int64 beyond 2^53 (BigInt) as its digits.
const text = (value) => JSON.stringify(value, (_, v) => (typeof v === "bigint" ? v.toString() : v));

async function readInputs(file) {
  let text;
  try {
    const info = await stat(file);
    if (!info.isFile()) throw Object.assign(new Error("not a regular file"), { code: "NOTFILE" });
    if (info.size > MAX_INPUTS_BYTES) throw Object.assign(new Error(`${info.size} bytes, more than 64 MiB`), { code: "BIG" });
    text = await readFile(file, "utf8");
  } catch (err) {
    const why = err.code === "ENOENT" ? "no such file" : err.message;
    throw new InputError(`--inputs ${file}: ${why}; give a JSON file of input name -> nested array, ` +
      `e.g. {"features": [[1, 2, 3]], "ids": [[7]]}`);
  }
  let feeds;
  try {
    feeds = JSON.parse(text);
  } catch (err) {
    throw new InputError(`--inputs ${file}: not JSON (${err.message.slice(0, 100)}); expected an object of input ` +
      "name -> nested array");
  }
  if (feeds === null || typeof feeds !== "object" || Array.isArray(feeds)) {
    throw new InputError(`--inputs ${file}: expected a JSON object of input name -> nested array`);
  }
  return feeds;
}

process.exitCode = await main(process.argv.slice(2));
