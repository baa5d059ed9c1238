#!/usr/bin/python3
"""Caption-head (Grit, layer 56) reference fixtures for the gyolo C++ port, from upstream.

Upstream code is NOT part of this repository: pass its checkout with --upstream.

  /usr/bin/python3 weights_tools/make_caption_fixtures.py --upstream /tmp/upstream \
      --out tests/fixtures/caption

What it does (deterministic; re-running reproduces every file byte for byte):
 1. Rebuilds the tiny model of make_fixtures.py (same yaml, Grit patch and seed), saves it like
    make_fixtures.py does and checks that every tensor is bit-identical to the committed
    tests/fixtures/tiny/tiny.gguf: the C++ tests load that file, no new weights file is committed.
 2. Loads it like caption/predict.py, then replaces three decoder tensors by crafted ones, written
    to tiny_override.*.npy (listed in manifest.json 'overrides') and applied by the C++ tests with
    load_options::tensor_overrides:
      - the cross-attention query weights (vis_att1/vis_att2 fc_q) x Q_SCALE: sharper attention, so
        the captions depend on the image;
      - the logits layer (cap_generator.fc.weight, [100, 128]): all rows x FC_SCALE, a peaked word
        distribution, so that beam ranking is decided by clear margins rather than by rounding (the
        smallest gap is printed and kept in manifest.json); rows EOS (3) and PAD (0) shifted along
        the direction of the decoder's final LayerNorm bias, which raises their logits for every
        input: beams finish early and are padded, and live beams sometimes pick PAD as a word (then
        the decoder's mask_pad and PAD-key masking matter; manifest.json counts these events).
 3. Runs upstream at three input sizes (128x128; 160x128 with a batch of two different images;
    128x192) and records tokens, log-probs, the region-token indices (top-300), the semantic
    arg-max positions and the step-0 log-probs; at 128x128 also the Grit inputs and per-stage
    outputs (region tokens, cv4 features, grid_net output, step-1 log-probs).
 4. Writes tie-order vectors for torch.sort / torch.topk / torch.max(dim) (values with many ties),
    and detokenization cases computed with an implementation of HF BertTokenizer's slow decode
    (spec §6.7) for a synthetic vocabulary, the tiny vocabulary and the full vocab.txt.

  --time-full: times upstream's eager Grit forward on the full random model of make_fixtures.py
  (/tmp/full_ref/gyolo_random.pt and its input.npy), 2 threads; see docs/caption.md.
"""
import argparse
import copy
import hashlib
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_fixtures as mf  # noqa: E402
import convert as gconv  # noqa: E402

CG = 'model.56.grit_transformer.cap_generator'
FC_NAME = CG + '.fc.weight'
FC_SCALE = 4.0
EOS_SHIFT = 1.2
PAD_SHIFT = 1.4
Q_SCALE = 8.0     # cross-attention query weights (vis_att1/2 fc_q) x Q_SCALE: sharper, image-dependent attention
EOS, PAD = 3, 0

# name, height, width, crop indices (horses.jpg crops of make_fixtures.load_images)
CASES = [('c128', 128, 128, [0]), ('c160x128_b2', 160, 128, [0, 1]), ('c128x192', 128, 192, [2])]
STAGES_CASE = 'c128'

SPECIALS = ['[UNK]', '[SEP]', '[PAD]', '[CLS]', '[MASK]']
CLEANUP = [(" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
           (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")]


def log(*a):
    print('[make_caption_fixtures]', *a, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# detokenization: HF slow BertTokenizer.decode(skip_special_tokens=True) + str.capitalize()
# --------------------------------------------------------------------------------------------

def hf_decode(vocab_lines, ids):
    """Spec §6.7, written from HF's tokenization_bert / tokenization_utils logic (transformers 4.46)."""
    vocab = {}
    for i, tok in enumerate(vocab_lines):          # load_vocab: a repeated string keeps its last index
        vocab[tok] = i
    ids_to_tokens = {i: t for t, i in vocab.items()}
    unk = '[UNK]'
    special_ids = {vocab.get(s, vocab.get(unk)) for s in SPECIALS} - {None}
    tokens = []
    for i in ids:                                   # convert_ids_to_tokens(skip_special_tokens=True)
        i = int(i)
        if i in special_ids:
            continue
        tokens.append(ids_to_tokens.get(i, unk))
    # _decode: tokens that are special strings are skipped (the pad token excepted)
    tokens = [t for t in tokens if not (t in SPECIALS and t != '[PAD]')]
    text = ' '.join(tokens).replace(' ##', '').strip()   # convert_tokens_to_string
    for a, b in CLEANUP:                                   # clean_up_tokenization
        text = text.replace(a, b)
    return text.capitalize()


SYNTH_VOCAB = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'a', 'man', '', 'riding', '\\n', 'horse', "'s", "n't",
               '.', ',', '?', '!', "'", 'is', "'m", "'ve", "'re", '(', ')', '##ing', 'the', '', '\\n', 'dog', 'Big',
               '[MASK]', 'it', 'do', '\t', ' x', 'ok ', "'ll", 'ABC', 'e.g', "'", 'x', 'y']


def detok_cases(rng):
    out = {}
    # synthetic vocabulary: duplicate holes (7, 9, 4 -> later copies), punctuation, case, whitespace
    sv = SYNTH_VOCAB
    hand = [[5, 6, 11, 10], [32, 12, 6], [6, 13, 14, 15, 16], [31, 18, 17, 40, 17, 41], [31, 19, 20, 21], [29, 28, 37],
            [7, 5, 9, 6], [26, 5, 27, 6], [4, 30, 2, 3, 0, 1, 5], [33, 5, 33], [34, 6, 35], [22, 6, 23], [8, 24],
            [37], [], [0, 0, 0], [2, 3], [-1, 5, 99, 6], [39, 11, 36, 38], [11], [12, 5], [17, 17], [13, 13, 5]]
    rand = [list(rng.integers(-2, len(sv) + 3, size=int(rng.integers(1, 21)))) for _ in range(300)]
    out['synthetic'] = {'vocab': sv, 'cases': [[list(map(int, c)), hf_decode(sv, c)] for c in hand + rand]}
    return out


def add_vocab_cases(out, key, vocab, rng, n=200, extra=()):
    V = len(vocab)
    cases = [list(map(int, c)) for c in extra]
    for _ in range(n):
        L = int(rng.integers(1, 21))
        cases.append([int(x) for x in rng.integers(0, V, size=L)])
    out[key] = {'vocab_size': V, 'vocab_sha256': hashlib.sha256('\n'.join(vocab).encode('utf-8')).hexdigest(),
                'cases': [[c, hf_decode(vocab, c)] for c in cases]}


# --------------------------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------------------------

def load_images_u8(h, w, crops_idx):
    """make_fixtures.load_images, but the chosen crops, and uint8 (x / 255 gives its float input)."""
    import cv2
    im0 = cv2.imread(mf.HORSES)
    H0, W0 = im0.shape[:2]
    crops = [(0, 0, H0, W0), (H0 // 6, W0 // 5, H0, W0 * 4 // 5), (0, W0 // 3, H0 * 2 // 3, W0)]
    out = []
    for i in crops_idx:
        y0, x0, y1, x1 = crops[i]
        c = cv2.resize(im0[y0:y1, x0:x1], (w, h), interpolation=cv2.INTER_AREA)
        out.append(np.ascontiguousarray(c[:, :, ::-1].transpose(2, 0, 1)))
    return np.stack(out)


def build_tiny(Y, upstream, vocab_path, seed, pt, committed_gguf):
    import torch
    import yaml
    full_cfg = yaml.safe_load(open(os.path.join(upstream, 'models/caption/gyolo.yaml')))
    cfg = mf.tiny_yaml(full_cfg)
    grit_patch = dict(mf.TINY_GRIT, vocab_size=mf.TINY_VOCAB_N, grid_feat_dim=max(cfg['head'][1][3][0], 128))
    coco_names = yaml.safe_load(open(mf.DEFAULT_COCO))['names']
    hyp = yaml.safe_load(open(mf.DEFAULT_HYP)) if os.path.exists(mf.DEFAULT_HYP) else None
    torch.manual_seed(seed)
    model = mf.build_model(Y, cfg, grit_patch)
    mf.randomize(model, seed)
    mf.save_stripped(model, pt, coco_names, hyp)
    # The committed GGUF must hold exactly these weights.
    ckpt = torch.load(pt, map_location='cpu')
    sd = ckpt['model'].state_dict()
    kv, tensors = gconv.read_gguf(committed_gguf)
    n = 0
    for k, v in sd.items():
        if not gconv.keep_key(k):
            continue
        a = tensors[k]
        assert a.tobytes() == v.numpy().tobytes(), f'{k} differs from {committed_gguf}'
        n += 1
    assert n == len(tensors), (n, len(tensors))
    log(f'rebuilt tiny checkpoint matches {committed_gguf} ({n} tensors)')
    return kv


class Saver(mf.Saver):
    def save(self, name, t):
        import torch
        if isinstance(t, torch.Tensor):
            t = t.detach().cpu().numpy()
        super().save(name, np.asarray(t))


def run_cases(Y, model, sv, manifest):
    import torch
    import models.grit as G
    grit = model.model[56]
    gt = grit.grit_transformer
    rec = {}

    def pre_grit(mod, args):
        x = args[0]
        rec['in'] = [t.detach().clone() for t in x[:5]]
        out55 = x[-1]
        det, sem = out55[1][0], out55[1][-1]
        B = det[0].shape[0]
        _, cls = torch.cat([xi.view(B, grit.no, -1) for xi in det], 2).split((grit.reg_max * 4, grit.nc), 1)
        m = torch.max(cls, dim=1)[0]
        rec['cls_max'] = m.clone()
        rec['topk'] = torch.topk(m, k=grit.k)[1]
        from einops import rearrange
        rec['sem_idx'] = rearrange(sem.detach().float(), 'b c h w -> (h w) c b').max(dim=0)[1].permute(1, 0)

    def pre_gt(mod, args):
        images = args[0]
        rec['gri_feat'] = images['gri_feat'].detach().clone()
        rec['reg_feat'] = images['reg_feat'].detach().clone()

    def post_grid(mod, args, out):
        rec['grid_out'] = out[0][:, -1].detach().clone()

    def post_cap(mod, args, out):
        rec.setdefault('logp', []).append(out.detach().clone())

    sel_log = []
    events = {'live_pad_picks': 0, 'eos_picks': 0, 'word_picks': 0}
    orig_select = G.Transformer.select

    def select(self, t, cand, beam_size, **kw):
        idx, lp = orig_select(self, t, cand, beam_size, **kw)
        top = torch.sort(cand.reshape(cand.shape[0], -1), -1, descending=True)[0][:, :beam_size + 1]
        sel_log.append(top.clone())
        V = cand.shape[-1]
        live = self.seq_mask.reshape(cand.shape[0], -1)[:, :cand.shape[1]]
        for bi in range(idx.shape[0]):
            for k in range(beam_size):
                b, w = int(idx[bi, k]) // V, int(idx[bi, k]) % V
                if live[bi, b] > 0:
                    events['live_pad_picks' if w == PAD else 'eos_picks' if w == EOS else 'word_picks'] += 1
        return idx, lp

    G.Transformer.select = select
    hooks = [grit.register_forward_pre_hook(pre_grit), gt.register_forward_pre_hook(pre_gt),
             gt.grid_net.register_forward_hook(post_grid), gt.cap_generator.register_forward_hook(post_cap)]
    min_gap = float('inf')
    try:
        for name, h, w, crops in CASES:
            rec.clear()
            sel_log.clear()
            u8 = load_images_u8(h, w, crops)
            x = torch.from_numpy(u8.astype(np.float32) / 255.0)
            if crops == list(range(len(crops))):   # same pixels as make_fixtures.load_images
                assert np.array_equal(x.numpy(), mf.load_images(h, w, len(crops)))
            mf.set_caption_params(model, x)
            with torch.no_grad():
                o = model(x)
            tokens, logp = o['captions']
            sv.save(f'{name}.input_u8', u8)
            sv.save(f'{name}.tokens', tokens.to(torch.int64))
            sv.save(f'{name}.logprobs', logp)
            sv.save(f'{name}.topk_index', rec['topk'].to(torch.int64))
            sv.save(f'{name}.semantic_pos', rec['sem_idx'].to(torch.int64))
            sv.save(f'{name}.logp_step0', rec['logp'][0].reshape(x.shape[0], -1))
            if name == STAGES_CASE:
                for k, t in zip(['x17', 'x20', 'x23', 'x11', 'x44'], rec['in']):
                    sv.save(f'{name}.grit_in.{k}', t)
                sv.save(f'{name}.cls_max', rec['cls_max'])
                sv.save(f'{name}.region_tokens', rec['reg_feat'])
                sv.save(f'{name}.grid_features', rec['gri_feat'])
                sv.save(f'{name}.grid_out', rec['grid_out'])
                sv.save(f'{name}.logp_step1', rec['logp'][1].reshape(x.shape[0] * 5, -1))
            # ranking margins: gaps between consecutive kept candidates and to the first dropped one
            gaps = []
            for top in sel_log:
                d = (top[:, :-1] - top[:, 1:]).abs()
                d = d[d > 0]                      # exact ties (e.g. -999 rows) are resolved by index order
                if d.numel():
                    gaps.append(float(d.min()))
            g = min(gaps)
            min_gap = min(min_gap, g)
            manifest.setdefault('cases', {})[name] = {
                'shape': list(x.shape), 'crops': crops, 'tokens': tokens.tolist(),
                'min_rank_gap': g}
            log(name, tuple(x.shape), 'tokens', tokens.tolist(), f'min rank gap {g:.4g}')
    finally:
        G.Transformer.select = orig_select
        for hk in hooks:
            hk.remove()
    manifest['min_rank_gap'] = min_gap
    manifest['selection_events'] = events
    log('selections by live beams:', events)


def tie_vectors(sv):
    """torch.sort(descending) / torch.topk / torch.max(dim=0) on values with many ties."""
    import torch
    g = torch.Generator().manual_seed(7)
    vals, idxs, cases = [], [], []
    ov = oi = 0

    def add(kind, x, idx, k):
        nonlocal ov, oi
        x = x.reshape(-1).float().numpy()
        idx = idx.reshape(-1).to(torch.int64).numpy()
        cases.append([kind, x.size, k, ov, oi, idx.size])
        vals.append(x)
        idxs.append(idx)
        ov += x.size
        oi += idx.size

    for n, levels in [(5, 2), (16, 2), (17, 2), (60, 5), (500, 3), (2000, 7), (5 * 100, 40)]:
        x = torch.randint(0, levels, (n,), generator=g).float()
        add(0, x, torch.sort(x, descending=True)[1], 0)
    for n, k, levels in [(336, 300, 5), (420, 300, 3), (504, 300, 9), (2100, 300, 4), (8400, 300, 20), (1000, 10, 3),
                         (640, 10, 2), (300, 300, 2)]:
        x = torch.randint(0, levels, (n,), generator=g).float()
        add(1, x, torch.topk(x, k)[1], k)
    for n, c, levels in [(1024, 20, 3), (40, 7, 2)]:
        x = torch.randint(0, levels, (n, c), generator=g).float()
        add(2, x, x.max(dim=0)[1], c)
    sv.save('ties.values', np.concatenate(vals).astype(np.float32))
    sv.save('ties.index', np.concatenate(idxs).astype(np.int64))
    sv.save('ties.cases', np.array(cases, dtype=np.int64))


# --------------------------------------------------------------------------------------------
# timing (full model, local only)
# --------------------------------------------------------------------------------------------

def time_full(Y, pt, input_npy, reps, threads):
    import torch
    torch.set_num_threads(threads)
    model = mf.load_like_predict(Y, pt)
    x = torch.from_numpy(np.load(input_npy))
    grit = model.model[56]
    cap = {}

    def pre(mod, args):
        cap['x'] = [t if not isinstance(t, torch.Tensor) else t.detach().clone() for t in args[0]]
    hk = grit.register_forward_pre_hook(pre)
    mf.set_caption_params(model, x)
    with torch.no_grad():
        o = model(x)
    hk.remove()
    ref_tokens = o['captions'][0]
    times = []
    with torch.no_grad():
        for _ in range(reps):
            xs = list(cap['x'])
            t0 = time.perf_counter()
            tokens, _ = grit(xs)
            times.append(time.perf_counter() - t0)
            assert torch.equal(tokens, ref_tokens)
    print(json.dumps({'torch_threads': threads, 'input': list(x.shape), 'grit_forward_ms': [round(t * 1e3, 1) for t in times],
                      'tokens': ref_tokens.tolist()}))


def main():
    ap = argparse.ArgumentParser(description='caption-head fixtures from upstream')
    ap.add_argument('--upstream', required=True)
    ap.add_argument('--out', default=os.path.join(HERE, '..', 'tests', 'fixtures', 'caption'))
    ap.add_argument('--tiny-gguf', default=os.path.join(HERE, '..', 'tests', 'fixtures', 'tiny', 'tiny.gguf'))
    ap.add_argument('--seed', type=int, default=20240601, help='make_fixtures.py seed of the tiny model')
    ap.add_argument('--vocab', default=mf.DEFAULT_VOCAB)
    ap.add_argument('--work', default='/tmp/gyolo_caption', help='scratch folder (checkpoint, tiny vocab)')
    ap.add_argument('--time-full', action='store_true', help='time upstream Grit on the full random model')
    ap.add_argument('--full-pt', default='/tmp/full_ref/gyolo_random.pt')
    ap.add_argument('--full-input', default='/tmp/full_ref/input.npy')
    ap.add_argument('--reps', type=int, default=5)
    ap.add_argument('--threads', type=int, default=2)
    args = ap.parse_args()
    upstream = os.path.abspath(args.upstream)

    if args.time_full:
        Y = mf.setup_upstream(upstream, args.vocab)
        time_full(Y, args.full_pt, args.full_input, args.reps, args.threads)
        return

    import torch
    os.makedirs(args.work, exist_ok=True)
    vocab_full = open(args.vocab, encoding='utf-8').read().split('\n')
    vocab_tiny = vocab_full[:mf.TINY_VOCAB_N]
    vocab_path = os.path.join(args.work, 'tiny_vocab.txt')
    with open(vocab_path, 'w', encoding='utf-8') as f:
        f.write('\n'.join(vocab_tiny))
    Y = mf.setup_upstream(upstream, vocab_path)
    pt = os.path.join(args.work, 'tiny.pt')
    kv = build_tiny(Y, upstream, vocab_path, args.seed, pt, args.tiny_gguf)
    assert kv['gyolo.vocab'] == vocab_tiny
    model = mf.load_like_predict(Y, pt)
    cg = model.model[56].grit_transformer.cap_generator

    # crafted decoder tensors
    sv = Saver(args.out)
    overrides = {}
    with torch.no_grad():
        W = cg.fc.weight.detach().clone() * FC_SCALE
        beta = cg.layers[-1].pwff.layer_norm.bias.detach()
        u = beta / beta.norm() ** 2
        W[EOS] += FC_SCALE * EOS_SHIFT * u
        W[PAD] += FC_SCALE * PAD_SHIFT * u
        cg.fc.weight.copy_(W)
        overrides[FC_NAME] = ('tiny_override.fc', W)
        for k, att in (('vis_att1', cg.layers[0].vis_att1), ('vis_att2', cg.layers[0].vis_att2)):
            q = att.attention.fc_q.weight.detach() * Q_SCALE
            att.attention.fc_q.weight.copy_(q)
            overrides[f'{CG}.layers.0.{k}.attention.fc_q.weight'] = (f'tiny_override.{k}_q', q.clone())
    for name, (fn, t) in overrides.items():
        sv.save(fn, t.float())
    manifest = {'tiny_gguf': 'tests/fixtures/tiny/tiny.gguf', 'seed': args.seed,
                'overrides': {name: fn for name, (fn, _) in overrides.items()},
                'fc_scale': FC_SCALE, 'eos_shift': EOS_SHIFT, 'pad_shift': PAD_SHIFT, 'q_scale': Q_SCALE,
                'torch': torch.__version__}
    run_cases(Y, model, sv, manifest)
    tie_vectors(sv)

    rng = np.random.default_rng(11)
    dt = detok_cases(rng)
    add_vocab_cases(dt, 'tiny', vocab_tiny, rng, extra=[manifest['cases'][c]['tokens'][0] for c, *_ in CASES] +
                    [[25, 58, 25, 30, 39, 26, 26, 5, 93, 46, 26, 31, 46, 94, 30, 25, 30, 30, 87, 30]])
    add_vocab_cases(dt, 'full', vocab_full, rng, extra=[[87, 5, 2110, 6, 5209, 3088, 8709, 5338, 3], [130, 1426, 4412, 6326, 9326, 9327],
                                                        [1043, 1555, 3506, 3585, 2786, 4211, 5483, 7425, 8198, 8199, 8718]])
    for name, *_ in CASES:   # expected caption text of each case (tiny vocabulary)
        manifest['cases'][name]['text'] = [hf_decode(vocab_tiny, t) for t in manifest['cases'][name]['tokens']]
    with open(os.path.join(args.out, 'detok_cases.json'), 'w', encoding='utf-8') as f:
        json.dump(dt, f, indent=0, ensure_ascii=True)
    sv.write_manifest(manifest)
    log('caption fixtures written to', args.out)


if __name__ == '__main__':
    main()
