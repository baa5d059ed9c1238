#!/usr/bin/python3
"""Generate reference fixtures for the gyolo C++ port by running upstream GeneralistYOLO.

Upstream code is NOT part of this repository: pass its checkout with --upstream.
Missing third-party packages are replaced by the stand-ins in _upstream_stubs.py.

  tiny variant (committed fixtures, vision only + a small caption check):
    /usr/bin/python3 weights_tools/make_fixtures.py --upstream /tmp/upstream \
        --variant tiny --out tests/fixtures/tiny [--ckpt-out /tmp/gyolo_tiny/tiny.pt]

  full variant (local only, large):
    /usr/bin/python3 weights_tools/make_fixtures.py --upstream /tmp/upstream \
        --variant full --out /tmp/full_ref --image /work/shared/data/horses.jpg \
        [--square | --size 320] [--save-ckpt /tmp/full_ref/gyolo_random.pt] [--checkpoint real.pt]

Weights are random but deterministic (--seed).  The checkpoint is saved in
upstream's strip_optimizer form, converted with convert.py, the GGUF is checked
bit-exact against torch's state_dict, and the reference forward loads the saved
checkpoint exactly like caption/predict.py (ema or model -> float -> fuse -> eval).
"""
import argparse
import copy
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _upstream_stubs  # noqa: E402
import convert as gconv  # noqa: E402

DEFAULT_VOCAB = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'vocab.txt')
DEFAULT_COCO = '/work/shared/data/coco.yaml'
DEFAULT_HYP = '/work/shared/data/hyp.scratch-cap.yaml'
HORSES = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'examples', 'data', 'horses.jpg')

# tiny variant settings
TINY_DIV = 8            # channel divisor for every yaml channel argument ...
TINY_PSA_DIV = 2        # ... except SPPELAN (10) / PSA (11): PSA needs c // 64 >= 1 heads (see README)
TINY_VOCAB_N = 100      # tiny Grit vocabulary = first N lines of vocab.txt
CONV_GAIN = 1.5  # conv weight std = CONV_GAIN / sqrt(fan_in): keeps activations O(1) through SiLU+BN
TINY_GRIT = {'d_model': 128, 'n_heads': 4, 'd_ff': 256}   # grid_feat_dim is set from the PSA width

PER_BLOCK = ['model.1', 'model.3', 'model.3.cv2.0', 'model.3.cv2.0.m.0', 'model.3.cv2.0.m.0.cv1', 'model.4',
             'model.10', 'model.11', 'model.11.attn', 'model.12', 'model.13', 'model.17', 'model.43',
             'model.45', 'model.46', 'model.55']
HEAD_INPUTS = [3, 4, 5, 10, 12]   # DualDPanoptic inputs actually used at inference (6..8 == 3..5)


def log(*a):
    print('[make_fixtures]', *a, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# yaml
# --------------------------------------------------------------------------------------------

def tiny_yaml(full):
    y = copy.deepcopy(full)

    def div(v, d):
        assert v % d == 0, v
        return v // d

    for i, layer in enumerate(y['backbone'] + y['head']):
        f, n, m, args = layer
        if m in ('Conv', 'ADown', 'DWConv'):
            args[0] = div(args[0], TINY_DIV)
        elif m in ('RepNCSPELAN4', 'RepNCSPELAN4B'):
            args[0:3] = [div(a, TINY_DIV) for a in args[0:3]]   # c5 (depth) unchanged
        elif m in ('SPPELAN', 'PSA'):
            args[:] = [div(a, TINY_PSA_DIV) for a in args]
        elif m == 'CBLinear':
            args[0] = [div(a, TINY_DIV) for a in args[0]]
        elif m in ('Silence', 'nn.Upsample', 'Concat', 'CBFuse', 'DualDPanoptic', 'Grit', 'OutputLayer'):
            pass
        else:
            raise SystemExit(f'tiny_yaml: unhandled module {m} at layer {i}')
    return y


# --------------------------------------------------------------------------------------------
# upstream set-up, build, randomize, save
# --------------------------------------------------------------------------------------------

def setup_upstream(upstream, vocab):
    _upstream_stubs.install(vocab)
    upstream = os.path.abspath(upstream)
    if upstream not in sys.path:
        sys.path.insert(0, upstream)
    import torch
    torch.set_num_threads(max(1, min(16, os.cpu_count() or 1)))
    import models.yolo as Y  # noqa
    return Y


def build_model(Y, cfg, grit_patch=None):
    """Build SegmentationModel from a yaml path or dict; grit_patch updates Grit's hard-coded config."""
    orig = Y.grit_transformer
    if grit_patch is not None:
        def patched(config=None):
            config.update(grit_patch)        # in place: Grit.config reflects it (pickled)
            return orig(config=config)
        Y.grit_transformer = patched
    try:
        model = Y.SegmentationModel(copy.deepcopy(cfg) if isinstance(cfg, dict) else cfg)
    finally:
        Y.grit_transformer = orig
    return model


def randomize(model, seed):
    import torch
    import torch.nn as nn
    g = torch.Generator().manual_seed(seed)

    def normal(t, std, mean=0.0):
        t.copy_(torch.randn(t.shape, generator=g) * std + mean)

    def uniform(t, lo, hi):
        t.copy_(torch.rand(t.shape, generator=g) * (hi - lo) + lo)

    with torch.no_grad():
        for name, m in model.named_modules():
            tname = type(m).__name__
            if tname == 'DFL' or '.dfl' in name:
                continue  # keep the 0..15 bins (the DFL module and its conv child)
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight.shape[1] * m.weight.shape[2] * m.weight.shape[3]
                normal(m.weight, CONV_GAIN * fan_in ** -0.5)
                if m.bias is not None:
                    normal(m.bias, 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                uniform(m.weight, 0.5, 1.5)
                normal(m.bias, 0.1)
                normal(m.running_mean, 0.1)
                uniform(m.running_var, 0.5, 2.0)
            elif isinstance(m, nn.Linear):
                normal(m.weight, m.weight.shape[1] ** -0.5)
                if m.bias is not None:
                    normal(m.bias, 0.05)
            elif isinstance(m, nn.LayerNorm):
                uniform(m.weight, 0.7, 1.3)
                normal(m.bias, 0.1)
            elif isinstance(m, nn.Embedding):
                normal(m.weight, 0.5)
    return model


def save_stripped(model, path, names, hyp):
    import torch
    m = copy.deepcopy(model)
    m.names = names
    if hyp is not None:
        m.hyp = hyp
    m.half()
    for p in m.parameters():
        p.requires_grad = False
    ckpt = {'epoch': -1, 'best_fitness': None, 'model': m, 'ema': None, 'updates': None, 'optimizer': None,
            'optimizer2': None, 'opt': {}, 'git': None, 'date': None}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save(ckpt, path)
    log('saved checkpoint', path, f'{os.path.getsize(path) / 1e6:.2f} MB')


def run_convert(pt, gguf, vocab):
    cmd = [sys.executable, os.path.join(HERE, 'convert.py'), '--checkpoint', pt, '--out', gguf]
    if vocab:
        cmd += ['--vocab', vocab]
    subprocess.run(cmd, check=True)


def verify_gguf(pt, gguf, vocab):
    """Round-trip check: every kept tensor bit-exact vs torch's own state_dict, metadata sane."""
    import hashlib
    import torch
    ckpt = torch.load(pt, map_location='cpu')
    src = 'ema' if ckpt.get('ema') is not None else 'model'
    model = ckpt[src]
    sd = model.state_dict()
    want = [(k, v) for k, v in sd.items() if gconv.keep_key(k)]
    kv, tensors = gconv.read_gguf(gguf)
    assert list(tensors) == [k for k, _ in want], 'tensor names/order differ from state_dict'
    for k, v in want:
        a = tensors[k]
        ref = v.detach().cpu().numpy()
        assert a.dtype == ref.dtype, (k, a.dtype, ref.dtype)
        assert a.shape == ref.shape, (k, a.shape, ref.shape)
        assert a.tobytes() == ref.tobytes(), f'{k}: bytes differ'
    dropped = [k for k in sd if not gconv.keep_key(k)]
    assert not any(k.endswith('num_batches_tracked') for k in tensors)
    assert kv['general.architecture'] == 'gyolo' and kv['gyolo.format_version'] == 1
    assert kv['gyolo.source_key'] == src
    assert kv['gyolo.source_sha256'] == hashlib.sha256(open(pt, 'rb').read()).hexdigest()
    assert json.loads(kv['gyolo.yaml']) == json.loads(json.dumps(model.yaml))
    assert kv['gyolo.nc'] == model.yaml['nc']
    names = model.names if isinstance(model.names, list) else [model.names[i] for i in range(len(model.names))]
    assert kv['gyolo.names'] == names
    assert np.allclose(kv['gyolo.stride'], model.stride.float().numpy())
    if vocab:
        assert kv['gyolo.vocab'] == open(vocab, encoding='utf-8').read().split('\n')
    log(f'GGUF verified bit-exact: {len(want)} tensors kept, {len(dropped)} state_dict entries dropped '
        f'({sum(k.endswith("num_batches_tracked") for k in dropped)} num_batches_tracked)')
    return len(want), len(dropped)


def load_like_predict(Y, pt):
    from models.experimental import attempt_load
    model = attempt_load(pt, device='cpu', inplace=True, fuse=True)
    model.float().eval()
    return model


def set_caption_params(model, im):
    from utils.caption.caption_utils import create_src_mask
    grit = model.model[model.cap_layer]
    _, src_mask = create_src_mask(im)   # like predict: all-False [B, H, W]
    grit.set_params(src_mask, None, None, use_beam_search=True, beam_size=5, out_size=1, return_probs=False)


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------

class Saver:
    def __init__(self, out):
        self.out = out
        self.manifest = {}
        os.makedirs(out, exist_ok=True)

    def save(self, name, t):
        import torch
        if isinstance(t, torch.Tensor):
            a = t.detach().cpu()
            a = a.float().numpy() if a.is_floating_point() else a.numpy()
        else:
            a = np.asarray(t)
        if a.dtype == np.float64:
            a = a.astype(np.float32)
        fn = name + '.npy'
        np.save(os.path.join(self.out, fn), np.ascontiguousarray(a))
        self.manifest[fn] = {'shape': list(a.shape), 'dtype': str(a.dtype)}

    def write_manifest(self, extra=None):
        d = {'files': self.manifest}
        if extra:
            d.update(extra)
        with open(os.path.join(self.out, 'manifest.json'), 'w') as f:
            json.dump(d, f, indent=1, sort_keys=True)


def load_images(h, w, n):
    """n deterministic different RGB crops of horses.jpg resized to h x w, as [n,3,h,w] float in [0,1]."""
    import cv2
    im0 = cv2.imread(HORSES)  # BGR
    H0, W0 = im0.shape[:2]
    crops = [(0, 0, H0, W0), (H0 // 6, W0 // 5, H0, W0 * 4 // 5), (0, W0 // 3, H0 * 2 // 3, W0)]
    out = []
    for i in range(n):
        y0, x0, y1, x1 = crops[i % len(crops)]
        c = cv2.resize(im0[y0:y1, x0:x1], (w, h), interpolation=cv2.INTER_AREA)
        out.append(c[:, :, ::-1].transpose(2, 0, 1).astype(np.float32) / 255.0)
    return np.stack(out)


def tiny_fixtures(Y, model, out, meta):
    import torch
    sv = Saver(out)
    grit = model.model[56]
    mods = dict(model.named_modules())
    hooks = []

    def hook_for(name):
        base = name.replace('.', '_')

        def fn(mod, inp, outp):
            xs = inp[0] if (len(inp) == 1 and isinstance(inp[0], (list, tuple))) else inp
            if name == 'model.55':
                for k in HEAD_INPUTS:
                    sv.save(f'{base}.in{k}', xs[k])
                pred, (d3, mc2, p2, s2) = outp
                sv.save(f'{base}.out.pred', pred)
                for l, d in enumerate(d3):
                    sv.save(f'{base}.out.d3_{l}', d)
                sv.save(f'{base}.out.mc2', mc2)
                sv.save(f'{base}.out.p2', p2)
                sv.save(f'{base}.out.s2', s2)
                return
            for k, x in enumerate(xs):
                sv.save(f'{base}.in{k}', x)
            if isinstance(outp, (list, tuple)):
                for k, o in enumerate(outp):
                    sv.save(f'{base}.out{k}', o)
            else:
                sv.save(f'{base}.out', outp)
        return fn

    # Grit needs >= 300 anchors (top-300): skip it for the small vision-only inputs.
    grit_forward = grit.forward
    grit.forward = lambda x: None
    with torch.no_grad():
        # per-block, batch 1 at 96x128
        for n in PER_BLOCK:
            hooks.append(mods[n].register_forward_hook(hook_for(n)))
        x1 = torch.from_numpy(load_images(96, 128, 1))   # == model_1.in0.npy
        model(x1)
        for h in hooks:
            h.remove()

        # whole graph, batch 2 at 64x96 (A = 126), two different images
        x2 = torch.from_numpy(load_images(64, 96, 2))
        o2m = {}

        def o2m_hook(mod, inp, outp):
            # The main one-to-many head (cv4/cv5/dfl2): upstream computes it and discards it;
            # its commented-out alternative return is cat(y2, mc2).
            xs = inp[0]
            y, _ = mod.detect(mod, xs[:-4])
            o2m['pred'] = torch.cat([y[1], outp[1][1]], 1)
        hk = mods['model.55'].register_forward_hook(o2m_hook)
        pred, (d3, mc2, p2, s2) = model(x2)['detect']
        hk.remove()
        sv.save('graph_b2.pred_o2m', o2m['pred'])
        sv.save('graph_b2.input', x2)
        sv.save('graph_b2.pred', pred)
        sv.save('graph_b2.proto', p2)
        sv.save('graph_b2.semantic', s2)
        sv.save('graph_b2.mc2', mc2)
        for l, d in enumerate(d3):
            sv.save(f'graph_b2.d3_{l}', d)

        # whole graph, batch 1 at 64x64 (A = 84)
        x3 = torch.from_numpy(load_images(64, 64, 1))
        pred, (d3, mc2, p2, s2) = model(x3)['detect']
        sv.save('graph_64.input', x3)
        sv.save('graph_64.pred', pred)

    # caption: batch 1 at 128x128 (A = 336 >= 300), Grit set up like predict.py
    grit.forward = grit_forward
    with torch.no_grad():
        x4 = torch.from_numpy(load_images(128, 128, 1))
        set_caption_params(model, x4)
        o = model(x4)
        pred, (d3, mc2, p2, s2) = o['detect']
        tokens, logp = o['captions']
        sv.save('caption_128.input', x4)
        sv.save('caption_128.tokens', tokens.to(torch.int64))
        sv.save('caption_128.logprobs', logp)
    sv.write_manifest(meta)


def full_fixtures(Y, model, out, image, square, size):
    import cv2
    import torch
    from utils.augmentations import letterbox
    sv = Saver(out)
    stride, imgsz = 32, 640
    im0 = cv2.imread(image)
    if im0 is None:
        raise SystemExit(f'cannot read {image}')
    auto = True
    if size:
        im0 = cv2.resize(im0, (size, size), interpolation=cv2.INTER_AREA)
        path = os.path.join(out, f'image_{size}x{size}.png')
        cv2.imwrite(path, im0)
        log('wrote', path, '(feed this image to the C++ CLI with --imgsz', size, ')')
        imgsz = size
    elif square:
        auto = False
    im = letterbox(im0, imgsz, stride=stride, auto=auto)[0]
    im = np.ascontiguousarray(im.transpose((2, 0, 1))[::-1])  # HWC->CHW, BGR->RGB
    x = torch.from_numpy(im).float()[None] / 255
    set_caption_params(model, x)
    with torch.no_grad():
        o = model(x)
    pred, (d3, mc2, p2, s2) = o['detect']
    tokens, logp = o['captions']
    sv.save('input', x)
    sv.save('pred', pred)
    sv.save('proto', p2)
    sv.save('semantic', s2)
    sv.save('mc2', mc2)
    for l, d in enumerate(d3):
        sv.save(f'd3_{l}', d)
    sv.save('tokens', tokens.to(torch.int64))
    sv.save('logprobs', logp)
    sv.write_manifest({'image': image, 'square': bool(square), 'size': size, 'imgsz': imgsz})
    log('input', tuple(x.shape), 'tokens', tokens.tolist())


def main():
    ap = argparse.ArgumentParser(description='generate gyolo reference fixtures from upstream')
    ap.add_argument('--upstream', required=True, help='upstream GeneralistYOLO checkout')
    ap.add_argument('--variant', choices=['tiny', 'full'], required=True)
    ap.add_argument('--out', required=True)
    ap.add_argument('--seed', type=int, default=20240601)
    ap.add_argument('--vocab', default=DEFAULT_VOCAB)
    ap.add_argument('--ckpt-out', default='/tmp/gyolo_tiny/tiny.pt', help='tiny: where the .pt goes (not in repo)')
    ap.add_argument('--image', default=HORSES, help='full: image to run')
    ap.add_argument('--square', action='store_true', help='full: letterbox to a 640x640 square (auto=False)')
    ap.add_argument('--size', type=int, default=0, help='full: resize image to SIZE x SIZE first, imgsz=SIZE')
    ap.add_argument('--save-ckpt', default=None, help='full: where to save the random full checkpoint')
    ap.add_argument('--checkpoint', default=None, help='full: use this existing checkpoint instead of random')
    ap.add_argument('--gguf', default=None, help='full: also convert the checkpoint to this .gguf')
    args = ap.parse_args()

    import yaml
    Y = setup_upstream(args.upstream, args.vocab)
    full_cfg_path = os.path.join(os.path.abspath(args.upstream), 'models/caption/gyolo.yaml')
    coco_names = yaml.safe_load(open(DEFAULT_COCO))['names']
    hyp = yaml.safe_load(open(DEFAULT_HYP)) if os.path.exists(DEFAULT_HYP) else None

    if args.variant == 'tiny':
        with open(full_cfg_path) as f:
            full_cfg = yaml.safe_load(f)
        cfg = tiny_yaml(full_cfg)
        os.makedirs(args.out, exist_ok=True)
        # tiny vocabulary (first N lines) so word_emb / fc stay small
        vocab_lines = open(args.vocab, encoding='utf-8').read().split('\n')[:TINY_VOCAB_N]
        vocab_path = os.path.join(os.path.dirname(os.path.abspath(args.ckpt_out)), 'tiny_vocab.txt')
        os.makedirs(os.path.dirname(vocab_path), exist_ok=True)
        with open(vocab_path, 'w', encoding='utf-8') as f:
            f.write('\n'.join(vocab_lines))
        grit_patch = dict(TINY_GRIT, vocab_size=TINY_VOCAB_N,
                          grid_feat_dim=max(cfg['head'][1][3][0], 128))   # Grit cv4 width = max(PSA c, 128)
        import torch
        torch.manual_seed(args.seed)
        model = build_model(Y, cfg, grit_patch)
        randomize(model, args.seed)
        with open(os.path.join(args.out, 'model_yaml.json'), 'w') as f:
            json.dump(model.yaml, f, indent=1)
        pt = args.ckpt_out
        save_stripped(model, pt, coco_names, hyp)
        gguf = os.path.join(args.out, 'tiny.gguf')
        run_convert(pt, gguf, vocab_path)
        nkeep, ndrop = verify_gguf(pt, gguf, vocab_path)
        model = load_like_predict(Y, pt)
        tiny_fixtures(Y, model, args.out, {
            'variant': 'tiny', 'seed': args.seed, 'tiny_div': TINY_DIV, 'tiny_psa_div': TINY_PSA_DIV,
            'grit_config_patch': grit_patch, 'gguf_tensors': nkeep, 'state_dict_dropped': ndrop,
            'images': 'crops of horses.jpg resized with cv2.INTER_AREA (see load_images)'})
        log('tiny fixtures written to', args.out)
    else:
        import torch
        if args.checkpoint:
            pt = args.checkpoint
        else:
            torch.manual_seed(args.seed)
            model = build_model(Y, full_cfg_path)
            randomize(model, args.seed)
            pt = args.save_ckpt or os.path.join(args.out, 'gyolo_random.pt')
            save_stripped(model, pt, coco_names, hyp)
            del model
        if args.gguf:
            run_convert(pt, args.gguf, args.vocab)
            verify_gguf(pt, args.gguf, args.vocab)
        model = load_like_predict(Y, pt)
        full_fixtures(Y, model, args.out, args.image, args.square, args.size)
        log('full fixtures written to', args.out)


if __name__ == '__main__':
    main()
