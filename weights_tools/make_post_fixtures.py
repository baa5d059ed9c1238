#!/usr/bin/python3
"""Reference fixtures for gyolo's post-processing, made by running upstream GeneralistYOLO's own
code (non_max_suppression, scale_boxes, process_mask, hubconf's _unletterbox and
_stuff_to_panoptic, coco_utils' category maps) on raw head outputs.

Upstream code is NOT part of this repository: pass its checkout with --upstream. torchvision and
pycocotools are not installed here; this script supplies faithful stand-ins written from their
public descriptions:
  * torchvision.ops.nms (CPU kernel): areas (x2-x1)(y2-y1) in float, scores sorted with
    torch.sort(descending=True) -- the same unstable sort the kernel calls --, greedy, suppress
    when the float IoU inter / (area_i + area_j - inter) is > iou_threshold compared in double;
  * pycocotools.mask.encode / decode: column-major run lengths, rleToString's compressed string.

Committed CI fixtures (tests/fixtures/post/, < 2 MB):
    /usr/bin/python3 weights_tools/make_post_fixtures.py --upstream /tmp/upstream --out tests/fixtures/post
  - synthetic raw outputs (seeded): scenes of overlapping candidate boxes with exact score ties,
    smooth prototypes and semantic logits, for four letterbox geometries (predict rect with
    padding, enlarged, val square with INTER_AREA, no resize) and several NMS settings
    (predict, agnostic, class filter + max_det, val multi-label, > 30000 candidates for max_nms);
  - an end-to-end case: a small PNG through upstream's letterbox and the tiny fixture model
    (--tiny-ckpt, the checkpoint make_fixtures.py --variant tiny writes) and the whole post-process.

Full-size reference (local only, large; see docs/outputs.md):
    /usr/bin/python3 weights_tools/make_post_fixtures.py --upstream /tmp/upstream --full \
        --out /tmp/full_post [--conf 0.25]
  builds upstream's gyolo.yaml with random weights (make_fixtures.py's randomization, but with the
  DFL bins kept at 0..15 so that boxes are well formed), saves and converts the checkpoint to
  /tmp/full_post/gyolo_post.gguf, and for three cases (horses.jpg rect, horses.jpg --square,
  a 320x320 image) stores upstream's raw outputs and post-processed results; compare with
  weights_tools/compare_post.py.
"""
import argparse
import json
import os
import sys
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

NC, NM, NSEM = 80, 32, 173
SCALE = 256.0  # proto / semantic fixtures are stored as int16 q, value = q / 256 (exact in float32)


def log(*a):
    print('[make_post_fixtures]', *a, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# stand-ins
# --------------------------------------------------------------------------------------------

def nms_standin(boxes, scores, iou_threshold):
    """torchvision.ops.nms on CPU (see module docstring). The greedy loop runs in numpy float32,
    element for element the kernel's arithmetic; the order comes from torch's own sort."""
    import torch
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64)
    b = boxes.detach().cpu().numpy().astype(np.float32, copy=False)
    x1, y1, x2, y2 = (np.ascontiguousarray(b[:, k]) for k in range(4))
    areas = (x2 - x1) * (y2 - y1)
    order = scores.sort(0, descending=True)[1].numpy()
    n = b.shape[0]
    suppressed = np.zeros(n, bool)
    keep = []
    for _i in range(n):
        i = order[_i]
        if suppressed[i]:
            continue
        keep.append(i)
        rest = order[_i + 1:]
        rest = rest[~suppressed[rest]]
        if rest.size == 0:
            continue
        w = np.maximum(np.float32(0), np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(np.float32(0), np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        with np.errstate(invalid='ignore', divide='ignore'):
            ovr = inter / ((areas[i] + areas[rest]) - inter)
        suppressed[rest[ovr.astype(np.float64) > iou_threshold]] = True
    return torch.tensor(keep, dtype=torch.int64)


def rle_counts(mask2d):
    """Column-major run lengths of a 2-D 0/1 array, starting with a run of zeros."""
    v = np.asarray(mask2d, dtype=np.uint8).reshape(-1, order='F') != 0
    counts, cur, run = [], False, 0
    for b in v:
        if b != cur:
            counts.append(run)
            run, cur = 0, b
        run += 1
    counts.append(run)
    return counts


def rle_to_string(counts):
    """maskApi's rleToString: deltas from the count two before (from the third), 5-bit groups."""
    out = []
    for i, x in enumerate(counts):
        x = int(x)
        if i > 2:
            x -= int(counts[i - 2])
        more = True
        while more:
            c = x & 0x1f
            x >>= 5  # Python's >> is arithmetic
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return ''.join(out)


def rle_from_string(s):
    counts, p = [], 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            c = ord(s[p]) - 48
            x |= (c & 0x1f) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def rle_decode(counts, h, w):
    """pycocotools' decode: column-major run lengths (a compressed string or a list) -> h x w uint8."""
    if isinstance(counts, str):
        counts = rle_from_string(counts)
    flat = np.zeros(h * w, np.uint8)
    pos, val = 0, 0
    for n in counts:
        flat[pos:pos + n] = val
        pos += n
        val ^= 1
    return flat.reshape((h, w), order='F')


def make_mask_module():
    m = types.ModuleType('pycocotools.mask')

    def encode(a):
        a = np.asarray(a)
        if a.ndim == 2:
            return {'size': [int(a.shape[0]), int(a.shape[1])], 'counts': rle_to_string(rle_counts(a)).encode()}
        return [encode(a[:, :, i]) for i in range(a.shape[2])]

    def decode(r):
        if isinstance(r, list):
            return np.stack([decode(x) for x in r], axis=2)
        h, w = r['size']
        cnt = r['counts']
        return rle_decode(cnt.decode() if isinstance(cnt, bytes) else cnt, h, w)

    m.encode, m.decode = encode, decode
    return m


def install_standins(vocab):
    import _upstream_stubs
    _upstream_stubs.install(vocab)
    import torchvision  # the inert stand-in unless really installed
    ops = types.ModuleType('torchvision.ops')
    ops.nms = nms_standin
    ops.__getattr__ = lambda name: (lambda *a, **k: None)
    sys.modules['torchvision.ops'] = ops
    torchvision.ops = ops
    import pycocotools
    mm = make_mask_module()
    sys.modules['pycocotools.mask'] = mm
    pycocotools.mask = mm


class Upstream:
    """The upstream functions this script calls."""

    def __init__(self, upstream, vocab):
        install_standins(vocab)
        upstream = os.path.abspath(upstream)
        if upstream not in sys.path:
            sys.path.insert(0, upstream)
        import torch
        torch.set_num_threads(max(1, min(16, os.cpu_count() or 1)))
        import utils.general as G
        import utils.segment.general as SG
        import utils.coco_utils as CU
        import utils.augmentations as AUG
        import hubconf as HUB
        import pickle
        self.G, self.SG, self.CU, self.AUG, self.HUB = G, SG, CU, AUG, HUB
        with open(os.path.join(upstream, 'data', 'color_map.pickle'), 'rb') as f:
            self.color_map = pickle.load(f)


# --------------------------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------------------------

def geometry(U, h0, w0, imgsz, mode):
    """Letterbox shapes as upstream computes them (content does not matter)."""
    import cv2
    im = np.zeros((h0, w0, 3), np.uint8)
    ratio_pad = None
    if mode == 'val':  # utils/dataloaders.py load_image, then letterbox(auto=False, scaleup=False)
        r = imgsz / max(h0, w0)
        if r != 1:
            im = cv2.resize(im, (int(w0 * r), int(h0 * r)), interpolation=cv2.INTER_LINEAR if r > 1 else cv2.INTER_AREA)
        h, w = im.shape[:2]
        lb, ratio, pad = U.AUG.letterbox(im, imgsz, auto=False, scaleup=False)
        ratio_pad = ((h / h0, w / w0), pad)
    elif mode == 'square':
        lb, ratio, pad = U.AUG.letterbox(im, imgsz, auto=False)
    elif mode == 'hub':
        lb, ratio, pad = U.AUG.letterbox(im, imgsz, auto=True, scaleup=False)
    else:
        lb, ratio, pad = U.AUG.letterbox(im, imgsz, auto=True)
    H, W = lb.shape[:2]
    return {'orig_hw': [h0, w0], 'input_hw': [H, W], 'pad': [float(pad[0]), float(pad[1])], 'mode': mode,
            'imgsz': imgsz, 'ratio_pad': ratio_pad}


# --------------------------------------------------------------------------------------------
# upstream post-processing of one image
# --------------------------------------------------------------------------------------------

def upstream_post(U, pred, proto, sem, g, nms_kw, pan_conf=0.25, want=('masks', 'semantic', 'panoptic')):
    """pred [1, C, A], proto [1, 32, mh, mw], sem [1, 173, mh, mw] (torch float32).
    Returns numpy results; masks at the input and the original resolution, semantic arg-max at
    both, the panoptic id map and segments_info (spec §5.2, val.py colours)."""
    import torch
    import torch.nn.functional as F
    H, W = g['input_hw']
    h0, w0 = g['orig_hw']
    pad = tuple(g['pad'])
    nm = pred.shape[1] - 4 - NC
    det = U.G.non_max_suppression(pred.clone(), nm=nm, **nms_kw)[0]
    out = {'det': det.numpy().astype(np.float32)}
    n = det.shape[0]
    rp = g['ratio_pad']
    boxes = U.G.scale_boxes((H, W), det[:, :4].clone(), (h0, w0), rp)
    out['boxes'] = boxes.numpy().astype(np.float32)
    if 'masks' not in want:
        return out
    if n:
        m_in = U.SG.process_mask(proto[0], det[:, 6:], det[:, :4], (H, W), upsample=True)
        if m_in.dim() == 2:
            m_in = m_in[None]
        m_orig = torch.stack([U.HUB._unletterbox(m, (H, W), pad, (h0, w0)) > 0.5 for m in m_in])
    else:
        m_in = torch.zeros((0, H, W))
        m_orig = torch.zeros((0, h0, w0), dtype=torch.bool)
    out['masks_input'] = m_in.numpy().astype(np.uint8)
    out['masks_orig'] = m_orig.numpy().astype(np.uint8)
    # semantic (hubconf.process)
    sm = F.interpolate(sem.float(), size=(H, W), mode='bilinear', align_corners=False)
    flat = sm[0].flatten(start_dim=1).permute(1, 0)
    out['sem_input'] = flat.argmax(1).reshape(H, W).numpy().astype(np.int16)
    smo = torch.stack([U.HUB._unletterbox(c, (H, W), pad, (h0, w0)) for c in sm[0]]).unsqueeze(0)
    flat = smo[0].flatten(start_dim=1).permute(1, 0)
    max_idx = flat.argmax(1)
    out['sem_orig'] = max_idx.reshape(h0, w0).numpy().astype(np.int16)
    one_hot = torch.zeros(flat.shape).scatter(1, max_idx.unsqueeze(1), 1.0).permute(1, 0).reshape(smo.shape)
    # panoptic: instances (val's pan_conf_thres, colours) then stuff (hubconf's _stuff_to_panoptic)
    cmap = U.color_map
    occupied = torch.zeros((h0, w0), dtype=torch.bool)
    ids = np.zeros((h0, w0), np.uint32)
    segs = []
    shift = {}

    def add(mask, color, cat, thing, det_index):
        m = mask.numpy()
        cid = int(color[0] + 256 * color[1] + 256 * 256 * color[2])
        if m.sum():
            ids[m] = cid
            ys, xs = np.nonzero(m)
            segs.append({'id': cid, 'category_id': int(cat), 'isthing': thing, 'detection': det_index,
                         'area': int(m.sum()), 'bbox': [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
                                                         int(ys.max() - ys.min() + 1)]})

    for idx in range(n):
        if pan_conf > det[idx][4]:
            break
        iid = U.CU.getMappingId(int(det[idx, 5]), name='instances')
        color = list(cmap[iid])
        if iid not in shift:
            shift[iid] = 1
        else:
            k = shift[iid]
            shift[iid] += 1
            pos_num = k % 2
            pos_idx = 0 if ((0 == pos_num) and (0 != (iid % 3))) else (2 if ((1 == pos_num) and (2 != (iid % 3))) else 1)
            color[pos_idx] = (color[pos_idx] + ((k // 2) + 1) * 3) % 255
        mask = torch.logical_and(m_orig[idx], torch.logical_not(occupied))
        occupied = torch.logical_or(occupied, mask)
        add(mask, color, iid, True, idx)
    dummy = types.SimpleNamespace(device=torch.device('cpu'))
    stuff = U.HUB._stuff_to_panoptic(dummy, one_hot, overlap_mask=occupied)
    for idx, mask in enumerate(stuff):
        mask = torch.logical_and(mask, torch.logical_not(occupied))
        occupied = torch.logical_or(occupied, mask)
        pid = U.CU.getMappingId(idx + NC, name='panoptic')
        add(mask, cmap[pid], pid, False, -1)
    out['panoptic'] = ids
    out['segments'] = segs
    # COCO RLE of the original-resolution masks (pycocotools' encode on Fortran-order uint8)
    import pycocotools.mask as PM
    out['rle'] = [PM.encode(np.asfortranarray(m.astype(np.uint8)))['counts'].decode() for m in out['masks_orig']]
    return out


# --------------------------------------------------------------------------------------------
# synthetic raw outputs
# --------------------------------------------------------------------------------------------

def smooth_fields(rng, n, h, w, blobs=4, amp=1.5):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    f = np.zeros((n, h, w))
    for c in range(n):
        for _ in range(blobs):
            cy, cx = rng.uniform(-0.2 * h, 1.2 * h), rng.uniform(-0.2 * w, 1.2 * w)
            s = rng.uniform(0.15, 0.5) * max(h, w)
            f[c] += rng.normal(0, amp) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    return f


def quantize(a):
    q = np.clip(np.round(a * SCALE), -32768, 32767).astype(np.int16)
    return q, (q.astype(np.float32) / np.float32(SCALE)).astype(np.float32)


def synthetic_scene(rng, H, W, A, nm=NM, objects=((17, 2), (0, 1), (2, 1), (56, 1)), tie_step=1.0 / 64):
    """pred [1, 4 + 80 + nm, A]: candidate boxes around a few objects (jittered, overlapping),
    class scores with exact ties (multiples of tie_step), second-class scores for multi-label,
    background boxes, a few degenerate (negative-size) boxes."""
    C = 4 + NC + nm
    pred = np.zeros((C, A), np.float32)
    cols = []
    objs = []
    for cls, count in objects:
        for _ in range(count):
            bw, bh = rng.uniform(0.2, 0.6) * W, rng.uniform(0.2, 0.6) * H
            cx, cy = rng.uniform(bw / 3, W - bw / 3), rng.uniform(bh / 3, H - bh / 3)
            objs.append((cls, cx, cy, bw, bh, rng.normal(0, 2.0, nm)))
    per = max(1, (A * 3 // 4) // len(objs))
    for cls, cx, cy, bw, bh, v in objs:
        for _ in range(per):
            col = np.zeros(C, np.float32)
            col[0] = cx + rng.normal(0, 0.08) * bw
            col[1] = cy + rng.normal(0, 0.08) * bh
            col[2] = bw * rng.uniform(0.8, 1.2)
            col[3] = bh * rng.uniform(0.8, 1.2)
            sc = rng.uniform(0.0, 0.3, NC)
            s = rng.uniform(0.3, 0.95)
            if rng.random() < 0.6:
                s = np.floor(s / tie_step) * tie_step  # exact ties
            sc[cls] = s
            if rng.random() < 0.3:  # a second plausible class (multi-label candidates)
                sc[(cls + 1 + rng.integers(0, NC - 1)) % NC] = rng.uniform(0.25, s)
            col[4:4 + NC] = sc
            col[4 + NC:] = v + rng.normal(0, 0.3, nm)
            cols.append(col)
    while len(cols) < A:
        col = np.zeros(C, np.float32)
        bw, bh = rng.uniform(0.05, 0.5) * W, rng.uniform(0.05, 0.5) * H
        col[0], col[1], col[2], col[3] = rng.uniform(0, W), rng.uniform(0, H), bw, bh
        if rng.random() < 0.05:
            col[2] = -col[2]  # degenerate box, as random weights produce
        sc = rng.uniform(0.0, 0.28, NC)
        if rng.random() < 0.2:
            sc[rng.integers(0, NC)] = np.floor(rng.uniform(0.25, 0.6) * 64) / 64
        col[4:4 + NC] = sc
        col[4 + NC:] = rng.normal(0, 2.0, nm)
        cols.append(col)
    cols = np.stack(cols[:A], 1)
    pred[:] = cols[:, rng.permutation(A)]
    return pred[None]


def save_case(out_dir, name, arrays, meta, manifest):
    for k, a in arrays.items():
        fn = f'{name}.{k}.npy'
        np.save(os.path.join(out_dir, fn), np.ascontiguousarray(a))
        manifest[fn] = {'shape': list(a.shape), 'dtype': str(a.dtype)}
    with open(os.path.join(out_dir, f'{name}.json'), 'w') as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    manifest[f'{name}.json'] = 'metadata and expected json-able results'


def result_arrays(res, prefix=''):
    a = {prefix + 'det': res['det'], prefix + 'boxes': res['boxes']}
    if 'masks_input' in res:
        a[prefix + 'sem_input'] = res['sem_input']
        a[prefix + 'sem_orig'] = res['sem_orig']
        a[prefix + 'panoptic'] = res['panoptic']
    return a


def mask_rles(res):
    """COCO RLE strings of the masks at the input and the original resolution."""
    return {'rle_input': [rle_to_string(rle_counts(m)) for m in res.get('masks_input', [])],
            'rle': res.get('rle', [])}


def nms_json(kw):
    d = {'conf': kw.get('conf_thres', 0.25), 'iou': kw.get('iou_thres', 0.45), 'max_det': kw.get('max_det', 300),
         'agnostic': bool(kw.get('agnostic', False)), 'multi_label': bool(kw.get('multi_label', False)),
         'classes': list(kw.get('classes') or [])}
    return d


PREDICT = dict(conf_thres=0.25, iou_thres=0.45, max_det=1000)
VAL = dict(conf_thres=0.001, iou_thres=0.7, max_det=300, multi_label=True)


def ci_fixtures(U, out, tiny_ckpt, seed):
    import torch
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(seed)
    manifest = {}
    # (name, h0, w0, imgsz, mode, main NMS settings, extra NMS variants)
    cases = [
        ('rect', 40, 60, 64, 'predict', PREDICT,
         {'agnostic': dict(PREDICT, agnostic=True), 'classes': dict(PREDICT, classes=[0, 2, 56], max_det=7),
          'val': VAL}),
        ('tall', 150, 100, 64, 'predict', PREDICT, {}),
        ('val', 61, 100, 64, 'val', VAL, {}),
        ('noresize', 64, 96, 96, 'predict', dict(PREDICT, conf_thres=0.3, iou_thres=0.5), {'hub': PREDICT}),
    ]
    for name, h0, w0, imgsz, mode, main_kw, variants in cases:
        g = geometry(U, h0, w0, imgsz, mode)
        H, W = g['input_hw']
        mh, mw = H // 4, W // 4
        pred = synthetic_scene(rng, H, W, 200)
        pq, proto = quantize(smooth_fields(rng, NM, mh, mw, blobs=3, amp=1.2))
        sq, sem = quantize(smooth_fields(rng, NSEM, mh, mw, blobs=2, amp=2.0))
        tp, tpr, tse = (torch.from_numpy(x) for x in (pred, proto[None], sem[None]))
        res = upstream_post(U, tp, tpr, tse, g, main_kw)
        arrays = {'pred': pred, 'proto_q': pq, 'semantic_q': sq}
        arrays.update(result_arrays(res))
        meta = {'geometry': g, 'nms': nms_json(main_kw), 'panoptic_conf': 0.25, 'segments': res['segments'],
                'variants': {}}
        meta.update(mask_rles(res))
        for vname, kw in variants.items():
            r = upstream_post(U, tp, tpr, tse, g, kw, want=())
            arrays.update(result_arrays(r, prefix=vname + '.'))
            meta['variants'][vname] = nms_json(kw)
        save_case(out, name, arrays, meta, manifest)
        log(f'{name}: input {H}x{W}, orig {h0}x{w0}, {res["det"].shape[0]} detections, '
            f'{len(res["segments"])} panoptic segments, variants {list(variants)}')
    # > 30000 candidates: val settings hit max_nms; scores on a coarse grid (many exact ties)
    A = 420
    pred = np.zeros((1, 4 + NC, A), np.float32)
    pred[0, 0] = rng.uniform(0, 640, A)
    pred[0, 1] = rng.uniform(0, 640, A)
    pred[0, 2] = rng.uniform(20, 300, A)
    pred[0, 3] = rng.uniform(20, 300, A)
    pred[0, 4:] = np.floor(rng.uniform(0.002, 1.0, (NC, A)) * 128) / 128 + 1.0 / 256
    g = {'orig_hw': [640, 640], 'input_hw': [640, 640], 'pad': [0.0, 0.0], 'ratio_pad': None, 'mode': 'square', 'imgsz': 640}
    import torch
    r = upstream_post(U, torch.from_numpy(pred), None, None, g, VAL, want=())
    save_case(out, 'maxnms', {'pred': pred, 'det': r['det'], 'boxes': r['boxes']},
              {'geometry': g, 'nms': nms_json(VAL), 'candidates': int((pred[0, 4:] > 0.001).sum())}, manifest)
    log(f'maxnms: {int((pred[0, 4:] > 0.001).sum())} candidates, {r["det"].shape[0]} detections')
    # torch's bilinear resize (align_corners=False) on its own: up, down, equal, mixed
    import torch.nn.functional as F
    src = rng.normal(0, 1, (1, 2, 7, 9)).astype(np.float32)
    arrays = {'src': src}
    for (oh, ow) in ((20, 13), (5, 4), (7, 9), (16, 36), (3, 31)):
        arrays[f'out_{oh}x{ow}'] = F.interpolate(torch.from_numpy(src), size=(oh, ow), mode='bilinear',
                                                 align_corners=False).numpy()
    save_case(out, 'interp', arrays, {'sizes': [[20, 13], [5, 4], [7, 9], [16, 36], [3, 31]]}, manifest)
    if tiny_ckpt:
        e2e_tiny(U, out, tiny_ckpt, manifest)
    with open(os.path.join(out, 'manifest.json'), 'w') as f:
        json.dump({'files': manifest, 'seed': seed, 'scale_q': SCALE}, f, indent=1, sort_keys=True)


def e2e_tiny(U, out, ckpt, manifest):
    """A small image through upstream's letterbox, the tiny model and the whole post-process."""
    import cv2
    import torch
    import make_fixtures as MF
    from models.experimental import attempt_load
    model = attempt_load(ckpt, device='cpu', inplace=True, fuse=True).float().eval()
    for m in model.model:
        if type(m).__name__ == 'Grit':
            m.forward = lambda x: None  # the tiny input has < 300 anchors (Grit's top-k)
    im0 = cv2.imread(MF.HORSES)
    im0 = cv2.resize(im0[40:400, 100:600], (100, 70), interpolation=cv2.INTER_AREA)
    path = os.path.join(out, 'e2e.png')
    cv2.imwrite(path, im0)
    im0 = cv2.imread(path)
    g = geometry(U, 70, 100, 128, 'predict')
    lb = U.AUG.letterbox(im0, 128, auto=True)[0]
    x = torch.from_numpy(np.ascontiguousarray(lb.transpose(2, 0, 1)[::-1])).float()[None] / 255
    with torch.no_grad():
        pred, (d3, mc2, p2, s2) = model(x)['detect']
    kw = dict(PREDICT, conf_thres=0.7)
    res = upstream_post(U, pred, p2, s2, g, kw)
    arrays = result_arrays(res)
    meta = {'geometry': g, 'nms': nms_json(kw), 'panoptic_conf': 0.25, 'segments': res['segments'],
            'image': 'e2e.png', 'model': 'tests/fixtures/tiny/tiny.gguf'}
    meta.update(mask_rles(res))
    save_case(out, 'e2e', arrays, meta, manifest)
    manifest['e2e.png'] = 'horses.jpg crop, 100x70'
    log(f'e2e: input {tuple(x.shape)}, {res["det"].shape[0]} detections, {len(res["segments"])} segments')


# --------------------------------------------------------------------------------------------
# full size (local)
# --------------------------------------------------------------------------------------------

def full_reference(U, args):
    import cv2
    import torch
    import yaml
    import make_fixtures as MF
    os.makedirs(args.out, exist_ok=True)
    pt = os.path.join(args.out, 'gyolo_post.pt')
    gguf = os.path.join(args.out, 'gyolo_post.gguf')
    Y = sys.modules.get('models.yolo')
    if Y is None:
        import models.yolo as Y
    if not os.path.exists(gguf):
        cfg = os.path.join(os.path.abspath(args.upstream), 'models/caption/gyolo.yaml')
        torch.manual_seed(args.full_seed)
        model = MF.build_model(Y, cfg)
        MF.randomize(model, args.full_seed)
        with torch.no_grad():  # keep the DFL bins 0..15 (upstream's init) so boxes are well formed
            for m in model.modules():
                if type(m).__name__ == 'DFL':
                    m.conv.weight.copy_(torch.arange(16, dtype=torch.float).view(1, 16, 1, 1))
        names = yaml.safe_load(open(MF.DEFAULT_COCO))['names']
        hyp = yaml.safe_load(open(MF.DEFAULT_HYP)) if os.path.exists(MF.DEFAULT_HYP) else None
        MF.save_stripped(model, pt, names, hyp)
        del model
        MF.run_convert(pt, gguf, args.vocab)
        MF.verify_gguf(pt, gguf, args.vocab)
    model = MF.load_like_predict(Y, pt)
    for m in model.model:
        if type(m).__name__ == 'Grit':
            m.forward = lambda x: None  # captions are checked elsewhere
    img = args.image
    im320 = cv2.resize(cv2.imread(img), (320, 320), interpolation=cv2.INTER_AREA)
    p320 = os.path.join(args.out, 'image_320x320.png')
    cv2.imwrite(p320, im320)
    kw = dict(PREDICT, conf_thres=args.conf)
    for name, path, imgsz, mode in (('rect', img, 640, 'predict'), ('square', img, 640, 'square'),
                                    ('320', p320, 320, 'predict')):
        im0 = cv2.imread(path)
        h0, w0 = im0.shape[:2]
        g = geometry(U, h0, w0, imgsz, mode)
        lb = U.AUG.letterbox(im0, imgsz, auto=(mode != 'square'))[0]
        x = torch.from_numpy(np.ascontiguousarray(lb.transpose(2, 0, 1)[::-1])).float()[None] / 255
        with torch.no_grad():
            pred, (d3, mc2, p2, s2) = model(x)['detect']
        res = upstream_post(U, pred, p2, s2, g, kw)
        d = os.path.join(args.out, name)
        os.makedirs(d, exist_ok=True)
        np.save(os.path.join(d, 'pred.npy'), pred.numpy())
        np.save(os.path.join(d, 'proto.npy'), p2.numpy())
        np.save(os.path.join(d, 'semantic.npy'), s2.numpy())
        for k in ('det', 'boxes', 'masks_input', 'masks_orig', 'sem_input', 'sem_orig', 'panoptic'):
            np.save(os.path.join(d, k + '.npy'), res[k])
        with open(os.path.join(d, 'ref.json'), 'w') as f:
            json.dump({'geometry': g, 'nms': nms_json(kw), 'segments': res['segments'], 'rle': res['rle'],
                       'image': os.path.abspath(path)}, f)
        sc = pred[0, 4:4 + NC].amax(0)
        log(f'{name}: input {tuple(x.shape)}, {int((sc > args.conf).sum())} candidates > {args.conf}, '
            f'{res["det"].shape[0]} detections, {len(res["segments"])} segments')


def main():
    ap = argparse.ArgumentParser(description='gyolo post-processing reference fixtures from upstream')
    ap.add_argument('--upstream', required=True)
    ap.add_argument('--out', required=True)
    ap.add_argument('--seed', type=int, default=20240607, help='CI fixtures: synthetic data seed')
    ap.add_argument('--full-seed', type=int, default=20240601,
                    help="--full: weight seed (make_fixtures.py's, so only the DFL bins differ from its model)")
    ap.add_argument('--vocab', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'vocab.txt'))
    ap.add_argument('--tiny-ckpt', default='/tmp/gyolo_tiny/tiny.pt',
                    help='tiny checkpoint from make_fixtures.py --variant tiny (e2e case; "" to skip)')
    ap.add_argument('--full', action='store_true', help='full-size local reference instead of CI fixtures')
    ap.add_argument('--image', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'examples', 'data', 'horses.jpg'))
    ap.add_argument('--conf', type=float, default=0.25, help='--full: NMS confidence threshold')
    args = ap.parse_args()
    U = Upstream(args.upstream, args.vocab)
    if args.full:
        full_reference(U, args)
    else:
        if args.tiny_ckpt and not os.path.exists(args.tiny_ckpt):
            raise SystemExit(f'{args.tiny_ckpt} is missing: run make_fixtures.py --variant tiny (it writes it), '
                             f'or pass --tiny-ckpt ""')
        ci_fixtures(U, args.out, args.tiny_ckpt, args.seed)


if __name__ == '__main__':
    main()
