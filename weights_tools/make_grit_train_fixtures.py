#!/usr/bin/python3
"""Reference forward/backward of the train-mode Grit caption head (layer 56), teacher-forced, from
upstream's own module (PyTorch autograd in float64).

    /usr/bin/python3 weights_tools/make_grit_train_fixtures.py --upstream /tmp/upstream \
        --out tests/fixtures/train_grit [--seed 20240601] [--threads 2]

Upstream code is NOT part of this repository: pass its checkout with --upstream.  The model is the
TINY variant built exactly as make_train_fixtures.py builds it (its build_tiny, same seed), so the
Grit weights are those of tests/fixtures/train/weights.gguf: this script checks that bit-exact and
writes per-tensor checksums (weights_check.gguf) that the C++ test compares before it uses them.
If make_train_fixtures.py changes its model, regenerate train/ first, then this directory.

What is run (caption/train.py's caption pass, as far as Grit is concerned):
  * features: a float32 train-mode forward of layers 0..55 on make_fixtures.load_images(128, 160, 2)
    (128x160 gives A = 16*20 + 8*10 + 4*5 = 420 >= Grit.k = 300 anchors); the arguments layer 56
    receives are captured: [x17, x20, x23, x11, x44, out55], with out55 = head 55's training output
    (d, mc, p, s).  Grit reads det = out55[0][-1] (d3, one-to-one maps) and sem = out55[-1][-1] (s2),
    both .detach()ed inside Grit.
  * Grit alone, in TRAIN mode (its cv3/cv4/cv5 BatchNorms normalise with batch statistics over the
    FULL maps and update their running stats), teacher-forced: set_params(src_mask, caps, None) as
    train.py does (cap_masks are stored by the dataloader but Grit never reads them; seq = caps);
    src_mask is all False, as in training where every ori_img is letterboxed to a square (so the grid
    key mask is all False); Grit returns log-probs [B, L, V] (cap_generator's log_softmax).
  * dropout OFF: every nn.Dropout in Grit is put in eval mode (identity) after .train(); upstream
    trains with p = 0.2 from torch's global RNG, which a port cannot reproduce.
  * the reference runs on a deep copy of the pristine Grit converted with .double() (parameters
    and BN buffers) fed with the float32 features converted to double.  Grit.forward casts its
    features with .float() (identity for the fp32 model); during the float64 run Tensor.float is
    made the identity for float64 tensors (other dtypes, e.g. the bool masks, are converted as usual).

Objectives:
  A) L = sum(logp * proj), proj = torch.randn([B, L, V], generator seed + 2000): logp (out.logp.npy),
     every Grit parameter gradient + the input-feature gradients (grads.gguf), BN running stats after
     the one forward (bn_after.gguf).
  B) upstream's caption loss (utils/caption/loss_tal_dual.py ComputeCaptionLoss, hyp
     caption_loss_gain 0.1, PAD ignored): the value it backpropagates (l_cap * B) in nll.loss.npy
     (float64) and its gradients for the input features and a few parameters (nll.grads.gguf).

Self-checks: files read back bit-exact; the d3 maps, s2 and caption ids get no gradient; fc_alpha2 and
pos_emb get none; float64 central finite differences on a few parameter/input elements agree with
the saved gradients; top-k and semantic arg-max gaps are recorded (manifest "selection").
"""
import argparse
import collections
import copy
import hashlib
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import convert as gconv  # noqa: E402
import make_fixtures as MF  # noqa: E402
import make_train_fixtures as MT  # noqa: E402  (helpers only; that file is not modified)

HW = (128, 160)
BATCH = 2
CAP_LEN = 12                 # the longer caption fills the row (collation trims all-PAD columns)
CAP_LENS = [12, 8]           # tokens incl. BOS and EOS; the rest is PAD
FEATURES = ['x17', 'x20', 'x23', 'x11', 'x44']
NLL_PARAMS = ['grit_transformer.cap_generator.fc.weight', 'grit_transformer.cap_generator.word_emb.weight',
              'grit_transformer.cap_generator.layers.0.fc_alpha1.weight', 'grit_transformer.grid_net.fc.weight',
              'cv3.0.0.conv.weight', 'cv5.1.bn.weight', 'cv4.0.bn.bias']
FD_STEP = 1e-6


def log(*a):
    print('[make_grit_train_fixtures]', *a, file=sys.stderr, flush=True)


class keep_float64:
    """Within the block Tensor.float() leaves float64 tensors as they are (Grit.forward's casts)."""

    def __enter__(self):
        import torch
        self.orig = torch.Tensor.float
        orig = self.orig

        def f(t, *a, **k):
            return t if t.dtype == torch.float64 else orig(t, *a, **k)
        torch.Tensor.float = f

    def __exit__(self, *exc):
        import torch
        torch.Tensor.float = self.orig


def grit_copy(grit, double):
    import torch
    g = copy.deepcopy(grit)
    if double:
        g = g.double()
    g.train()
    n = 0
    for m in g.modules():
        if isinstance(m, torch.nn.Dropout):
            m.eval()      # identity: dropout off (see the module docstring)
            n += 1
    return g, n


def grit_forward(g, feats, d3, s2, caps):
    """Runs Grit like the model does with the captured layer-56 arguments."""
    import torch
    src_mask = torch.zeros((BATCH,) + HW, dtype=torch.bool)   # square letterboxed training images
    g.set_params(src_mask, caps, None)
    out55 = ((None, None, list(d3)), None, None, (None, s2))
    args = list(feats) + [out55]
    if feats[0].dtype == torch.float64:
        with keep_float64():
            return g(args)
    return g(args)


def main():
    ap = argparse.ArgumentParser(description='train-mode Grit reference fixtures from upstream')
    ap.add_argument('--upstream', required=True)
    ap.add_argument('--out', required=True)
    ap.add_argument('--seed', type=int, default=20240601, help='must be make_train_fixtures.py\'s seed')
    ap.add_argument('--vocab', default=MF.DEFAULT_VOCAB)
    ap.add_argument('--train-weights', default=os.path.join(HERE, '..', 'tests', 'fixtures', 'train', 'weights.gguf'))
    ap.add_argument('--work', default='/tmp/gyolo_grit_train', help='scratch dir (tiny vocab), not in the repo')
    ap.add_argument('--threads', type=int, default=2)
    args = ap.parse_args()

    Y = MF.setup_upstream(args.upstream, args.vocab)
    import torch
    torch.set_num_threads(args.threads)
    hyp = MF.DEFAULT_HYP
    import yaml
    hyp = yaml.safe_load(open(hyp)) if os.path.exists(hyp) else {}

    model, _, grit_patch = MT.build_tiny(Y, args.upstream, args.vocab, args.seed, args.work)
    grit = model.model[56]
    assert type(grit).__name__ == 'Grit'
    cfg = grit.config
    V = cfg['vocab_size']

    # ---- the Grit weights are those of tests/fixtures/train/weights.gguf --------------------------
    _, wt = gconv.read_gguf(args.train_weights)
    sd = grit.state_dict()
    check = collections.OrderedDict()
    nw = 0
    for k, v in sd.items():
        if not gconv.keep_key('model.56.' + k, training=True):
            continue
        name = 'model.56.' + k
        assert name in wt, f'{name} missing from {args.train_weights}'
        a = v.detach().numpy()
        assert wt[name].shape == a.shape and wt[name].tobytes() == a.tobytes(), \
            f'{name}: {args.train_weights} holds other weights (regenerate tests/fixtures/train first)'
        a64 = a.astype(np.float64)
        check[name] = np.array([a64.sum(), np.abs(a64).sum(), (a64 * a64).sum()], dtype=np.float32)
        nw += 1
    log(f'{nw} Grit tensors equal {args.train_weights} bit-exact')
    pristine = copy.deepcopy(grit)

    # ---- features: float32 train-mode forward of layers 0..55, layer 56's arguments captured -------
    cap = {}

    def pre(mod, a):
        cap['args'] = a[0]
    model.train()
    h = grit.register_forward_pre_hook(pre)
    MT.disable_grit(model)
    x = torch.from_numpy(np.ascontiguousarray(MF.load_images(*HW, BATCH)))
    with torch.no_grad():
        model(x)
    h.remove()
    a = cap['args']
    feats = [t.detach().clone().contiguous() for t in a[:5]]
    out55 = a[5]
    d3 = [t.detach().clone().contiguous() for t in out55[0][-1]]
    s2 = out55[-1][-1].detach().clone().contiguous()
    assert len(d3) == 3 and s2.shape[1] == 173, (len(d3), s2.shape)
    A = sum(t.shape[2] * t.shape[3] for t in d3)
    log('features', [tuple(t.shape) for t in feats], 'd3', [tuple(t.shape) for t in d3], 's2', tuple(s2.shape),
        'anchors', A)

    # selection margins (the set of the top-k matters; the order of region tokens does not: attention
    # over keys is permutation invariant)
    nc, reg = grit.nc, grit.reg_max
    cls = torch.cat([t.view(BATCH, 4 * reg + nc, -1) for t in d3], 2)[:, 4 * reg:]
    score = cls.max(1)[0].double()
    srt = score.sort(1, descending=True)[0]
    k = grit.k
    topk_gap = [float(srt[b, k - 1] - srt[b, k]) for b in range(BATCH)]
    sflat = s2.double().flatten(2)
    s_srt = sflat.sort(2, descending=True)[0]
    sem_gap = float((s_srt[:, :, 0] - s_srt[:, :, 1]).min())
    log(f'top-{k} boundary gaps {topk_gap}; smallest semantic arg-max gap {sem_gap:.3g}')
    assert min(topk_gap) > 1e-4 and sem_gap > 1e-6, 'near-tied selection: pick another input size'

    # ---- captions -----------------------------------------------------------------------------------
    g = torch.Generator().manual_seed(args.seed + 1000)
    caps = torch.zeros((BATCH, CAP_LEN), dtype=torch.long)
    for b, n in enumerate(CAP_LENS):
        caps[b, 0] = cfg['bos_idx']
        caps[b, 1:n - 1] = torch.randint(4, V, (n - 2,), generator=g)
        caps[b, n - 1] = cfg['eos_idx']
    proj = torch.randn((BATCH, CAP_LEN, V), generator=torch.Generator().manual_seed(args.seed + 2000),
                       dtype=torch.float32)

    # ---- objective A: float32 (statistics only) and float64 reference --------------------------------
    runs = {}
    for double in (False, True):
        gm, ndrop = grit_copy(pristine, double)
        dt = torch.float64 if double else torch.float32
        fin = [t.detach().to(dt).clone().requires_grad_(True) for t in feats]
        d3i = [t.detach().to(dt).clone().requires_grad_(True) for t in d3]
        s2i = s2.detach().to(dt).clone().requires_grad_(True)
        logp = grit_forward(gm, fin, d3i, s2i, caps)
        assert logp.shape == (BATCH, CAP_LEN, V) and logp.dtype == dt, (logp.shape, logp.dtype)
        loss = (logp * proj.to(dt)).sum()
        loss.backward()
        assert all(t.grad is None for t in d3i) and s2i.grad is None, 'Grit must detach d3 and s2'
        runs[double] = (gm, fin, logp, loss)
        log(f'objective A ({dt}): L = {loss.item():.12g}; {ndrop} dropout modules off')
    g64, f64, logp64, loss64 = runs[True]
    g32, f32, logp32, _ = runs[False]

    fs = MT.Files(args.out)
    for fn in os.listdir(args.out):
        if fn.endswith(('.npy', '.gguf')) or fn == 'manifest.json':
            os.unlink(os.path.join(args.out, fn))
    for n, t in zip(FEATURES, feats):
        fs.npy('in.' + n, t)
    for l, t in enumerate(d3):
        fs.npy(f'in.d3_{l}', t)
    fs.npy('in.s2', s2)
    np.save(os.path.join(args.out, 'caps.npy'), caps.numpy())
    fs.files['caps.npy'] = {'shape': list(caps.shape), 'dtype': 'int64'}
    fs.npy('proj', proj)
    fs.npy('out.logp', logp64.detach().float())

    dev = collections.OrderedDict()

    def rel(a32, a64):
        d = (a32.detach().double() - a64.detach()).abs().max().item()
        return d / max(a64.detach().abs().max().item(), 1e-300)
    dev['out.logp'] = rel(logp32, logp64)

    grads, no_grad = collections.OrderedDict(), collections.OrderedDict()
    p32 = dict(g32.named_parameters())
    for n, p in g64.named_parameters():
        name = 'model.56.' + n
        assert (p.grad is None) == (p32[n].grad is None), n
        if p.grad is None:
            no_grad[name] = ('frozen (nn.Embedding.from_pretrained(freeze=True))' if not p.requires_grad else
                             'never used: both gates call fc_alpha1 (upstream quirk)')
        else:
            grads[name] = p.grad.float()
            dev[name] = rel(p32[n].grad, p.grad)
    assert sorted(no_grad) == sorted('model.56.grit_transformer.cap_generator.' + n for n in
                                     ('layers.0.fc_alpha2.weight', 'layers.0.fc_alpha2.bias', 'pos_emb.weight')), no_grad
    pad_row = grads['model.56.grit_transformer.cap_generator.word_emb.weight'][cfg['pad_idx']]
    assert (caps == cfg['pad_idx']).any() and float(pad_row.abs().max()) == 0.0, 'padding_idx row got a gradient'
    for n, t, t32 in zip(FEATURES, f64, f32):
        grads[n] = t.grad.float()
        dev[n] = rel(t32.grad, t.grad)
    fs.gguf('grads.gguf', 'grit.grads', grads, 'objective A: dL/dparam (state_dict names) and dL/d(feature) '
            '(x17, x20, x23, x11, x44); float64 autograd rounded to float32')
    bn_after = collections.OrderedDict()
    for n, m in g64.named_modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            bn_after[f'model.56.{n}.running_mean'] = m.running_mean.float()
            bn_after[f'model.56.{n}.running_var'] = m.running_var.float()
    fs.gguf('bn_after.gguf', 'grit.bn_after', bn_after, 'BN running stats of model.56 after the one forward')
    fs.gguf('weights_check.gguf', 'grit.weights_check', check,
            'per model.56 tensor of train/weights.gguf: [sum, sum|x|, sum x^2] in float64, rounded')

    # ---- objective B: upstream's caption loss ---------------------------------------------------------
    from utils.caption.loss_tal_dual import ComputeCaptionLoss
    gain = float(hyp.get('caption_loss_gain', 0.1))
    holder = torch.nn.Linear(1, 1)
    holder.hyp = {'caption_pad_idx': cfg['pad_idx'], 'caption_vocab_size': V, 'caption_loss_gain': gain}
    closs = ComputeCaptionLoss(holder)
    gb, _ = grit_copy(pristine, True)
    fb = [t.double().requires_grad_(True) for t in feats]
    logpb = grit_forward(gb, fb, [t.double() for t in d3], s2.double(), caps)
    assert torch.equal(logpb, logp64)
    lossb, items = closs(logpb, caps)
    lossb = lossb.sum()
    lossb.backward()
    log(f'objective B: caption loss (l_cap * B) = {lossb.item():.12g} (NLL mean * {gain} * {BATCH})')
    np.save(os.path.join(args.out, 'nll.loss.npy'), np.array([lossb.item()], dtype=np.float64))
    fs.files['nll.loss.npy'] = {'shape': [1], 'dtype': 'float64'}
    ngrads = collections.OrderedDict()
    pb = dict(gb.named_parameters())
    for n in NLL_PARAMS:
        ngrads['model.56.' + n] = pb[n].grad.float()
    for n, t in zip(FEATURES, fb):
        ngrads[n] = t.grad.float()
    fs.gguf('nll.grads.gguf', 'grit.nll.grads', ngrads, 'objective B: gradients of a few parameters and of the '
            'features; float64 autograd rounded to float32')

    fs.check()

    # ---- finite differences (float64, objective A) --------------------------------------------------------
    gfd, _ = grit_copy(pristine, True)
    pfd = dict(gfd.named_parameters())
    xfd = [t.double() for t in feats]
    d3d, s2d, projd = [t.double() for t in d3], s2.double(), proj.double()

    def L():
        with torch.no_grad():
            return (grit_forward(gfd, xfd, d3d, s2d, caps) * projd).sum().item()
    assert abs(L() - loss64.item()) <= 1e-12 * abs(loss64.item())
    rng = np.random.default_rng(args.seed)
    fd = []
    picks = [('param', n) for n in ['grit_transformer.cap_generator.layers.0.vis_att2.attention.fc_k.weight',
                                    'grit_transformer.grid_net.layers.0.mhatt.attention.fc_q.weight',
                                    'cv3.1.0.conv.weight', 'cv5.0.bn.weight',
                                    'grit_transformer.cap_generator.word_emb.weight']]
    picks += [('input', 'x44'), ('input', 'x17')]
    for kind, n in picks:
        t = pfd[n] if kind == 'param' else xfd[FEATURES.index(n)]
        gsaved = (grads['model.56.' + n] if kind == 'param' else grads[n]).numpy().reshape(-1)
        cand = rng.choice(t.numel(), min(64, t.numel()), replace=False)
        idx = int(cand[int(np.argmax(np.abs(gsaved[cand])))])
        flat = t.data.view(-1)
        v0 = flat[idx].item()
        hh = FD_STEP * max(1.0, abs(v0))
        flat[idx] = v0 + hh
        lp = L()
        flat[idx] = v0 - hh
        lm = L()
        flat[idx] = v0
        fdv = (lp - lm) / (2 * hh)
        r = abs(float(gsaved[idx]) - fdv) / max(abs(fdv), 1e-30)
        fd.append({'tensor': n, 'flat_index': idx, 'fd_float64': fdv, 'saved': float(gsaved[idx]), 'rel_err': r})
        log(f'FD {n}[{idx}]: fd {fdv:.9g} saved {float(gsaved[idx]):.9g} (rel {r:.2e})')
        assert r < 1e-5, 'saved gradient disagrees with the finite difference'

    # fc_k biases: analytically zero gradients (a constant added to every key's score cancels in the
    # softmax): the fp64 value is ~1e-15, the fp32 one rounding noise; listed apart
    vanishing = {n: r for n, r in dev.items() if n.endswith('fc_k.bias')}
    worst = sorted(((n, r) for n, r in dev.items() if n not in vanishing), key=lambda kv: -kv[1])[:8]
    meta = {
        'files': fs.files, 'seed': args.seed, 'torch': torch.__version__, 'threads': args.threads,
        'weights': 'tests/fixtures/train/weights.gguf (model.56.*), checked bit-exact by this script; '
                   'weights_check.gguf = per-tensor [sum, sum|x|, sum x^2] for the C++ test',
        'grit_config': cfg, 'grit_config_patch': grit_patch,
        'input': {'images': 'make_fixtures.load_images(%d, %d, %d)' % (HW[0], HW[1], BATCH),
                  'features': 'float32 train-mode forward of layers 0..55 (BN batch statistics) of the '
                              'pristine tiny model; layer 56 arguments [x17, x20, x23, x11, x44, out55]',
                  'd3': 'out55[0][-1]: the one-to-one head raw maps (in.d3_<l>)', 's2': 'out55[-1][-1] (in.s2)',
                  'anchors': A},
        'caps': {'file': 'caps.npy', 'lens': CAP_LENS, 'bos': cfg['bos_idx'], 'eos': cfg['eos_idx'],
                 'pad': cfg['pad_idx'], 'words': 'torch.randint(4, V) with Generator(seed + 1000)'},
        'mode': 'Grit.train() (cv3/cv4/cv5 BatchNorm: batch statistics over the full maps, running stats '
                'updated with momentum 0.03, eps 1e-3), every nn.Dropout in eval mode (identity), src_mask '
                'all False (square training images: grid key mask all False), region mask all False',
        'objective_A': {'loss': 'L = sum(logp * proj); proj = torch.randn([B, L, V], Generator(seed + 2000))',
                        'outputs': 'out.logp.npy', 'grads': 'grads.gguf', 'bn_after': 'bn_after.gguf',
                        'loss_float64': loss64.item()},
        'objective_B': {'loss': 'upstream ComputeCaptionLoss: NLLLoss(ignore_index=PAD)(logp[:, :-1], caps[:, 1:]) '
                                '(mean over non-PAD targets) * caption_loss_gain * B, the value train.py backpropagates',
                        'caption_loss_gain': gain, 'value': 'nll.loss.npy (float64)',
                        'grads': 'nll.grads.gguf: ' + ', '.join(NLL_PARAMS) + ' and the features'},
        'params_without_grad': no_grad,
        'detach_points': ['det = out55[0][-1] (d3) and sem = out55[-1][-1] (s2) are .detach()ed in Grit.forward: '
                          'only their top-k / arg-max indices are used',
                          'pos_emb is frozen; word_emb row PAD (0) gets no gradient (padding_idx)',
                          'fc_alpha2 is never used (both gates use fc_alpha1)'],
        'selection': {'topk': k, 'topk_boundary_gap': topk_gap, 'semantic_argmax_min_gap': sem_gap},
        'float32_vs_float64': {'measure': 'max|fp32 autograd - fp64| / max|fp64| per tensor (not saved)',
                               'worst': [[n, r] for n, r in worst],
                               'vanishing': {n: {'max_abs_float64': float(grads[n].abs().max()),
                                                 'note': 'analytically zero (softmax shift invariance)'}
                                             for n in vanishing}},
        'finite_difference': fd,
        'weights_sha256_train_gguf': hashlib.sha256(open(args.train_weights, 'rb').read()).hexdigest(),
    }
    with open(os.path.join(args.out, 'manifest.json'), 'w') as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    total = sum(os.path.getsize(os.path.join(args.out, fn)) for fn in os.listdir(args.out))
    log(f'worst fp32-vs-fp64: {worst}')
    log(f'fixtures written to {args.out}: {len(os.listdir(args.out))} files, {total / 1e6:.2f} MB')


if __name__ == '__main__':
    main()
