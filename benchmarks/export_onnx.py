#!/usr/bin/python3
"""Export upstream GeneralistYOLO (random or real checkpoint) to ONNX for benchmarks/side_by_side.py.

    /usr/bin/python3 benchmarks/export_onnx.py --upstream /tmp/upstream \
        --checkpoint /tmp/sbs/gyolo_random.pt --out-dir /tmp/sbs/onnx [--sizes 640,320] \
        [--graphs vision,full] [--opset 17] [--check]

Upstream is loaded exactly as side_by_side.py loads it (make_fixtures.setup_upstream +
load_like_predict: attempt_load, float, fuse, eval) and traced with torch.onnx.export (torch 1.13,
opset 17 = the highest it supports) at a fixed 1x3xSxS input, one file per size:

  vision  OUT/gyolo_vision_S.onnx  the model with its Grit caption head (layer 56) switched off; the
          outputs are upstream's eval outputs 'detect' = (pred, (d3, mc2, proto, semantic)) flattened:
          pred [1,4+80+32,A], d3_0..2 [1,144,h,w], mc2 [1,32,A], proto [1,32,S/4,S/4],
          semantic [1,173,S/4,S/4]. Upstream's eval forward also computes the training-only
          auxiliary branch and discards it; the exporter's dead-code elimination drops it, so the
          ONNX graph computes what gyolo computes.
  full    OUT/gyolo_full_S.onnx    the same plus the caption head set up like caption/predict.py
          (all-False source mask, beam search, beam 5, 20 steps, 1 sentence): extra outputs
          tokens [1,20] int64 and logprobs [1,20]. The 20-step beam search has no data-dependent
          control flow, so tracing unrolls it exactly. The decoder builds its causal mask with
          torch.triu on a uint8 tensor; ONNX Runtime has no uint8 Trilu kernel, so for the export
          torch.triu/tril on uint8/bool/int8 inputs are computed on float and cast back (a
          monkeypatch in this script; upstream's files are not touched).

--check runs each exported file once with ONNX Runtime (node benchmarks/ort_check.js, needs
`npm install` in benchmarks/) on the same random input as PyTorch and prints the largest difference
per output (tokens must match exactly).
Random weights: create the checkpoint with weights_tools/make_fixtures.py (see side_by_side.py).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'weights_tools'))

VISION_OUTPUTS = ['pred', 'd3_0', 'd3_1', 'd3_2', 'mc2', 'proto', 'semantic']
FULL_OUTPUTS = VISION_OUTPUTS + ['tokens', 'logprobs']


def log(*a):
    print('[export_onnx]', *a, file=sys.stderr, flush=True)


def flatten(o):
    if o is None:
        return []
    if isinstance(o, (list, tuple)):
        return [t for x in o for t in flatten(x)]
    return [o]


def load(upstream, checkpoint, threads):
    import make_fixtures as mf
    import torch
    Y = mf.setup_upstream(upstream, mf.DEFAULT_VOCAB)
    torch.set_num_threads(threads)
    model = mf.load_like_predict(Y, checkpoint)
    return mf, model


class _Wrap:
    """nn.Module factory (torch imported lazily): returns flat tuple of upstream's eval outputs."""

    @staticmethod
    def make(model, full):
        import torch.nn as nn

        class W(nn.Module):
            def __init__(self):
                super().__init__()
                self.m = model

            def forward(self, x):
                o = self.m(x)
                outs = flatten(o['detect'])
                if full:
                    tokens, logp = o['captions']
                    outs += [tokens, logp]
                return tuple(outs)
        return W()


def patch_trilu():
    """torch.triu/tril on integer/bool tensors -> computed on float and cast back (export only)."""
    import torch
    orig = {'triu': torch.triu, 'tril': torch.tril}

    def wrap(name):
        f = orig[name]

        def g(input, diagonal=0, *, out=None):
            if out is None and input.dtype in (torch.uint8, torch.int8, torch.bool):
                return f(input.float(), diagonal=diagonal).to(input.dtype)
            return f(input, diagonal=diagonal) if out is None else f(input, diagonal=diagonal, out=out)
        return g

    torch.triu, torch.tril = wrap('triu'), wrap('tril')

    def undo():
        torch.triu, torch.tril = orig['triu'], orig['tril']
    return undo


def export_one(mf, model, graph, size, out_dir, opset, check):
    import torch
    grit = model.model[56]
    saved_forward = grit.__dict__.get('forward')
    torch.manual_seed(0)
    x = torch.rand(1, 3, size, size)
    undo = None
    if graph == 'vision':
        grit.forward = lambda x: None
        names = VISION_OUTPUTS
    else:
        grit.__dict__.pop('forward', None)
        mf.set_caption_params(model, x)
        names = FULL_OUTPUTS
        undo = patch_trilu()
    path = os.path.join(out_dir, f'gyolo_{graph}_{size}.onnx')
    w = _Wrap.make(model, graph == 'full').eval()
    try:
        with torch.no_grad():
            ref = [t.detach().numpy() for t in w(x)]
            assert len(ref) == len(names), (len(ref), names)
            t0 = time.time()
            torch.onnx.export(w, (x,), path, opset_version=opset, input_names=['images'], output_names=names,
                              do_constant_folding=True)
    finally:
        if undo:
            undo()
        if saved_forward is not None:
            grit.forward = saved_forward
        else:
            grit.__dict__.pop('forward', None)
    info = {'file': path, 'graph': graph, 'size': size, 'opset': opset, 'export_s': round(time.time() - t0, 1),
            'mb': round(os.path.getsize(path) / 1e6, 1)}
    try:
        import onnx
        m = onnx.load(path, load_external_data=False)
        ops = {}
        for n in m.graph.node:
            ops[n.op_type] = ops.get(n.op_type, 0) + 1
        info['nodes'] = len(m.graph.node)
        info['conv_nodes'] = ops.get('Conv', 0)
        info['outputs'] = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in m.graph.output}
    except ImportError:
        pass
    if check:
        info['check'] = ort_check(path, x.numpy(), names, ref)
    log(json.dumps(info))
    return info


def ort_check(path, x, names, ref):
    with tempfile.TemporaryDirectory() as d:
        inp = os.path.join(d, 'input.bin')
        x.astype(np.float32).tofile(inp)
        subprocess.run(['node', os.path.join(HERE, 'ort_check.js'), path, inp, d] + [str(s) for s in x.shape],
                       check=True)
        meta = json.load(open(os.path.join(d, 'outputs.json')))
        res = {}
        for name, r in zip(names, ref):
            m = meta[name]
            a = np.fromfile(os.path.join(d, name + '.bin'), dtype={'float32': np.float32, 'int64': np.int64}[m['type']])
            a = a.reshape(m['dims'])
            if a.shape != r.shape:
                res[name] = f'shape {a.shape} != {r.shape}'
            elif name == 'tokens':
                res[name] = 'equal' if np.array_equal(a, r) else f'DIFFER ort {a.tolist()} torch {r.tolist()}'
            else:
                diff = float(np.abs(a.astype(np.float64) - r).max())
                res[name] = f'max|d| {diff:.2e} (max|ref| {float(np.abs(r).max()):.2e})'
        return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--upstream', required=True, help='upstream GeneralistYOLO checkout')
    ap.add_argument('--checkpoint', required=True, help='upstream-format .pt (e.g. from make_fixtures.py)')
    ap.add_argument('--out-dir', required=True)
    ap.add_argument('--sizes', default='640', help='comma-separated square input sizes (multiples of 32)')
    ap.add_argument('--graphs', default='vision,full', help='vision, full or both')
    ap.add_argument('--opset', type=int, default=17)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--check', action='store_true', help='compare ONNX Runtime with PyTorch once per file')
    a = ap.parse_args()
    os.makedirs(a.out_dir, exist_ok=True)
    mf, model = load(a.upstream, a.checkpoint, a.threads)
    import warnings
    warnings.filterwarnings('ignore')   # tracer warnings: shapes are fixed on purpose
    failed = False
    for g in [s.strip() for s in a.graphs.split(',') if s.strip()]:
        if g not in ('vision', 'full'):
            raise SystemExit(f'unknown graph {g}')
        for s in [int(v) for v in a.sizes.split(',')]:
            try:
                export_one(mf, model, g, s, a.out_dir, a.opset, a.check)
            except Exception as e:  # report and go on with the other files
                failed = True
                log(f'FAILED {g} {s}: {type(e).__name__}: {e}')
    sys.exit(1 if failed else 0)


if __name__ == '__main__':
    main()
