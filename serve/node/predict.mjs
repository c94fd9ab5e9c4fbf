#!/usr/bin/env node
// node serve/node/predict.mjs artifacts/keras_linear.onnx 10 -1 2.5
//
// Prints one prediction per x, one per line, after verifying the model (sha256 against the
// manifest beside it, when there is one, and the embedded self-test). For a model with n > 1
// features each x is one comma-separated row: `predict.mjs model.onnx 1,2,3 4,5,6`.
// Errors are one line on stderr; exit 2 for a bad path or input, 1 for a failed check.

import { EmbedError, load, parseRow } from "./model.mjs";

const USAGE = `usage: node serve/node/predict.mjs [--json] [--trust-key PEM] [-v] <model.onnx> <x> [<x> ...]

Load an exported ONNX model with onnxruntime-node, verify its sha256 (when a manifest.json
beside it lists the file) and its embedded self-test, then print one prediction per x.

  <x>     a number (e.g. 10, -2.5, 1e3); for a model with n > 1 features, one row of n
          comma-separated numbers (e.g. 1,2,3)
  --json  print {"model", "source_framework", "opset", "selftest", "signed_by", "x", "y"} as one JSON line
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
  if (positional.length < 2) {
    console.error(`error: give a model path and at least one x\n\n${USAGE}`);
    return 2;
  }
  const [file, ...xs] = positional;
  try {
    const model = await load(file, { trustKey: options.trustKey });
    const rows = xs.map((x) => parseRow(x, model.nFeatures));
    const y = await model.predict(rows);
    const st = model.selftestResult;
    console.error(`self-test ok: ${model.name} (${model.metadata.source_framework ?? "unknown framework"}) ` +
      `y(${JSON.stringify(st.x)}) = ${st.actual}, stored ${st.expected}, |Δ| ${Math.abs(st.actual - st.expected)} ` +
      `<= ${st.tolerance.toExponential(2)}`);
    console.error(model.signedBy ? `signature ok: signed by key sha256:${model.signedBy.slice(0, 16)} (${options.trustKey})`
      : "unsigned: no --trust-key given, model.sig not checked");
    if (options.json) {
      console.log(JSON.stringify({ model: model.name, source_framework: model.metadata.source_framework ?? null,
        opset: model.opset, selftest: st, signed_by: model.signedBy, x: rows, y }));
    } else {
      for (const value of y) console.log(String(value));
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

process.exitCode = await main(process.argv.slice(2));
