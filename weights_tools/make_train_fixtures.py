#!/usr/bin/python3
"""Reference gradients for the gyolo C++ backward pass, from upstream's own modules (PyTorch autograd).

    /usr/bin/python3 weights_tools/make_train_fixtures.py --upstream /tmp/upstream \
        --out tests/fixtures/train [--seed S] [--ckpt-out /tmp/gyolo_train/train.pt] [--threads 2]

  full size (local only, never into the repository; for tests/test_train.cpp "[.train-full]"):
    /usr/bin/python3 weights_tools/make_train_fixtures.py --upstream /tmp/upstream --variant full \
        --out /tmp/train_full [--ckpt-out /tmp/gyolo_train_full/train.pt]

--variant full builds upstream's models/caption/gyolo.yaml unmodified (nc 80, full vocabulary)
with make_fixtures.py's full-variant recipe (torch.manual_seed(seed), build, randomize(seed)) and
writes only the whole-network files (weights.gguf, net.*, manifest.json): no per-block fixtures.
Everything below applies to it too, except what is said about blk.* / blocks.*.

Upstream code is NOT part of this repository: pass its checkout with --upstream.  The model is the
TINY variant built exactly like make_fixtures.py (same yaml, seed, randomize, Grit patch), but kept
in float32: the checkpoint (saved outside the repo, strip_optimizer layout, fp32, requires_grad
False) is converted with `convert.py --training` to <out>/weights.gguf and checked bit-exact, so the
weights in the GGUF are the ones autograd used.

Everything runs in TRAIN mode (BatchNorm uses batch statistics and updates its running stats with
upstream's momentum 0.03 / eps 1e-3), with Grit (layer 56) replaced by a no-op.

Precision: the REFERENCE values (net.out.*, net.grads.gguf incl. "input", net.bn_after.gguf,
blk.*.out*, blk.*.dx*, blocks.grads.gguf, blocks.bn_after.gguf) are upstream autograd in FLOAT64:
the same train-mode forward and backward run on a deep copy of the fp32 model converted with
.double() (parameters and BN buffers), fed with the fp32 input / block inputs and fp32 projections
converted to double, then rounded to float32 for storage.  The INPUTS (net.input, blk.*.in*), the
projections (net.proj.*, blk.*.proj*) and weights.gguf are float32 and come from the float32 run
(block inputs are the activations the block received in the fp32 whole-network forward).  The
float32 autograd run is kept only to measure how far it is from the float64 reference (manifest
"float32_vs_float64": per tensor max|fp32 - fp64| / max|fp64|, the worst listed): fp32 autograd
deviates by up to ~1e-3 relative L2 and more in max norm, too noisy for a 1e-3 * max|ref| test.

  net.*     whole network: x = load_images(64, 96, 2) -> head 55's training outputs
            (d1_0..d3_2, mc1, mc2, p1, p2, s1, s2); L = sum_k sum(o_k * r_k) with fixed seeded
            projections r_k; gradients of every parameter and of x (net.grads.gguf), BN running
            stats after the forward (net.bn_after.gguf).
  blk.*     the same per block, standalone (a deep copy of the block, taken before the whole-network
            forward, so its BN running stats are those of weights.gguf), fed with the activation it
            received in the whole-network forward; param grads in blocks.grads.gguf and running
            stats in blocks.bn_after.gguf, keyed '<block>|<state_dict name>'.  The head (model.55)
            has no standalone fixture: net.* already covers it exactly (its outputs are the
            network's outputs, with the same kind of projections).
  manifest.json   files, shapes, seed, output order, which tensors get no gradient and why.

Self-checks: every written file is read back and compared bit-exact; each block run standalone (fp32)
reproduces its fp32 in-network output; a float64 central finite difference on 3 random parameter
elements (and one input element) of the whole network confirms the saved gradients are the gradient
of L.
"""
import argparse
import collections
import copy
import hashlib
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import convert as gconv  # noqa: E402
import make_fixtures as MF  # noqa: E402  (installs nothing at import time)

NET_HW = (64, 96)
NET_BATCH = 2
OUT_NAMES = ['d1_0', 'd1_1', 'd1_2', 'd2_0', 'd2_1', 'd2_2', 'd3_0', 'd3_1', 'd3_2',
             'mc1', 'mc2', 'p1', 'p2', 's1', 's2']
BLOCKS = ['model.1', 'model.3.cv2.0.m.0', 'model.3', 'model.4', 'model.10', 'model.11', 'model.17',
          'model.45', 'model.24', 'model.25', 'model.31']
# Block b draws its projections from seed + BLOCK_SEED_OFFSET + BLOCK_SEED_INDEX[b].  The index is
# the block's position in the list as it was when it still ended with the head 'model.55' (index
# 11, now dropped): fixed here so the remaining blocks keep their seeds (and their fixtures stay
# byte-identical) whatever is later added to or removed from BLOCKS.
BLOCK_SEED_OFFSET = 1000
BLOCK_SEED_INDEX = {'model.1': 0, 'model.3.cv2.0.m.0': 1, 'model.3': 2, 'model.4': 3, 'model.10': 4,
                    'model.11': 5, 'model.17': 6, 'model.45': 7, 'model.24': 8, 'model.25': 9,
                    'model.31': 10}
assert set(BLOCK_SEED_INDEX) == set(BLOCKS) and len(set(BLOCK_SEED_INDEX.values())) == len(BLOCKS)
FD_PARAMS = 3
FD_STEP = 1e-6


def log(*a):
    print('[make_train_fixtures]', *a, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def flatten_head_outputs(out):
    """DualDPanoptic training output (d, mc, p, s) -> list of 15 tensors in OUT_NAMES order."""
    d, mc, p, s = out
    assert len(d) == 3 and all(len(di) == 3 for di in d) and len(mc) == 2 and len(p) == 2 and len(s) == 2
    flat = [t for di in d for t in di] + list(mc) + list(p) + list(s)
    assert len(flat) == len(OUT_NAMES)
    return flat


def flatten_outputs(name, out):
    import torch
    if isinstance(out, torch.Tensor):
        return [out]
    assert isinstance(out, (list, tuple)) and all(isinstance(t, torch.Tensor) for t in out), type(out)
    return list(out)


def flatten_inputs(args):
    """A module's positional args -> (flat list of tensors, list of index paths, rebuild function)."""
    import torch
    x = args[0] if len(args) == 1 else list(args)
    paths, flat = [], []

    def walk(v, path):
        if isinstance(v, torch.Tensor):
            paths.append(path)
            flat.append(v)
        else:
            assert isinstance(v, (list, tuple)), type(v)
            for i, e in enumerate(v):
                walk(e, path + [i])
    walk(x, [])

    def rebuild(leaves):
        it = iter(leaves)

        def build(v):
            if isinstance(v, torch.Tensor):
                return next(it)
            return type(v)(build(e) for e in v) if isinstance(v, tuple) else [build(e) for e in v]
        return build(x)
    return flat, paths, rebuild


def projections(tensors, seed):
    import torch
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(t.shape, generator=g, dtype=torch.float32) for t in tensors]


def bn_modules(module):
    import torch.nn as nn
    return [(n, m) for n, m in module.named_modules() if isinstance(m, nn.BatchNorm2d)]


def write_gguf(path, name, tensors, extra_kv=()):
    kvs = [('general.architecture', gconv.GGUF_STRING, 'gyolo.fixture'),
           ('general.name', gconv.GGUF_STRING, name),
           ('general.alignment', gconv.GGUF_UINT32, gconv.ALIGNMENT)] + list(extra_kv)
    arrs = collections.OrderedDict()
    for k, t in tensors.items():
        a = t.detach().cpu().numpy() if hasattr(t, 'detach') else np.asarray(t)
        assert a.dtype == np.float32, (k, a.dtype)
        assert 1 <= a.ndim <= 4 and len(k) <= 256, (k, a.shape)
        arrs[k] = np.ascontiguousarray(a)
    head, blobs = gconv.build_gguf(kvs, arrs)
    with open(path, 'wb') as f:
        f.write(head)
        for b in blobs:
            f.write(b)
    return arrs


def check_gguf(path, want):
    """Read back a GGUF written by write_gguf and compare names, order, shapes and bytes."""
    _, got = gconv.read_gguf(path)
    assert list(got) == list(want), f'{path}: tensor names/order differ'
    for k, a in want.items():
        assert got[k].dtype == a.dtype and got[k].shape == a.shape, (path, k)
        assert got[k].tobytes() == a.tobytes(), f'{path}: {k} bytes differ'


class Files:
    """.npy writer that remembers what it wrote (for the manifest and the read-back check)."""

    def __init__(self, out):
        self.out = out
        self.files = collections.OrderedDict()
        self.arrays = {}
        os.makedirs(out, exist_ok=True)

    def npy(self, name, t):
        a = t.detach().cpu().numpy() if hasattr(t, 'detach') else np.asarray(t)
        assert a.dtype == np.float32, (name, a.dtype)
        a = np.ascontiguousarray(a)
        fn = name + '.npy'
        np.save(os.path.join(self.out, fn), a)
        self.files[fn] = {'shape': list(a.shape), 'dtype': str(a.dtype)}
        self.arrays[fn] = a.copy()

    def gguf(self, fn, name, tensors, what):
        arrs = write_gguf(os.path.join(self.out, fn), name, tensors)
        self.files[fn] = {'tensors': len(arrs), 'what': what}
        self.arrays[fn] = arrs

    def check(self):
        for fn, a in self.arrays.items():
            p = os.path.join(self.out, fn)
            if fn.endswith('.npy'):
                b = np.load(p)
                assert b.dtype == a.dtype and b.shape == a.shape and b.tobytes() == a.tobytes(), fn
            else:
                check_gguf(p, a)
        log(f'read back {len(self.arrays)} files bit-exact')


# --------------------------------------------------------------------------------------------
# model, checkpoint, conversion
# --------------------------------------------------------------------------------------------

def build_tiny(Y, upstream, vocab, seed, ckpt_dir):
    """The tiny variant exactly as make_fixtures.py builds it (before its .half()); returns
    (model, vocab_path, grit_patch)."""
    import torch
    import yaml
    with open(os.path.join(os.path.abspath(upstream), 'models/caption/gyolo.yaml')) as f:
        cfg = MF.tiny_yaml(yaml.safe_load(f))
    vocab_lines = open(vocab, encoding='utf-8').read().split('\n')[:MF.TINY_VOCAB_N]
    os.makedirs(ckpt_dir, exist_ok=True)
    vocab_path = os.path.join(ckpt_dir, 'tiny_vocab.txt')
    with open(vocab_path, 'w', encoding='utf-8') as f:
        f.write('\n'.join(vocab_lines))
    grit_patch = dict(MF.TINY_GRIT, vocab_size=MF.TINY_VOCAB_N, grid_feat_dim=max(cfg['head'][1][3][0], 128))
    torch.manual_seed(seed)
    model = MF.build_model(Y, cfg, grit_patch)
    MF.randomize(model, seed)
    return model, vocab_path, grit_patch


def build_full(Y, upstream, seed):
    """The full-size model exactly as make_fixtures.py --variant full builds it (gyolo.yaml
    unmodified, Grit with its own config and the full vocabulary), before its .half()."""
    import torch
    torch.manual_seed(seed)
    model = MF.build_model(Y, os.path.join(os.path.abspath(upstream), 'models/caption/gyolo.yaml'))
    MF.randomize(model, seed)
    return model


def save_fp32(model, path, names, hyp):
    """save_stripped's layout, but float32."""
    import torch
    m = copy.deepcopy(model)
    m.names = names
    if hyp is not None:
        m.hyp = hyp
    for p in m.parameters():
        p.requires_grad = False
    ckpt = {'epoch': -1, 'best_fitness': None, 'model': m, 'ema': None, 'updates': None, 'optimizer': None,
            'optimizer2': None, 'opt': {}, 'git': None, 'date': None}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save(ckpt, path)
    log('saved fp32 checkpoint', path, f'{os.path.getsize(path) / 1e6:.2f} MB')


def verify_training_gguf(model, pt, gguf, vocab):
    """Every state_dict tensor convert.py --training keeps, bit-exact vs the model autograd uses
    (and vs the reloaded checkpoint); metadata sane."""
    import torch
    sd = model.state_dict()
    want = [(k, v) for k, v in sd.items() if gconv.keep_key(k, training=True)]
    dropped = [k for k in sd if not gconv.keep_key(k, training=True)]
    assert all(k.endswith('num_batches_tracked') or k.split('.')[-1] in gconv._DROP_GRIT_BUFFERS
               for k in dropped), dropped
    kv, tensors = gconv.read_gguf(gguf)
    assert list(tensors) == [k for k, _ in want], 'tensor names/order differ from state_dict'
    sd_ckpt = torch.load(pt, map_location='cpu')['model'].state_dict()
    for k, v in want:
        ref = v.detach().cpu().numpy()
        a = tensors[k]
        assert ref.dtype == np.float32 and a.dtype == ref.dtype and a.shape == ref.shape, k
        assert a.tobytes() == ref.tobytes() == sd_ckpt[k].numpy().tobytes(), f'{k}: bytes differ'
    assert kv['general.architecture'] == 'gyolo' and kv['gyolo.source_key'] == 'model'
    assert kv['gyolo.source_sha256'] == hashlib.sha256(open(pt, 'rb').read()).hexdigest()
    assert json.loads(kv['gyolo.yaml']) == json.loads(json.dumps(model.yaml))
    assert kv['gyolo.vocab'] == open(vocab, encoding='utf-8').read().split('\n')
    log(f'weights.gguf verified bit-exact: {len(want)} tensors (fp32), {len(dropped)} state_dict entries dropped')
    return len(want), dropped


def disable_grit(model):
    # Grit needs >= 300 anchors and is not part of these fixtures: OutputLayer gets None for it.
    model.model[56].forward = lambda x: None


def net_loss(model, x, projs):
    outs = flatten_head_outputs(model(x)['detect'])
    loss = sum((o * r).sum() for o, r in zip(outs, projs))
    return loss, outs


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------

def stop_gradient_modules(model):
    """The modules whose input upstream passes through .detach(): cvcap of every RepNCSPELAN4B and
    the one-to-one head branches cv6[l] / cv7[l] of DualDPanoptic (they read x[6:9].detach())."""
    mods = []
    for n, m in model.named_modules():
        if type(m).__name__ == 'RepNCSPELAN4B':
            mods.append((n + '.cvcap', m.cvcap))
        elif type(m).__name__ == 'DualDPanoptic':
            for i in range(m.nl):
                mods += [(f'{n}.cv6.{i}', m.cv6[i]), (f'{n}.cv7.{i}', m.cv7[i])]
    return mods


def to_float64(module):
    """Deep copy of an fp32 module in float64: parameters and floating buffers (BN running stats)."""
    import torch
    m = copy.deepcopy(module).double()
    assert all(p.dtype == torch.float64 for p in m.parameters())
    assert all(b.dtype == torch.float64 for b in m.buffers() if b.is_floating_point())
    m.train()
    return m


class Deviation:
    """How far upstream's float32 autograd is from the float64 reference, per saved reference tensor:
    rel_max = max|fp32 - fp64| / max|fp64| (what a max-norm test sees), rel_l2 = |fp32 - fp64|_2 / |fp64|_2."""

    GROUPS = collections.OrderedDict([
        ('net.out', 'net.out.<k>.npy'), ('net.grads', 'net.grads.gguf (incl. input)'),
        ('net.bn_after', 'net.bn_after.gguf'), ('blk.out', 'blk.*.out<j>.npy'), ('blk.dx', 'blk.*.dx<i>.npy'),
        ('blocks.grads', 'blocks.grads.gguf'), ('blocks.bn_after', 'blocks.bn_after.gguf')])

    def __init__(self):
        self.rows = collections.OrderedDict((g, collections.OrderedDict()) for g in self.GROUPS)

    def add(self, group, name, a32, a64):
        a, b = a32.detach().double(), a64.detach().double()
        assert a.shape == b.shape, (group, name, a.shape, b.shape)
        d = a - b
        ref_max = float(b.abs().max())
        self.rows[group][name] = {'rel_max': float(d.abs().max()) / max(ref_max, 1e-300),
                                  'rel_l2': float(d.norm() / b.norm().clamp_min(1e-300)),
                                  'max_abs_float64': ref_max, 'max_abs_float32': float(a.abs().max())}

    def summary(self, worst_n=5):
        def vanishing(r):   # the float64 value is ~0: the float32 one is rounding noise
            return r['rel_l2'] > 0.5

        groups, every, van = collections.OrderedDict(), [], collections.OrderedDict()
        for g, rows in self.rows.items():
            ok = [(n, r) for n, r in rows.items() if not vanishing(r)]
            for n, r in rows.items():
                if vanishing(r):
                    van[f'{g}:{n}'] = {'max_abs_float32': r['max_abs_float32'], 'max_abs_float64': r['max_abs_float64']}
            every += [(f'{g}:{n}', r) for n, r in ok]
            if not ok:
                continue
            rm = sorted(r['rel_max'] for _, r in ok)
            worst = sorted(ok, key=lambda nr: -nr[1]['rel_max'])[:worst_n]
            groups[g] = {'file': self.GROUPS[g], 'tensors': len(rows), 'rel_max_median': rm[len(rm) // 2],
                         'rel_max_p90': rm[int(len(rm) * 0.9)], 'rel_max_max': rm[-1],
                         'rel_l2_max': max(r['rel_l2'] for _, r in ok),
                         'worst': collections.OrderedDict((n, {'rel_max': r['rel_max'], 'rel_l2': r['rel_l2']})
                                                          for n, r in worst)}
        worst = sorted(every, key=lambda nr: -nr[1]['rel_max'])[:2 * worst_n]
        for g, s in groups.items():
            log(f'fp32 vs fp64 {g:16s} ({s["tensors"]:3d} tensors): max-norm rel median {s["rel_max_median"]:.2e}, '
                f'p90 {s["rel_max_p90"]:.2e}, max {s["rel_max_max"]:.2e} ({next(iter(s["worst"]))}); '
                f'rel L2 max {s["rel_l2_max"]:.2e}')
        log('fp32 vs fp64 worst (max-norm rel): ' + ', '.join(f'{n} {r["rel_max"]:.2e}' for n, r in worst))
        log(f'fp32 vs fp64 vanishing (true value ~0, fp32 is rounding noise): {list(van)}')
        return {'measure': 'per saved reference tensor: rel_max = max|fp32 - fp64| / max|fp64| (max norm), '
                           'rel_l2 = |fp32 - fp64|_2 / |fp64|_2; fp32 = the same computation with upstream '
                           'autograd in float32 (not saved), fp64 = the saved reference (before its rounding '
                           'to float32)',
                'groups': groups,
                'worst_rel_max': collections.OrderedDict((n, {'rel_max': r['rel_max'], 'rel_l2': r['rel_l2']})
                                                         for n, r in worst),
                'vanishing': van,
                'vanishing_note': 'excluded above (rel_l2 > 0.5): analytically ~0, e.g. a per-channel constant '
                                  '(bias) that only reaches L through a 1x1 conv followed by a train-mode '
                                  'BatchNorm, which subtracts the batch mean; the fp32 values are rounding '
                                  'noise, the fp64 reference is ~1e-13: compare with an absolute tolerance'}


def whole_network(model, pristine, seed, fs, dev):
    """fp32 run (saved: input, projections, block inputs; kept for the statistics) and the float64
    reference run (saved: outputs, gradients, BN running stats).  Returns (captured fp32 block inputs,
    captured fp32 block outputs, input, projections, fp64 outputs, no-grad list, BN modules not
    updated, the fp64 run for the finite difference, the fp32 gradients)."""
    import torch
    mods = dict(model.named_modules())
    cap_in, cap_out, hooks = {}, {}, []

    def pre(name):
        def fn(mod, args):
            # (structure, values at call time): cloned in case anything later works in place
            cap_in[name] = (args, [t.detach().clone() for t in flatten_inputs(args)[0]])
        return fn

    def post(name):
        def fn(mod, args, out):
            cap_out[name] = [t.detach().clone() for t in flatten_outputs(name, out)]
        return fn

    for n in BLOCKS:
        hooks.append(mods[n].register_forward_pre_hook(pre(n)))
        hooks.append(mods[n].register_forward_hook(post(n)))

    # ---- float32 (upstream as is) -------------------------------------------------------------
    # load_images returns a channels-last strided array: make it a plain contiguous NCHW tensor
    x = torch.from_numpy(np.ascontiguousarray(MF.load_images(*NET_HW, NET_BATCH))).requires_grad_(True)
    bn = bn_modules(model)
    bn = [(n, m) for n, m in bn if int(n.split('.')[1]) <= 55]
    model.zero_grad(set_to_none=True)
    outs = flatten_head_outputs(model(x)['detect'])
    for h in hooks:
        h.remove()
    projs = projections(outs, seed)
    loss = sum((o * r).sum() for o, r in zip(outs, projs))
    loss.backward()

    # ---- float64 reference: the same computation on model.double(), fp32 input/projections ----
    m64 = to_float64(pristine)
    disable_grit(m64)
    bn64 = [(n, m) for n, m in bn_modules(m64) if int(n.split('.')[1]) <= 55]
    assert [n for n, _ in bn64] == [n for n, _ in bn]
    before = {n: (m.running_mean.clone(), m.running_var.clone()) for n, m in bn64}
    sg = stop_gradient_modules(m64)
    frozen = {}

    def record(name):
        def fn(mod, args):
            assert not args[0].requires_grad, f'{name}: input is not detached'
            frozen[name] = args[0].detach().clone()
        return fn

    rec = [m.register_forward_pre_hook(record(n)) for n, m in sg]
    x64 = x.detach().double().requires_grad_(True)
    p64 = [r.double() for r in projs]
    loss64, outs64 = net_loss(m64, x64, p64)
    loss64.backward()
    for h in rec:
        h.remove()
    log(f'whole network: L = {loss.item():.9g} (float32 autograd), {loss64.item():.9g} (float64 reference)')

    fs.npy('net.input', x)
    for k, o, o64, r in zip(OUT_NAMES, outs, outs64, projs):
        fs.npy(f'net.proj.{k}', r)
        fs.npy(f'net.out.{k}', o64.detach().float())
        dev.add('net.out', k, o, o64)
    params32 = dict(model.named_parameters())
    grads, grads32 = collections.OrderedDict(), collections.OrderedDict()
    no_grad = collections.OrderedDict()
    for n, p in m64.named_parameters():
        assert (p.grad is None) == (params32[n].grad is None), n
        if p.grad is not None:
            grads[n] = p.grad.float()
            grads32[n] = params32[n].grad
            dev.add('net.grads', n, params32[n].grad, p.grad)
        elif n.startswith('model.56.'):
            no_grad[n] = 'Grit (layer 56) is not run in these fixtures'
        elif not p.requires_grad:
            no_grad[n] = 'frozen (requires_grad False); DFL is not even run in training mode'
        else:
            no_grad[n] = 'not on any path from L'
    grads['input'] = x64.grad.float()
    grads32['input'] = x.grad
    dev.add('net.grads', 'input', x.grad, x64.grad)
    fs.gguf('net.grads.gguf', 'net.grads', grads, 'dL/dparam for every parameter with a gradient (state_dict '
            'names), and dL/dx as "input"; float64 autograd rounded to float32')
    bn_after = collections.OrderedDict()
    unchanged = []
    for (n, m), (_, m32) in zip(bn64, bn):
        bn_after[n + '.running_mean'] = m.running_mean.float()   # copies: m64 runs again in the FD check
        bn_after[n + '.running_var'] = m.running_var.float()
        dev.add('net.bn_after', n + '.running_mean', m32.running_mean, m.running_mean)
        dev.add('net.bn_after', n + '.running_var', m32.running_var, m.running_var)
        if torch.equal(before[n][0], m.running_mean) and torch.equal(before[n][1], m.running_var):
            unchanged.append(n)
    fs.gguf('net.bn_after.gguf', 'net.bn_after', bn_after,
            'BN running_mean/running_var of layers 0..55 after the one training forward (float64, rounded)')
    vision_no_grad = [n for n in no_grad if not n.startswith('model.56.')]
    log(f'{len(grads) - 1} parameter grads; no grad: {vision_no_grad} + {len(no_grad) - len(vision_no_grad)} '
        f'Grit parameters; BN modules not updated: {unchanged}')
    ref64 = {'model': m64, 'x': x64, 'projs': p64, 'loss': loss64, 'stop_gradient': sg, 'frozen': frozen}
    return cap_in, cap_out, x, projs, outs64, no_grad, unchanged, ref64, grads32


def per_block(pristine, cap_in, cap_out, seed, fs, dev):
    import torch
    mods = dict(pristine.named_modules())
    grads, bn_after, info = collections.OrderedDict(), collections.OrderedDict(), collections.OrderedDict()
    for name in BLOCKS:
        base = 'blk.' + name.replace('.', '_')
        args, values = cap_in[name]
        _, paths, rebuild = flatten_inputs(args)
        bseed = seed + BLOCK_SEED_OFFSET + BLOCK_SEED_INDEX[name]
        # float32 (upstream as is): the inputs and projections that are saved, the checks, the statistics
        blk = copy.deepcopy(mods[name])
        blk.train()
        blk.zero_grad(set_to_none=True)
        leaves = [t.clone().requires_grad_(True) for t in values]
        out = flatten_outputs(name, blk(rebuild(leaves)))
        projs = projections(out, bseed)
        loss = sum((o * r).sum() for o, r in zip(out, projs))
        loss.backward()
        # the standalone forward must reproduce what the block produced inside the network
        diffs = [float((o.detach() - w).abs().max()) for o, w in zip(out, cap_out[name])]
        assert len(out) == len(cap_out[name]) and max(diffs) <= 1e-5, (name, diffs)
        # float64 reference: the block in double, fed with the same fp32 inputs and projections
        blk64 = to_float64(mods[name])
        leaves64 = [t.detach().double().requires_grad_(True) for t in values]
        out64 = flatten_outputs(name, blk64(rebuild(leaves64)))
        assert [o.shape for o in out64] == [o.shape for o in out], name
        loss64 = sum((o * r.double()).sum() for o, r in zip(out64, projs))
        loss64.backward()
        for i, t in enumerate(leaves):
            fs.npy(f'{base}.in{i}', t)
        no_dx = []
        for i, (t, t64) in enumerate(zip(leaves, leaves64)):
            assert (t.grad is None) == (t64.grad is None), (name, i)
            if t64.grad is None:
                no_dx.append(i)
            else:
                fs.npy(f'{base}.dx{i}', t64.grad.float())
                dev.add('blk.dx', f'{base}.dx{i}', t.grad, t64.grad)
        for j, (o, o64, r) in enumerate(zip(out, out64, projs)):
            fs.npy(f'{base}.proj{j}', r)
            fs.npy(f'{base}.out{j}', o64.detach().float())
            dev.add('blk.out', f'{base}.out{j}', o, o64)
        no_pgrad = []
        for (n, p32), (n64, p) in zip(blk.named_parameters(), blk64.named_parameters()):
            assert n == n64 and (p32.grad is None) == (p.grad is None), (name, n, n64)
            full = f'{name}.{n}'
            if p.grad is None:
                no_pgrad.append(full)
            else:
                grads[f'{name}|{full}'] = p.grad.float()
                dev.add('blocks.grads', f'{name}|{full}', p32.grad, p.grad)
        nbn = 0
        for (n, m32), (n64, m) in zip(blk.named_modules(), blk64.named_modules()):
            assert n == n64
            if isinstance(m, torch.nn.BatchNorm2d):
                full = f'{name}.{n}' if n else name
                for s in ('running_mean', 'running_var'):
                    bn_after[f'{name}|{full}.{s}'] = getattr(m, s).float()
                    dev.add('blocks.bn_after', f'{name}|{full}.{s}', getattr(m32, s), getattr(m, s))
                nbn += 1
        info[name] = {
            'type': type(blk).__name__, 'files': base, 'projection_seed': bseed,
            'inputs': [{'file': f'{base}.in{i}.npy', 'path': p, 'shape': list(t.shape),
                        'dx': None if i in no_dx else f'{base}.dx{i}.npy'} for i, (p, t) in enumerate(zip(paths, leaves))],
            'outputs': [{'file': f'{base}.out{j}.npy', 'proj': f'{base}.proj{j}.npy', 'shape': list(o.shape)}
                        for j, o in enumerate(out)],
            'inputs_without_grad': no_dx, 'params_without_grad': no_pgrad,
            'param_grads': sum(1 for k in grads if k.startswith(name + '|')), 'bn_modules': nbn,
            'max_abs_diff_vs_network_forward': max(diffs),
            'loss_float32': loss.item(), 'loss_float64': loss64.item(),
        }
        log(f'{name} ({type(blk).__name__}): {len(leaves)} inputs, {len(out)} outputs, '
            f'L = {loss64.item():.9g} (fp32 {loss.item():.9g}), no dx for inputs {no_dx}, '
            f'params without grad {no_pgrad}')
    fs.gguf('blocks.grads.gguf', 'blocks.grads', grads, 'per-block dL/dparam, keyed "<block>|<state_dict name>"; '
            'float64 autograd rounded to float32')
    fs.gguf('blocks.bn_after.gguf', 'blocks.bn_after', bn_after,
            'per-block BN running stats after its one forward, keyed "<block>|<state_dict name>" (float64, rounded)')
    return info


def finite_difference(ref64, saved_grads, grads32, seed):
    """float64 central differences of L on FD_PARAMS random parameter elements and one input element,
    on the float64 reference run itself (ref64 from whole_network).

    Autograd's result is the derivative of L with the stop-gradient tensors held constant, not the
    total derivative (a perturbation of a trunk weight also moves cvcap's and cv6/cv7's detached
    inputs).  So the perturbed forwards feed those modules the inputs recorded in the reference
    forward: that is exactly the function whose gradient autograd computes.  (The perturbed
    forwards update m64's BN running stats: net.bn_after was saved before.)"""
    import torch
    m64, x64, p64, loss = ref64['model'], ref64['x'], ref64['projs'], ref64['loss']
    frozen = ref64['frozen']
    params = dict(m64.named_parameters())

    def substitute(name):
        def fn(mod, args):
            return (frozen[name],)
        return fn

    for n, m in ref64['stop_gradient']:
        m.register_forward_pre_hook(substitute(n))
    with torch.no_grad():
        assert net_loss(m64, x64, p64)[0].item() == loss.item()
    rng = np.random.default_rng(seed)
    names = [n for n in saved_grads if n != 'input']
    picks = [names[i] for i in rng.choice(len(names), FD_PARAMS, replace=False)]
    results = []
    for n in picks + ['input']:
        t = x64 if n == 'input' else params[n]
        g = np.asarray(saved_grads[n]).reshape(-1)     # the saved reference (float64, rounded to float32)
        # among 64 random elements take the one with the largest |grad| (a relative error of a
        # gradient that is ~0 says nothing)
        cand = rng.choice(t.numel(), min(64, t.numel()), replace=False)
        idx = int(cand[int(np.argmax(np.abs(g[cand])))])
        at = tuple(int(i) for i in np.unravel_index(idx, tuple(t.shape)))
        v0 = t.data[at].item()
        h = FD_STEP * max(1.0, abs(v0))
        with torch.no_grad():
            t.data[at] = v0 + h
            lp = net_loss(m64, x64, p64)[0].item()
            t.data[at] = v0 - h
            lm = net_loss(m64, x64, p64)[0].item()
            t.data[at] = v0
        fd = (lp - lm) / (2 * h)
        a_saved = float(g[idx])
        a64 = float(t.grad.reshape(-1)[idx])
        a32 = float(grads32[n].detach().reshape(-1)[idx])
        rel_saved = abs(a_saved - fd) / max(abs(fd), 1e-30)
        rel64 = abs(a64 - fd) / max(abs(fd), 1e-30)
        rel32 = abs(a32 - fd) / max(abs(fd), 1e-30)
        results.append({'tensor': n, 'flat_index': idx, 'index': list(at), 'fd_float64': fd, 'saved_grad': a_saved,
                        'autograd_float64': a64, 'autograd_float32': a32, 'rel_err_saved_vs_fd': rel_saved,
                        'rel_err_autograd64_vs_fd': rel64, 'rel_err_autograd32_vs_fd': rel32, 'step': h})
        log(f'FD {n}[{idx}]: fd64 {fd:.9g}  saved {a_saved:.9g} (rel {rel_saved:.2e})  autograd fp64 {a64:.9g} '
            f'(rel {rel64:.2e})  [fp32 autograd {a32:.9g} (rel {rel32:.2e})]')
        assert rel64 < 1e-5, 'float64 autograd disagrees with the finite difference'
        assert rel_saved < 1e-5, 'saved gradient disagrees with the finite difference'
    return results


def main():
    ap = argparse.ArgumentParser(description='generate gyolo training (backward) reference fixtures from upstream')
    ap.add_argument('--upstream', required=True, help='upstream GeneralistYOLO checkout')
    ap.add_argument('--out', required=True)
    ap.add_argument('--seed', type=int, default=20240601)
    ap.add_argument('--vocab', default=MF.DEFAULT_VOCAB)
    ap.add_argument('--variant', choices=['tiny', 'full'], default='tiny',
                    help='tiny (committed fixtures) or full (gyolo.yaml unmodified, whole network only, local)')
    ap.add_argument('--ckpt-out', default=None, help='where the fp32 .pt goes (not in repo); default '
                    '/tmp/gyolo_train/train.pt (tiny), /tmp/gyolo_train_full/train.pt (full)')
    ap.add_argument('--threads', type=int, default=2)
    args = ap.parse_args()
    full = args.variant == 'full'
    if args.ckpt_out is None:
        args.ckpt_out = '/tmp/gyolo_train_full/train.pt' if full else '/tmp/gyolo_train/train.pt'
    if full:
        repo = os.path.realpath(os.path.join(HERE, '..'))
        out = os.path.realpath(args.out)
        if out == repo or out.startswith(repo + os.sep):
            raise SystemExit(f'--variant full writes large local fixtures: --out must be outside {repo}')

    import yaml
    Y = MF.setup_upstream(args.upstream, args.vocab)
    import torch
    torch.set_num_threads(args.threads)
    coco_names = yaml.safe_load(open(MF.DEFAULT_COCO))['names']
    hyp = yaml.safe_load(open(MF.DEFAULT_HYP)) if os.path.exists(MF.DEFAULT_HYP) else None

    if full:
        model, vocab_path, grit_patch = build_full(Y, args.upstream, args.seed), args.vocab, None
    else:
        model, vocab_path, grit_patch = build_tiny(Y, args.upstream, args.vocab, args.seed,
                                                   os.path.dirname(os.path.abspath(args.ckpt_out)))
    log(f'{args.variant} model: {sum(p.numel() for p in model.parameters())} parameters')
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    bn_settings = sorted({(m.momentum, m.eps) for m in bns})
    assert bn_settings == [(0.03, 1e-3)], bn_settings   # set by upstream's initialize_weights
    assert all(p.dtype == torch.float32 for p in model.parameters())

    fs = Files(args.out)
    for fn in os.listdir(args.out):   # stale fixtures from an earlier run
        if fn.endswith(('.npy', '.gguf')) or fn == 'manifest.json':
            os.unlink(os.path.join(args.out, fn))
    pt = args.ckpt_out
    save_fp32(model, pt, coco_names, hyp)
    gguf = os.path.join(args.out, 'weights.gguf')
    subprocess.run([sys.executable, os.path.join(HERE, 'convert.py'), '--checkpoint', pt, '--out', gguf,
                    '--vocab', vocab_path, '--training'], check=True)
    nkeep, dropped = verify_training_gguf(model, pt, gguf, vocab_path)
    fs.files['weights.gguf'] = {'tensors': nkeep, 'what': 'convert.py --training of the fp32 checkpoint'}

    pristine = copy.deepcopy(model)   # state of weights.gguf (BN running stats before any forward)
    model.train()
    disable_grit(model)
    dev = Deviation()
    cap_in, cap_out, x, projs, outs, no_grad, bn_unchanged, ref64, grads32 = whole_network(
        model, pristine, args.seed, fs, dev)
    blocks = None if full else per_block(pristine, cap_in, cap_out, args.seed, fs, dev)
    del cap_in, cap_out
    fs.check()
    precision = dev.summary()
    fd = finite_difference(ref64, fs.arrays['net.grads.gguf'], grads32, args.seed)
    log(f'finite differences done ({FD_PARAMS} parameter elements + 1 input element)')

    vision_no_grad = {n: r for n, r in no_grad.items() if not n.startswith('model.56.')}
    meta = {
        'files': fs.files,
        'seed': args.seed, 'torch': torch.__version__, 'threads': args.threads, 'dtype': 'float32 (every file)',
        'references': 'upstream autograd in float64: net.out.*, net.grads.gguf (incl. "input"), net.bn_after.gguf, '
                      'blk.*.out*, blk.*.dx*, blocks.grads.gguf and blocks.bn_after.gguf come from the same '
                      'train-mode forward and backward run on a deep copy of the fp32 model converted with '
                      '.double() (parameters and BN buffers), fed with the fp32 input (net.input, blk.*.in*) '
                      'and the fp32 projections converted to double, then rounded to float32. The inputs, '
                      'projections and weights.gguf are float32 from the float32 run (blk.*.in* = what the '
                      'block received in the fp32 whole-network forward). Upstream autograd in float32 is run '
                      'too, only for "float32_vs_float64"; it is not saved (too noisy for 1e-3 * max|ref|).',
        'variant': 'tiny (make_fixtures.py: tiny_yaml, randomize, grit patch), not fused, not halved',
        'grit_config_patch': grit_patch, 'tiny_div': MF.TINY_DIV, 'tiny_psa_div': MF.TINY_PSA_DIV,
        'mode': 'model.train(): BatchNorm normalises with the batch mean and biased batch variance, and '
                'updates running_mean/running_var with momentum 0.03 (running_var from the unbiased '
                'batch variance, n/(n-1)); Grit (layer 56) replaced by a no-op',
        'bn': {'momentum': 0.03, 'eps': 1e-3, 'set_by': "upstream utils/torch_utils.py initialize_weights",
               'modules_not_updated_by_net_forward': bn_unchanged},
        'weights': {'file': 'weights.gguf', 'dropped_state_dict_entries': dropped},
        'net': {
            'input': {'file': 'net.input.npy', 'shape': list(x.shape), 'batch': NET_BATCH, 'height': NET_HW[0],
                      'width': NET_HW[1], 'images': 'crops of examples/data/horses.jpg (make_fixtures.load_images)'},
            'outputs': [{'name': k, 'file': f'net.out.{k}.npy', 'proj': f'net.proj.{k}.npy', 'shape': list(o.shape)}
                        for k, o in zip(OUT_NAMES, outs)],
            'output_order': OUT_NAMES,
            'loss': 'L = sum_k sum(out_k * proj_k); proj_k = torch.randn(shape, generator=Generator().manual_seed(seed)) '
                    'drawn in output_order',
            'grads': 'net.grads.gguf: every parameter with a gradient (state_dict name) + "input" = dL/dx',
            'params_without_grad': vision_no_grad,
            'grit_params_without_grad': 'all %d parameters of model.56 (Grit not run)' %
                                        sum(1 for n in no_grad if n.startswith('model.56.')),
            'bn_after': 'net.bn_after.gguf: running_mean/running_var of every BatchNorm in layers 0..55',
        },
        'blocks': blocks,
        'float32_vs_float64': precision,
        'block_notes': 'Each block is a deep copy taken before the whole-network forward (BN running stats = '
                       'weights.gguf), fed with the (cloned) activations it received in the fp32 whole-network '
                       'forward (blk.*.in*); the reference (out, dx, grads, bn_after) is that block in float64 '
                       'fed with those inputs converted to double; max_abs_diff_vs_network_forward = fp32 '
                       'standalone vs fp32 in-network output; L_b = sum_j sum(out_j * proj_j), proj_j drawn in output order from '
                       'Generator().manual_seed(seed + 1000 + i), i = the block\'s fixed seed index (its '
                       '"projection_seed" is recorded per block). Inputs are the flattened '
                       'positional argument ("path" = index path into it: model.31 gets '
                       '[(24[0],), (25[0], 25[1]), (26[0], 26[1], 26[2]), x30]). '
                       'Inputs without a gradient have no dx file. Keys in blocks.*.gguf: '
                       '"<block>|<state_dict name>" for every block. The head (model.55) has no '
                       'standalone fixture: net.* covers it exactly (its outputs are the network\'s).',
        'detach_points': [
            'DualDPanoptic (TripleDDetect.forward): cv6/cv7 (d3, one-to-one) read x[6:9].detach(); x[6:9] are '
            'the same tensors as x[3:6] (layers 17/20/23), so d3 sends no gradient into the trunk',
            'RepNCSPELAN4B (17, 20, 23): cvcap reads y.detach() (y = concat[y0..y3]); cvcap parameters get '
            'gradients, the trunk gets none through cvcap',
            'DFL conv weights (dfl, dfl2, dfl3) are requires_grad False and DFL is not run in training mode',
        ],
        'head_training_outputs': 'DualDPanoptic.forward in training returns (d, mc, p, s) before any decoding: '
                                 'd = TripleDDetect.forward(x[:-4]) = [d1, d2, d3] raw per-level maps '
                                 'cat(box 64, cls 80); mc = [cat_l cv8[l](x[l]).view(B, 32, -1), '
                                 'cat_l cv9[l](x[3+l]).view(B, 32, -1)]; p = [proto(x[11]), proto2(x[12])]; '
                                 's = [uconv(x[9]), uconv2(x[10])]',
        'finite_difference': {'dtype': 'float64, on the reference run itself (deep copy of the model, .double())',
                              'checked': 'saved gradient (fp64 rounded to fp32) and fp64 autograd within 1e-5 '
                                         'relative of the finite difference; fp32 autograd shown for comparison',
                              'step': 'central, h = %g * '
                              'max(1, |value|)' % FD_STEP, 'results': fd,
                              'stop_gradients': 'perturbed forwards feed cvcap (17/20/23) and head cv6/cv7 the '
                                                'inputs of the unperturbed forward (what .detach() means for '
                                                'the gradient); element = largest |grad| of 64 random ones'},
    }
    if full:
        del meta['blocks'], meta['block_notes'], meta['tiny_div'], meta['tiny_psa_div']
        meta['variant'] = ('full: upstream models/caption/gyolo.yaml unmodified (nc %d), built like '
                           'make_fixtures.py --variant full (torch.manual_seed(seed), randomize(seed)), '
                           'not fused, not halved; Grit with its own config and the vocabulary %s; '
                           'whole network only (no per-block fixtures)' % (model.yaml['nc'], args.vocab))
        meta['references'] = ('upstream autograd in float64: net.out.*, net.grads.gguf (incl. "input") and '
                              'net.bn_after.gguf come from the same train-mode forward and backward run on a deep '
                              'copy of the fp32 model converted with .double() (parameters and BN buffers), fed '
                              'with the fp32 input (net.input) and the fp32 projections converted to double, then '
                              'rounded to float32. The input, projections and weights.gguf are float32 from the '
                              'float32 run. Upstream autograd in float32 is run too, only for "float32_vs_float64"; '
                              'it is not saved.')
        meta['parameters'] = sum(p.numel() for p in model.parameters())
    with open(os.path.join(args.out, 'manifest.json'), 'w') as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    total = sum(os.path.getsize(os.path.join(args.out, fn)) for fn in os.listdir(args.out))
    log(f'fixtures written to {args.out}: {len(os.listdir(args.out))} files, {total / 1e6:.2f} MB')


if __name__ == '__main__':
    main()
