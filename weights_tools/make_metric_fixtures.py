#!/usr/bin/env python3
"""Fixtures for the validation metrics (include/gyolo/train/metrics.hpp), made by upstream's own code.

    /usr/bin/python3 weights_tools/make_metric_fixtures.py --upstream /tmp/upstream \\
        --pycocoevalcap PCE --panopticapi PAPI --out tests/fixtures/metrics

Nothing of upstream is part of this repository; pass the checkouts:
  --upstream       Generalist YOLO (caption/val.py process_batch, utils/caption/metrics.py
                   ap_per_class_box_and_mask / Metrics / Semantic_Metrics / Cap_Metrics)
  --pycocoevalcap  a checkout of github.com/salaniz/pycocoevalcap (its bleu/ and cider/ folders, pure
                   Python; the Java tokenizer is not used)
  --panopticapi    a checkout of github.com/cocodataset/panopticapi (the folder holding panopticapi/)

Written (JSON, all inputs deterministic from fixed seeds):
  det.json       per case: images (preds [x1,y1,x2,y2,conf,cls] float32 values, labels [cls,x1,y1,x2,y2],
                 binary masks as hex of np.packbits: predictions at mask_hw, ground truth at gt_mask_hw, or
                 with overlap one index map (list, pixel = label index + 1) at gt_mask_hw that
                 process_batch upsamples bilinearly and thresholds at 0.5), upstream's per-image correct matrices (box
                 and mask, process_batch) and the summary val.py prints (Metrics.mean_results, per class
                 p, r, ap[10], nt), 'computed' = val.py's gate `stats[0].any()` (any mask TP).
  semantic.json  label maps per image, upstream IoUMetric per-class IoU / Acc (float32) and mIoU (%).
  panoptic.json  id maps + segments per image, panopticapi pq_compute_single_core + pq_average results.
  caption.json   refs/hyps; BLEU-1..4 and CIDEr-D of pycocoevalcap on the captions tokenized by
                 `tokenize` below ('tokenized'), and upstream's training-time Cap_Metrics on the raw
                 strings ('raw': whitespace split only, as caption/val.py does during training).

Confidence ties: the 'ties' case is checked to keep np.argsort(-conf) equal to the stable order (numpy
sorts arrays of <= 16 elements by insertion sort, which is stable); the C++ side sorts stably.
"""
import argparse
import importlib
import json
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

# ----------------------------------------------------------------------------------------- setup


def setup(upstream, pce, papi):
    tmp = tempfile.mkdtemp(prefix='gyolo_metric_fx_')
    # pycocoevalcap as an importable package: the pure-Python scorers plus an inert eval module
    # (upstream's caption_utils imports COCOEvalCap, which needs pycocotools and Java).
    pkg = os.path.join(tmp, 'pycocoevalcap')
    os.makedirs(pkg)
    for sub in ('bleu', 'cider'):
        shutil.copytree(os.path.join(pce, sub), os.path.join(pkg, sub))
        open(os.path.join(pkg, sub, '__init__.py'), 'a').close()
    open(os.path.join(pkg, '__init__.py'), 'w').close()
    with open(os.path.join(pkg, 'eval.py'), 'w') as f:
        f.write('class COCOEvalCap:\n    pass\n')
    sys.path.insert(0, tmp)
    sys.path.insert(0, os.path.abspath(papi))
    import _upstream_stubs
    _upstream_stubs.install(os.environ.get('GYOLO_VOCAB', '/work/shared/data/vocab.txt'))
    up = os.path.abspath(upstream)
    if up not in sys.path:
        sys.path.insert(0, up)
    import torch
    torch.set_num_threads(1)
    return tmp


def f32(x):
    import numpy as np
    return float(np.float32(x))


def mask_str(m):
    """A binary mask as hex: row-major bits, packed big-endian (np.packbits), zero-padded to a byte."""
    import numpy as np
    return np.packbits(m.reshape(-1).astype(bool)).tobytes().hex()


# ------------------------------------------------------------------------------------- detection


def raster(box, mh, mw, scale):
    import numpy as np
    ys = (np.arange(mh) + 0.5) * scale
    xs = (np.arange(mw) + 0.5) * scale
    x1, y1, x2, y2 = box
    return ((ys[:, None] >= y1) & (ys[:, None] <= y2) & (xs[None, :] >= x1) & (xs[None, :] <= x2)).astype(np.uint8)


def det_case(name, rng, n_images, nc, W=96, H=80, mh=20, mw=24, never_pred=(), never_label=(),
             p_pred=0.8, p_dup=0.3, n_fp=(0, 3), conf_set=None, garbage_masks=False, label_count=(1, 5),
             no_pred_images=(), no_label_images=(), gt_ratio=1, overlap=False):
    import numpy as np
    scale = W / mw
    images = []
    for im in range(n_images):
        labels, preds = [], []
        nl = 0 if im in no_label_images else int(rng.integers(label_count[0], label_count[1] + 1))
        for _ in range(nl):
            while True:
                c = int(rng.integers(0, nc))
                if c not in never_label:
                    break
            w, h = rng.uniform(10, 45), rng.uniform(10, 40)
            x1, y1 = rng.uniform(0, W - w), rng.uniform(0, H - h)
            labels.append([c, x1, y1, x1 + w, y1 + h])
        if im not in no_pred_images:
            for lb in labels:
                k = 0
                while k == 0 or (rng.random() < p_dup and k < 3):
                    if k > 0 or rng.random() < p_pred:
                        j = rng.normal(0, 2.0 + 3.0 * k, 4)
                        c = lb[0] if rng.random() > 0.1 else int(rng.integers(0, nc))
                        preds.append([lb[1] + j[0], lb[2] + j[1], lb[3] + j[2], lb[4] + j[3], 0.0, c])
                    k += 1
            for _ in range(int(rng.integers(n_fp[0], n_fp[1] + 1))):
                w, h = rng.uniform(8, 40), rng.uniform(8, 40)
                x1, y1 = rng.uniform(0, W - w), rng.uniform(0, H - h)
                preds.append([x1, y1, x1 + w, y1 + h, 0.0, int(rng.integers(0, nc))])
        for p in preds:
            if p[5] in never_pred:
                p[5] = [c for c in range(nc) if c not in never_pred][0]
            p[4] = float(rng.choice(conf_set)) if conf_set is not None else rng.uniform(0.05, 1.0)
        # NMS hands predictions over sorted by confidence (stable here)
        preds.sort(key=lambda p: -np.float32(p[4]))
        preds = [[f32(v) for v in p[:5]] + [int(p[5])] for p in preds]
        labels = [[int(l[0])] + [f32(v) for v in l[1:]] for l in labels]
        gh, gw = mh // gt_ratio, mw // gt_ratio
        gt_masks = [raster(l[1:], gh, gw, scale * gt_ratio) for l in labels]
        if overlap:  # one index map: label i is value i + 1, later labels painted over earlier ones
            idx = np.zeros((gh, gw), np.uint8)
            for i, m in enumerate(gt_masks):
                idx[m > 0] = i + 1
            gt_masks = [idx]
        pred_masks = []
        for p in preds:
            if garbage_masks:
                m = (rng.random((mh, mw)) < 0.15).astype(np.uint8)
            else:
                m = raster(p[:4], mh, mw, scale)
                flip = rng.random((mh, mw)) < 0.04
                m = (m ^ flip).astype(np.uint8)
            pred_masks.append(m)
        images.append(dict(preds=preds, labels=labels, mask_hw=[mh, mw], gt_mask_hw=[gh, gw], pred_masks=pred_masks,
                           gt_masks=gt_masks))
    return dict(name=name, nc=nc, images=images, overlap=overlap)


def run_det(case):
    import numpy as np
    import torch
    import caption.val as V
    from utils.caption.metrics import Metrics, ap_per_class_box_and_mask
    iouv = torch.linspace(0.5, 0.95, 10)
    niou = iouv.numel()
    stats = []
    out_images = []
    for img in case['images']:
        pred = torch.tensor(img['preds'], dtype=torch.float32).reshape(-1, 6)
        labels = torch.tensor(img['labels'], dtype=torch.float32).reshape(-1, 5)
        nl, npr = labels.shape[0], pred.shape[0]
        mh, mw = img['mask_hw']
        correct_masks = torch.zeros(npr, niou, dtype=torch.bool)
        correct_bboxes = torch.zeros(npr, niou, dtype=torch.bool)
        # caption/val.py's per-image bookkeeping (run(), "Metrics" block)
        if npr == 0:
            if nl:
                stats.append((correct_masks, correct_bboxes, *torch.zeros((2, 0)), labels[:, 0]))
        else:
            pred_masks = torch.tensor(np.array(img['pred_masks']), dtype=torch.float32).reshape(npr, mh, mw)
            gh, gw = img['gt_mask_hw']
            gt_masks = torch.tensor(np.array(img['gt_masks']), dtype=torch.float32).reshape(-1, gh, gw)
            if nl:
                correct_bboxes = V.process_batch(pred, labels, iouv)
                correct_masks = V.process_batch(pred, labels, iouv, pred_masks, gt_masks, overlap=case['overlap'],
                                                masks=True)
            stats.append((correct_masks, correct_bboxes, pred[:, 4], pred[:, 5], labels[:, 0]))
        out_images.append(dict(
            preds=img['preds'], labels=img['labels'], mask_hw=img['mask_hw'], gt_mask_hw=img['gt_mask_hw'],
            pred_masks=[mask_str(m) for m in img['pred_masks']],
            gt_masks=[mask_str(m) if not case['overlap'] else m.reshape(-1).tolist() for m in img['gt_masks']],
            correct_box=correct_bboxes.int().tolist(), correct_mask=correct_masks.int().tolist()))
    metrics = Metrics()
    computed = False
    stats = [torch.cat(x, 0).cpu().numpy() for x in zip(*stats)]
    if len(stats) and stats[0].any():
        # the stable-sort assumption of the C++ side (see the module docstring)
        conf = stats[2]
        assert (np.argsort(-conf) == np.argsort(-conf, kind='stable')).all(), case['name']
        results = ap_per_class_box_and_mask(*stats, plot=False, save_dir='.', names={i: str(i) for i in range(case['nc'])})
        metrics.update(results)
        computed = True
    nt = np.bincount(stats[4].astype(int), minlength=case['nc']) if len(stats) else np.zeros(case['nc'], int)

    def summary(m):
        return dict(mp=float(m.mp), mr=float(m.mr), map50=float(m.map50), map=float(m.map),
                    classes=[int(c) for c in m.ap_class_index], p=[float(v) for v in m.p], r=[float(v) for v in m.r],
                    f1=[float(v) for v in m.f1], ap=[[float(v) for v in row] for row in m.all_ap])
    return dict(name=case['name'], nc=case['nc'], overlap=case['overlap'], images=out_images, computed=computed, nt=[int(v) for v in nt],
                box=summary(metrics.metric_box), mask=summary(metrics.metric_mask))


def make_det():
    import numpy as np
    import torch
    rng = np.random.default_rng(20240611)
    cases = [
        det_case('random', rng, 8, 5, never_pred=(3,), never_label=(4,)),
        det_case('many', rng, 16, 3, label_count=(2, 7), n_fp=(1, 5)),
        det_case('no_preds', rng, 3, 4, no_pred_images=(0, 1, 2)),
        det_case('no_mask_tp', rng, 3, 2, garbage_masks=True),
        det_case('empty_images', rng, 6, 3, no_label_images=(1, 3), no_pred_images=(3, 4)),
        det_case('overlap_upsampled', rng, 6, 3, mh=40, mw=48, gt_ratio=4, overlap=True),
        det_case('ties', rng, 2, 2, label_count=(2, 3), p_dup=0.0, n_fp=(1, 2), conf_set=(0.25, 0.5, 0.75)),
    ]
    out = [run_det(c) for c in cases]
    # one object, several detections of it plus an exact duplicate box (lower confidence); redrawn until
    # some mask matches, so that val.py's gate lets the metrics through
    while True:
        c = det_case('duplicates', rng, 1, 1, label_count=(1, 1), p_pred=1.0, p_dup=0.95, n_fp=(0, 0))
        d = c['images'][0]
        p = list(d['preds'][0])
        p[4] = f32(0.01)
        d['preds'].append(p)
        d['pred_masks'].append(d['pred_masks'][0].copy())
        r = run_det(c)
        if r['computed'] and len(d['preds']) >= 3:
            out.append(r)
            break
    iouv = torch.linspace(0.5, 0.95, 10)
    return dict(iouv=[float(v) for v in iouv.tolist()], cases=out)


# -------------------------------------------------------------------------------------- semantic


def make_semantic():
    import numpy as np
    import torch
    from utils.caption.metrics import Semantic_Metrics
    from utils.semantic_seg.cocosemanticeval import IoUMetric
    rng = np.random.default_rng(7)
    nc, ignore = 12, [0, 10]
    sizes = [(20, 28), (16, 24), (20, 28), (12, 12)]
    images = []
    sm = Semantic_Metrics(classes=[str(i) for i in range(nc)], ignore_indices=ignore)
    for (h, w) in sizes:
        gt = np.zeros((h, w), np.int64)
        for _ in range(6):
            c = int(rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 8, 10]))  # 9 and 11 never in the ground truth
            y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
            gt[y0:y0 + int(rng.integers(3, h)), x0:x0 + int(rng.integers(3, w))] = c
        pred = gt.copy()
        noise = rng.random((h, w)) < 0.3
        pred[noise] = rng.choice([1, 2, 3, 4, 5, 6, 7, 8, 11, 0, 10], noise.sum())  # 9 never predicted
        onehot = lambda lab: torch.nn.functional.one_hot(torch.from_numpy(lab), nc).permute(2, 0, 1).float()
        sm.update(onehot(pred)[None], onehot(gt)[None])
        images.append(dict(h=h, w=w, pred=pred.reshape(-1).tolist(), gt=gt.reshape(-1).tolist()))
    inner = sm.metric.metric  # utils.caption Semantic_Metrics -> semantic_seg Semantic_Metrics -> IoUMetric
    res = tuple(zip(*inner.results))
    ret = IoUMetric.total_area_to_metrics(sum(res[0]), sum(res[1]), sum(res[2]), sum(res[3]), ['mIoU'])
    miou_percent = float(sm.results())
    nan = lambda v: None if np.isnan(v) else float(v)
    return dict(num_classes=nc, ignore=ignore, images=images, iou=[nan(v) for v in ret['IoU']],
                acc=[nan(v) for v in ret['Acc']], aacc=float(ret['aAcc']), miou_percent=miou_percent)


# -------------------------------------------------------------------------------------- panoptic


def pan_image(rng, H, W, special):
    import numpy as np
    gt = np.zeros((H, W), np.uint32)
    pr = np.zeros((H, W), np.uint32)
    used = set([0])

    def new_id():
        while True:
            i = int(rng.integers(1, 1 << 24))
            if i not in used:
                used.add(i)
                return i
    gsegs, psegs = [], []
    split = int(rng.integers(W // 4, 3 * W // 4))
    gstuff = [(new_id(), 10, 0, (0, 0, split, H)), (new_id(), 11, 0, (split, 0, W, H))]
    things = []
    for _ in range(int(rng.integers(3, 6))):
        w, h = int(rng.integers(4, 12)), int(rng.integers(4, 12))
        x, y = int(rng.integers(0, W - w)), int(rng.integers(0, H - h))
        things.append((new_id(), int(rng.choice([1, 2, 3])), 0, (x, y, x + w, y + h)))
    crowd = None
    if special or rng.random() < 0.5:
        w, h = 8, 6
        x, y = int(rng.integers(0, W - w)), int(rng.integers(0, H - h))
        crowd = (new_id(), 2, 1, (x, y, x + w, y + h))
        things.append(crowd)
    void_rows = (int(rng.integers(0, H - 4)), 0)
    void_rows = (void_rows[0], void_rows[0] + 3)
    for sid, cat, isc, (x0, y0, x1, y1) in gstuff + things:
        gt[y0:y1, x0:x1] = sid
    gt[void_rows[0]:void_rows[1], :] = 0
    for sid, cat, isc, _ in gstuff + things:
        a = int((gt == sid).sum())
        if a:
            gsegs.append(dict(id=sid, category_id=cat, iscrowd=isc, area=a))
    # predictions: jittered copies, some dropped / mislabelled, a few extra
    preds = []
    jit = lambda v, lo, hi: int(np.clip(v + rng.integers(-2, 3), lo, hi))
    for sid, cat, isc, (x0, y0, x1, y1) in gstuff + things:
        if rng.random() < 0.15:
            continue
        c = cat if rng.random() > 0.1 else int(rng.choice([1, 2, 3, 10, 11]))
        preds.append((new_id(), c, (jit(x0, 0, W), jit(y0, 0, H), jit(x1, 0, W), jit(y1, 0, H))))
    for _ in range(int(rng.integers(1, 3))):
        w, h = int(rng.integers(3, 8)), int(rng.integers(3, 8))
        x, y = int(rng.integers(0, W - w)), int(rng.integers(0, H - h))
        preds.append((new_id(), int(rng.choice([1, 3])), (x, y, x + w, y + h)))
    if special:
        # mostly on VOID -> ignored false positive; inside the crowd region of its class -> ignored
        preds.append((new_id(), 1, (2, void_rows[0], 8, void_rows[1] + 1)))
        x0, y0, x1, y1 = crowd[3]
        preds.append((new_id(), 2, (x0 + 1, y0 + 1, x1 - 1, y1 - 1)))
    for pid, cat, (x0, y0, x1, y1) in preds:
        pr[y0:y1, x0:x1] = pid
    if special:
        pr[H - 2:, :4] = 0  # some predicted VOID
    for pid, cat, _ in preds:
        if (pr == pid).any():
            psegs.append(dict(id=pid, category_id=cat, iscrowd=0))
    return gt, pr, gsegs, psegs


def make_panoptic(tmp):
    import numpy as np
    import PIL.Image as Image
    from panopticapi import evaluation as E
    from panopticapi.utils import id2rgb
    rng = np.random.default_rng(99)
    categories_list = [dict(id=1, isthing=1), dict(id=2, isthing=1), dict(id=3, isthing=1), dict(id=7, isthing=1),
                       dict(id=10, isthing=0), dict(id=11, isthing=0)]
    categories = {el['id']: el for el in categories_list}
    gdir, pdir = os.path.join(tmp, 'pan_gt'), os.path.join(tmp, 'pan_pred')
    os.makedirs(gdir)
    os.makedirs(pdir)
    pairs, images = [], []
    for i in range(4):
        H, W = 24, 32
        gt, pr, gsegs, psegs = pan_image(rng, H, W, special=(i == 0))
        fn = f'{i}.png'
        Image.fromarray(id2rgb(gt)).save(os.path.join(gdir, fn))
        Image.fromarray(id2rgb(pr)).save(os.path.join(pdir, fn))
        pairs.append((dict(image_id=i, file_name=fn, segments_info=gsegs),
                      dict(image_id=i, file_name=fn, segments_info=[dict(s) for s in psegs])))
        images.append(dict(h=H, w=W, gt=gt.reshape(-1).tolist(), pred=pr.reshape(-1).tolist(),
                           gt_segments=[dict(id=s['id'], category_id=s['category_id'], iscrowd=s['iscrowd']) for s in gsegs],
                           pred_segments=[dict(id=s['id'], category_id=s['category_id']) for s in psegs]))
    pq_stat = E.pq_compute_single_core(0, pairs, gdir, pdir, categories)
    results = {}
    for name, isthing in (('all', None), ('things', True), ('stuff', False)):
        results[name], per_class = pq_stat.pq_average(categories, isthing=isthing)
        if name == 'all':
            results['per_class'] = {str(k): v for k, v in per_class.items()}
    stats = {str(k): dict(iou=float(v.iou), tp=int(v.tp), fp=int(v.fp), fn=int(v.fn)) for k, v in pq_stat.pq_per_cat.items()}
    return dict(categories=categories_list, images=images, results=results, stats=stats)


# --------------------------------------------------------------------------------------- caption

PUNCT_SPLIT = ',;:?!"(){}'
PUNCT_STRIP = ".'`-"
_LOWER = str.maketrans('ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')


def tokenize(s):
    """The C++ caption tokenization (gyolo::metrics::caption_tokens), ASCII only: lowercase; the
    characters , ; : ? ! " ( ) { } become spaces; split on whitespace; strip . ' ` - from both ends of
    every word; drop what is left empty."""
    s = s.translate(_LOWER)
    for c in PUNCT_SPLIT:
        s = s.replace(c, ' ')
    words = [w.strip(PUNCT_STRIP) for w in s.split()]
    return ' '.join(w for w in words if w)


def make_caption():
    import numpy as np
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from utils.caption.metrics import Cap_Metrics
    rng = np.random.default_rng(5)
    vocab = ('a man woman dog cat riding sitting on the of in with horse bench red blue table two people '
             'standing near large small street bus train plate pizza').split()
    punct = ['', '', '', ',', '.', '!', ';', ':']

    def sentence(n):
        ws = [str(rng.choice(vocab)) for _ in range(n)]
        out = []
        for i, w in enumerate(ws):
            if rng.random() < 0.15:
                w = w.capitalize()
            if rng.random() < 0.05:
                w = '(' + w + ')'
            if rng.random() < 0.05:
                w = w + "'s"
            out.append(w + str(rng.choice(punct)))
        s = ' '.join(out)
        return s[0].upper() + s[1:] + ('.' if rng.random() < 0.7 else '')

    refs, hyps = {}, {}
    ids = sorted(set(int(v) for v in rng.integers(1, 600000, 14)))
    for k, iid in enumerate(ids):
        rs = [sentence(int(rng.integers(6, 14))) for _ in range(int(rng.integers(1, 6)))]
        refs[iid] = rs
        if k == 0:
            h = ''
        elif k == 1:
            h = 'A dog.'  # shorter than every reference
        elif k == 2:
            h = 'dog dog dog dog dog dog the the the'  # clipping
        elif k == 3:
            h = rs[0]  # exact copy of one reference
        elif k == 4:
            h = ' -- ... - ; '  # only punctuation
        else:
            words = tokenize(rs[int(rng.integers(0, len(rs)))]).split()
            keep = [w for w in words if rng.random() > 0.25]
            keep += [str(rng.choice(vocab)) for _ in range(int(rng.integers(0, 4)))]
            h = ' '.join(keep).capitalize() + '.'
        hyps[iid] = h
    res = {}
    gts_t = {i: [tokenize(r) for r in refs[i]] for i in ids}
    res_t = {i: [tokenize(hyps[i])] for i in ids}
    bleu, _ = Bleu(4).compute_score(gts_t, res_t, verbose=0)
    cider, cider_per = Cider().compute_score(gts_t, res_t)
    res['tokenized'] = dict(bleu=[float(v) for v in bleu], cider=float(cider), cider_per_image=[float(v) for v in cider_per])
    cm = Cap_Metrics()
    for i in ids:
        cm.update(hyps[i], refs[i], i)
    b4, c = cm.results()
    res['raw'] = dict(bleu4=float(b4), cider=float(c))
    toks = {s: tokenize(s) for s in ['Hello, World!', "A man's (red) hat -- ok.", "'quoted' `x` ... end-", '']}
    return dict(ids=ids, refs={str(i): refs[i] for i in ids}, hyps={str(i): hyps[i] for i in ids}, results=res,
                tokenize_examples=toks)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--upstream', required=True)
    ap.add_argument('--pycocoevalcap', required=True)
    ap.add_argument('--panopticapi', required=True)
    ap.add_argument('--out', required=True)
    args = ap.parse_args()
    tmp = setup(args.upstream, args.pycocoevalcap, args.panopticapi)
    os.makedirs(args.out, exist_ok=True)
    try:
        for name, fn in (('det', make_det), ('semantic', make_semantic), ('panoptic', lambda: make_panoptic(tmp)),
                         ('caption', make_caption)):
            data = fn()
            path = os.path.join(args.out, name + '.json')
            with open(path, 'w') as f:
                json.dump(data, f, separators=(',', ':'))
            print(f'{path}: {os.path.getsize(path)} bytes')
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
