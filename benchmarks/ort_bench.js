#!/usr/bin/env node
// Times one ONNX model with ONNX Runtime (npm package onnxruntime-node, CPU execution provider).
//
//   node benchmarks/ort_bench.js MODEL.onnx SIZE RUNS THREADS
//
// Session: intraOpNumThreads=THREADS, interOpNumThreads=1, graphOptimizationLevel 'all',
// executionMode 'sequential'. The input is a fixed pseudo-random 1x3xSIZExSIZE float32 tensor in
// [0,1) (same seed every call). Every graph input gets such a tensor (the exports made by
// export_onnx.py have exactly one, "images"). One warm-up run (reported as first_ms), then RUNS
// timed runs; prints one JSON line:
//   {"median_ms":..,"min_ms":..,"first_ms":..,"runs":..,"threads":..,"load_ms":..,"ort":"1.30.0",...}
// Run `npm install` in benchmarks/ first (see side_by_side.py's docstring).
'use strict';

const path = require('path');
const ort = require('onnxruntime-node');

function usage() {
  process.stderr.write('usage: node ort_bench.js MODEL.onnx SIZE RUNS THREADS\n');
  process.exit(2);
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

// Small deterministic PRNG (mulberry32) so that every call sees the same input.
function mulberry32(seed) {
  return function () {
    let t = (seed += 0x6d2b79f5);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function nowMs() {
  return Number(process.hrtime.bigint()) / 1e6;
}

async function main() {
  const argv = process.argv.slice(2);
  if (argv.length !== 4) usage();
  const [model, sizeS, runsS, threadsS] = argv;
  const size = parseInt(sizeS, 10), runs = parseInt(runsS, 10), threads = parseInt(threadsS, 10);
  if (!(size > 0 && runs > 0 && threads > 0)) usage();

  const t0 = nowMs();
  const session = await ort.InferenceSession.create(path.resolve(model), {
    executionProviders: ['cpu'],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
  });
  const loadMs = nowMs() - t0;

  const rnd = mulberry32(12345);
  const n = 3 * size * size;
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = rnd();
  const feeds = {};
  for (const name of session.inputNames) feeds[name] = new ort.Tensor('float32', data, [1, 3, size, size]);

  let t = nowMs();
  const first = await session.run(feeds);
  const firstMs = nowMs() - t;
  const outputs = {};
  for (const k of session.outputNames) outputs[k] = first[k].dims;

  const ts = [];
  for (let r = 0; r < runs; r++) {
    t = nowMs();
    await session.run(feeds);
    ts.push(nowMs() - t);
  }
  const res = {
    median_ms: median(ts),
    min_ms: Math.min(...ts),
    first_ms: firstMs,
    runs,
    threads,
    load_ms: loadMs,
    ort: require('onnxruntime-node/package.json').version,
    model: path.basename(model),
    size,
    outputs,
  };
  process.stdout.write(JSON.stringify(res) + '\n');
  await session.release();
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack ? e.stack : e) + '\n');
  process.exit(1);
});
