#!/usr/bin/env node
// Runs an ONNX model once with ONNX Runtime on a given input and dumps every output (used by
// export_onnx.py --check to compare ONNX Runtime with PyTorch).
//
//   node benchmarks/ort_check.js MODEL.onnx INPUT.bin OUTDIR N C H W
//
// INPUT.bin: raw little-endian float32 of shape [N,C,H,W], fed to every graph input.
// Writes OUTDIR/<output>.bin (raw data) and OUTDIR/outputs.json ({name: {type, dims}}).
'use strict';

const fs = require('fs');
const path = require('path');
const ort = require('onnxruntime-node');

async function main() {
  const a = process.argv.slice(2);
  if (a.length !== 7) {
    process.stderr.write('usage: node ort_check.js MODEL.onnx INPUT.bin OUTDIR N C H W\n');
    process.exit(2);
  }
  const [model, input, outDir] = a;
  const dims = a.slice(3).map((v) => parseInt(v, 10));
  const buf = fs.readFileSync(input);
  const data = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  const session = await ort.InferenceSession.create(path.resolve(model), {
    intraOpNumThreads: 2, interOpNumThreads: 1, graphOptimizationLevel: 'all', executionMode: 'sequential',
  });
  const feeds = {};
  for (const n of session.inputNames) feeds[n] = new ort.Tensor('float32', data, dims);
  const out = await session.run(feeds);
  const meta = {};
  for (const n of session.outputNames) {
    const t = out[n];
    meta[n] = { type: t.type, dims: t.dims };
    const d = t.data;
    fs.writeFileSync(path.join(outDir, n + '.bin'), Buffer.from(d.buffer, d.byteOffset, d.byteLength));
  }
  fs.writeFileSync(path.join(outDir, 'outputs.json'), JSON.stringify(meta));
  await session.release();
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack ? e.stack : e) + '\n');
  process.exit(1);
});
