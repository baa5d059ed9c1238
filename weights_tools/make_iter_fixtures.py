#!/usr/bin/python3
"""One whole training iteration of upstream (caption/train.py's loop body) on the TINY variant: the
reference for gyolo's training step (Training II).

    /usr/bin/python3 weights_tools/make_iter_fixtures.py --upstream /tmp/upstream --out /tmp/iter \
        [--ni 50] [--nb 100] [--iters 1]

Upstream code is NOT part of this repository: pass its checkout with --upstream.  The model is the
tiny variant built as make_train_fixtures.py builds it (same seed), so its weights are those of
tests/fixtures/train/weights.gguf (checked bit-exact here).  What runs, per iteration, is train.py's
loop body with upstream's own pieces: custom_optimizer(model, hyp, 'AdamW') and LambdaLR with
one_flat_cycle (60 epochs), the warm-up (nw = max(round(0.6 nb), 100)), ModelEMA, ComputeLossLH
(overlap=False) and ComputeCaptionLoss, clip_grad_norm_ (non-Grit 10, Grit caption_clip_max_norm),
for task in (vision, language): forward in train mode, loss, backward, clip, step that task's
optimizer, zero its gradients, EMA update.  Differences from a real run, on purpose: no AMP (CPU),
every nn.Dropout in eval mode (p = 0 is the only reproducible dropout), the batch is synthetic
(`imgs` and `ori_imgs` are two different crops of the sample image; random boxes, per-instance
elliptic masks, random semantic maps and caption ids).

Written to --out (float32 unless said):
  batch.imgs, batch.ori_imgs [B, 3, H, W]; batch.targets [n, 6]; batch.masks [n, H/4, W/4];
  batch.semasks [B, S, H/4, W/4]; batch.caps [B, L] int64                              (.npy)
  iter<i>.items_vision [6], iter<i>.loss_vision [1], iter<i>.loss_caption [1]              (.npy)
  iter<i>.lr [2, 3] float64: the two optimizers' group learning rates used at iteration i  (.npy)
  iter<i>.grads.gguf: grad_vision.<name>, grad_language.<name>: every parameter's gradient right
      before that pass's optimizer step, after clipping (absent where .grad is None)
  iter<i>.state.gguf: <name> for every parameter and BatchNorm buffer after the iteration, and
      ema.<name> for the EMA's
  manifest.json

With --compact DIR (committed as tests/fixtures/iter/), the first iteration in a form small enough
for CI: batch.npz (train.py's loop variables as np.savez writes them: uint8 images, masks and
semantic maps, float targets, int64 caption ids, all-false src_masks, cap_masks); iter0.grads.gguf
with every gradient the optimizers step (grad_vision.* for the trunk and heads, grad_language.model.56.*
for Grit) as float16 scaled to max|g| = 1 (`<name>`) and its scale (`scale.<name>`, f32);
iter0.delta.gguf with, for every parameter, BatchNorm buffer and EMA tensor, [sum d, sum d^2,
max|d|, n] (float32, computed in float64) of d = value after the iteration - value before; the
losses, learning rates and manifest as above.
"""
import argparse
import collections
import contextlib
import copy
import json
import os
import sys
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import convert as gconv  # noqa: E402
import make_fixtures as MF  # noqa: E402
import make_train_fixtures as MT  # noqa: E402
import make_grit_train_fixtures as MGT  # noqa: E402  (its float64 helper)

HW = (128, 160)  # Grit selects 300 anchors: 16*20 + 8*10 + 4*5 = 420
BATCH = 2
CAP_LEN = 7


def log(*a):
    print('[iter]', *a, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--upstream', required=True)
    ap.add_argument('--out', required=True)
    ap.add_argument('--seed', type=int, default=20240601, help="make_train_fixtures.py's seed")
    ap.add_argument('--vocab', default=MF.DEFAULT_VOCAB)
    ap.add_argument('--train-weights', default=None,
                    help='default: tests/fixtures/train/weights.gguf (tiny), /tmp/train_full/weights.gguf (full: make_train_fixtures.py '
                         '--variant full --out /tmp/train_full)')
    ap.add_argument('--variant', choices=['tiny', 'full'], default='tiny',
                    help='tiny (CI) or full (gyolo.yaml unmodified, built as make_train_fixtures.py --variant full; local)')
    ap.add_argument('--hw', default=None, help='input H,W (default 128,160 tiny; 256,320 full)')
    ap.add_argument('--work', default='/tmp/gyolo_iter', help='scratch dir (tiny vocab)')
    ap.add_argument('--ni', type=int, default=50, help='integrated batch index of the first iteration')
    ap.add_argument('--nb', type=int, default=100, help='batches per epoch (sets the warm-up length)')
    ap.add_argument('--iters', type=int, default=1)
    ap.add_argument('--optimizer', choices=['AdamW', 'SGD'], default='AdamW', help="train.py --optimizer")
    ap.add_argument('--batch-seed', type=int, default=None, help='seed of the synthetic batch (default: --seed + 7)')
    ap.add_argument('--compact', default=None,
                    help='also write the CI-sized reference of the FIRST iteration to this directory (see below)')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--double', action='store_true',
                    help='run the iteration in float64 (model, batch, optimizer state, EMA); written as float32')
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    global HW
    if args.hw:
        HW = tuple(int(v) for v in args.hw.split(','))
    elif args.variant == 'full':
        HW = (256, 320)
    if args.train_weights is None:
        args.train_weights = ('/tmp/train_full/weights.gguf' if args.variant == 'full'
                              else os.path.join(HERE, '..', 'tests', 'fixtures', 'train', 'weights.gguf'))

    Y = MF.setup_upstream(args.upstream, args.vocab)
    import torch
    import yaml
    torch.set_num_threads(args.threads)
    tb = types.ModuleType('torch.utils.tensorboard')  # train.py's logger import; tensorboard is not installed
    tb.SummaryWriter = object
    sys.modules['torch.utils.tensorboard'] = tb
    import caption.train as T
    import utils.caption.loss_tal_dual as LTD
    from utils.general import one_flat_cycle
    from utils.torch_utils import ModelEMA
    sys.path.insert(0, HERE)
    import make_loss_fixtures as MLF
    LTD.sigmoid_focal_loss = MLF.sigmoid_focal_loss  # torchvision is not installed

    if args.variant == 'full':
        model = MT.build_full(Y, args.upstream, args.seed)
    else:
        model, _, _ = MT.build_tiny(Y, args.upstream, args.vocab, args.seed, args.work)
    _, wt = gconv.read_gguf(args.train_weights)
    n_eq = 0
    for k, v in model.state_dict().items():
        name = 'model.' + k if not k.startswith('model.') else k
        if not gconv.keep_key(name, training=True):
            continue
        a = v.detach().numpy()
        assert name in wt and wt[name].tobytes() == a.tobytes(), f'{name}: not the weights of {args.train_weights}'
        n_eq += 1
    log(f'{n_eq} tensors equal {args.train_weights} bit-exact')

    hyp = yaml.safe_load(open(MF.DEFAULT_HYP))
    grit = model.model[56]
    hyp['caption_vocab_size'] = grit.config['vocab_size']
    hyp['label_smoothing'] = 0.0
    model.hyp = hyp
    model.nc = 80
    if args.double:
        model.double()
    epochs = 60

    # ---- the batch ----------------------------------------------------------------------------------
    rng = np.random.default_rng(args.seed + 7 if args.batch_seed is None else args.batch_seed)
    imgs = np.ascontiguousarray(MF.load_images(*HW, 3)[:BATCH])
    ori = np.ascontiguousarray(MF.load_images(*HW, 3)[1:1 + BATCH][:, :, :, ::-1])  # other crops, mirrored
    rows = []
    for img, n in ((0, 3), (1, 2)):
        for _ in range(n):
            wh = rng.uniform(0.25, 0.7, 2)
            xy = rng.uniform(wh / 2, 1 - wh / 2)
            rows.append([img, rng.integers(0, 80), *xy, *wh])
    targets = np.array(rows, dtype=np.float32)
    Hm, Wm = HW[0] // 4, HW[1] // 4
    masks = np.zeros((len(rows), Hm, Wm), np.float32)
    yy, xx = np.mgrid[0:Hm, 0:Wm] + 0.5
    for j, r in enumerate(rows):
        cx, cy, w, h = r[2] * Wm, r[3] * Hm, r[4] * Wm, r[5] * Hm
        masks[j] = (((xx - cx) / (w / 2)) ** 2 + ((yy - cy) / (h / 2)) ** 2 <= 1).astype(np.float32)
    S = 173
    semasks = (rng.uniform(0, 1, (BATCH, S, Hm, Wm)) < 0.05).astype(np.float32)
    V = grit.config['vocab_size']
    caps = np.zeros((BATCH, CAP_LEN), np.int64)
    for b, n in enumerate((CAP_LEN - 2, CAP_LEN - 4)):
        caps[b, 0] = hyp['caption_bos_idx']
        caps[b, 1:1 + n] = rng.integers(5, V, n)
        caps[b, 1 + n] = hyp['caption_eos_idx']
    for k, v in (('imgs', imgs), ('ori_imgs', ori), ('targets', targets), ('masks', masks), ('semasks', semasks),
                 ('caps', caps)):
        np.save(os.path.join(args.out, 'batch.%s.npy' % k), v)

    # ---- train.py's set-up ----------------------------------------------------------------------------
    optimizer, optimizer2 = T.custom_optimizer(model, hyp, name=args.optimizer)
    lf, lf2 = one_flat_cycle(1, hyp['lrf'], epochs), one_flat_cycle(1, hyp['lrf'] * 2., epochs)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=lf)
    scheduler2 = torch.optim.lr_scheduler.LambdaLR(optimizer2, lr_lambda=lf2)
    ema = ModelEMA(model)
    compute_loss = LTD.ComputeLossLH(model, overlap=False)
    compute_caption_loss = LTD.ComputeCaptionLoss(model)
    nb, nw = args.nb, max(round(hyp['warmup_epochs'] * args.nb), 100)
    epoch = 0
    caption_idx = 56
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.eval()
    optimizer.zero_grad()
    optimizer2.zero_grad()
    names = [k for k, _ in model.named_parameters()]
    manifest = {'optimizer': args.optimizer, 'variant': args.variant, 'train_weights': os.path.abspath(args.train_weights), 'hw': list(HW),
                'ni': args.ni, 'nb': nb, 'nw': nw, 'epochs': epochs, 'hyp': {k: hyp[k] for k in (
        'lr0', 'lrf', 'momentum', 'weight_decay', 'warmup_epochs', 'warmup_bias_lr', 'caption_clip_max_norm',
        'caption_loss_gain', 'caption_pad_idx')}, 'iters': []}

    # Grit's region selection (top-k of the one-to-one class scores, semantic arg-max) decides which
    # feature columns receive the caption gradient: record how close each pass is to a tie
    gaps = {}

    def grit_pre(mod, a):
        out55 = a[0][5]
        d3, s2 = out55[0][-1], out55[-1][-1]
        nc_, reg = mod.nc, mod.reg_max
        cls = torch.cat([t.detach().view(BATCH, 4 * reg + nc_, -1) for t in d3], 2)[:, 4 * reg:]
        srt = cls.max(1)[0].double().sort(1, descending=True)[0]
        ssrt = s2.detach().double().flatten(2).sort(1, descending=True)[0]
        gaps['topk'] = float((srt[:, mod.k - 1] - srt[:, mod.k]).min())
        gaps['semantic'] = float((ssrt[:, 0] - ssrt[:, 1]).min())
    grit.register_forward_pre_hook(grit_pre)
    init_state = collections.OrderedDict((k, v.detach().to(torch.float64).clone()) for k, v in model.state_dict().items()
                                         if v.dtype.is_floating_point)
    src_masks = torch.zeros((BATCH,) + HW, dtype=torch.bool)
    dt = torch.float64 if args.double else torch.float32
    f64 = MGT.keep_float64() if args.double else contextlib.nullcontext()
    f64.__enter__()  # letterboxed training images: nothing masked
    for it in range(args.iters):
        ni = args.ni + it
        grit.set_params(src_masks, torch.from_numpy(caps), None)
        grads = collections.OrderedDict()
        rec = {'ni': ni}
        lrs = np.zeros((2, 3))
        for i_task in ('vision', 'language'):
            x = torch.from_numpy(imgs if i_task == 'vision' else ori).to(dt)
            if ni <= nw:
                xi = [0, nw]
                for j, g in enumerate(optimizer.param_groups):
                    g['lr'] = np.interp(ni, xi, [hyp['warmup_bias_lr'] if j == 0 else 0.0, g['initial_lr'] * lf(epoch)])
                    if 'momentum' in g:
                        g['momentum'] = np.interp(ni, xi, [hyp['warmup_momentum'], hyp['momentum']])
            pred = model(x)
            rec['selection_gaps_' + i_task] = dict(gaps)
            if i_task == 'vision':
                loss, items = compute_loss(pred['detect'], torch.from_numpy(targets).to(dt), masks=torch.from_numpy(masks).to(dt),
                                           semasks=torch.from_numpy(semasks).to(dt))
                rec['loss_vision'] = float(loss)
                np.save(os.path.join(args.out, 'iter%d.items_vision.npy' % it), items.numpy().astype(np.float32))
                np.save(os.path.join(args.out, 'iter%d.loss_vision.npy' % it), loss.detach().view(1).to(torch.float32).numpy())
            else:
                loss, items = compute_caption_loss(pred['captions'].float(), torch.from_numpy(caps))
                rec['loss_caption'] = float(loss)
                np.save(os.path.join(args.out, 'iter%d.loss_caption.npy' % it), loss.detach().view(1).to(torch.float32).numpy())
            loss.backward()
            torch.nn.utils.clip_grad_norm_([v for k, v in model.named_parameters() if ('.' + str(caption_idx) + '.' not in k)],
                                           max_norm=10.0)
            torch.nn.utils.clip_grad_norm_([v for k, v in model.named_parameters() if ('.' + str(caption_idx) + '.' in k)],
                                           max_norm=hyp['caption_clip_max_norm'])
            pre = 'grad_vision.' if i_task == 'vision' else 'grad_language.'
            for k, v in model.named_parameters():
                if v.grad is not None:
                    grads[pre + k] = v.grad.detach().to(torch.float32).clone()
            opt = optimizer if i_task == 'vision' else optimizer2
            lrs[0 if i_task == 'vision' else 1] = [g['lr'] for g in opt.param_groups]
            opt.step()
            opt.zero_grad()
            ema.update(model)
        np.save(os.path.join(args.out, 'iter%d.lr.npy' % it), lrs)
        MT.write_gguf(os.path.join(args.out, 'iter%d.grads.gguf' % it), 'iter grads', grads)
        if args.compact and it == 0:
            write_compact(args.compact, grads, init_state, model, ema, imgs, ori, targets, masks, semasks, caps, args.out)
        state = collections.OrderedDict()
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                state[k] = v.detach().to(torch.float32).clone()
        for k, v in ema.ema.state_dict().items():
            if v.dtype.is_floating_point:
                state['ema.' + k] = v.detach().to(torch.float32).clone()
        MT.write_gguf(os.path.join(args.out, 'iter%d.state.gguf' % it), 'iter state', state)
        rec['lr'] = lrs.tolist()
        rec['grads'] = len(grads)
        manifest['iters'].append(rec)
        log(f'iteration {it} (ni {ni}): vision loss {rec["loss_vision"]:.6g}, caption loss {rec["loss_caption"]:.6g}, '
            f'lr {lrs.tolist()}, {len(grads)} gradients')
    f64.__exit__(None, None, None)
    manifest['precision'] = 'float64' if args.double else 'float32'
    with open(os.path.join(args.out, 'manifest.json'), 'w') as f:
        json.dump(manifest, f, indent=1)
    if args.compact:
        m1 = dict(manifest)
        m1['iters'] = manifest['iters'][:1]
        m1['compact'] = True
        with open(os.path.join(args.compact, 'manifest.json'), 'w') as f:
            json.dump(m1, f, indent=1)
    del scheduler, scheduler2, names


def write_compact(out, grads, init_state, model, ema, imgs, ori, targets, masks, semasks, caps, full_dir):
    """The CI-sized reference of iteration 0 (see the module docstring)."""
    import shutil
    import torch
    os.makedirs(out, exist_ok=True)
    u8 = lambda a: np.ascontiguousarray(np.rint(a * 255.0).astype(np.uint8))  # noqa: E731
    assert np.array_equal(u8(imgs).astype(np.float32) / 255.0, imgs), 'images are not uint8 / 255'
    # caption/train.py's loop variables as np.savez writes them (what `gyolo train-step --batch` reads)
    np.savez(os.path.join(out, 'batch.npz'), imgs=u8(imgs), ori_imgs=u8(ori), targets=targets, masks=masks.astype(np.uint8),
             semasks=semasks.astype(np.uint8), src_masks=np.zeros((imgs.shape[0],) + imgs.shape[2:], bool), caps=caps,
             cap_masks=caps != 0)
    g16 = collections.OrderedDict()
    kvs = collections.OrderedDict()
    for k, v in grads.items():
        if k.startswith('grad_language.') and not k.startswith('grad_language.model.56.'):
            continue  # the caption pass steps Grit only: its trunk gradients are checked by the local run
        a = v.detach().to(torch.float64).numpy()
        sc = float(np.abs(a).max())
        g16[k] = np.ascontiguousarray((a / sc if sc > 0 else a).astype(np.float16))
        kvs['scale.' + k] = np.array([sc], np.float32)
    arrs = collections.OrderedDict()
    for k, a in g16.items():
        arrs[k] = a
        arrs['scale.' + k] = kvs['scale.' + k]
    kv = [('general.architecture', gconv.GGUF_STRING, 'gyolo.fixture'), ('general.name', gconv.GGUF_STRING, 'iter grads f16'),
          ('general.alignment', gconv.GGUF_UINT32, gconv.ALIGNMENT)]
    head, blobs = gconv.build_gguf(kv, arrs)
    with open(os.path.join(out, 'iter0.grads.gguf'), 'wb') as f:
        f.write(head)
        for b in blobs:
            f.write(b)
    delta = collections.OrderedDict()
    after = collections.OrderedDict((k, v.detach().to(torch.float64)) for k, v in model.state_dict().items() if v.dtype.is_floating_point)
    for k, v in ema.ema.state_dict().items():
        if v.dtype.is_floating_point:
            after['ema.' + k] = v.detach().to(torch.float64)
    for k, v in after.items():
        d = (v - init_state[k[4:] if k.startswith('ema.') else k]).numpy().ravel()
        delta[k] = np.array([d.sum(), (d * d).sum(), np.abs(d).max(), d.size], np.float32)
    MT.write_gguf(os.path.join(out, 'iter0.delta.gguf'), 'iter deltas', delta)
    for n in ('iter0.items_vision.npy', 'iter0.loss_vision.npy', 'iter0.loss_caption.npy', 'iter0.lr.npy'):
        shutil.copy(os.path.join(full_dir, n), os.path.join(out, n))
    log('compact reference written to', out)


if __name__ == '__main__':
    main()
