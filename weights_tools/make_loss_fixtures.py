#!/usr/bin/env python3
"""Fixtures for the vision loss's target assignment (Training II), made by upstream's own functions.

    /usr/bin/python3 weights_tools/make_loss_fixtures.py --upstream /tmp/upstream --out tests/fixtures/loss

Upstream code is NOT part of this repository: pass its checkout with --upstream.  What is written
(.npy, float32 unless said):

  ciou.b1, ciou.b2 [N, 4] xyxy, ciou.out [N]      utils/metrics.py bbox_iou(b1, b2, xywh=False, CIoU=True)
  decode.dist [A, 64], decode.anc [A, 2], decode.out [A, 4]
                                                  ComputeLossLH.bbox_decode (DFL softmax expectation, dist2bbox)
  tal.<case>.*                                    TaskAlignedAssigner(topk, 80, 0.5, 6.0).forward on one batch:
      inputs  scores [B, A, 80] (sigmoids), boxes [B, A, 4] xyxy px, anc [A, 2] px, targets [n, 6]
              (image, class, x, y, w, h normalised), hw [2] int32 (input size), topk [1] int32
      outputs labels [B, A] int32, tboxes [B, A, 4], tscores [B, A, 80], fg [B, A] uint8, gt_idx [B, A] int32
      (the GT tensors the assigner receives come from ComputeLossLH.preprocess, run here too)

Cases: random (three objects and one), none (no objects), one, overlapping (five objects on top of
each other, anchors claimed twice), border (boxes touching the image border), and the one-to-one
assigner (topk 1).  Every case is checked to be STABLE: the metric that decides a top-k selection
and the CIoU that resolves an anchor claimed twice are separated from the next one by a relative gap
of 1e-4 at least, and no object has fewer than topk positive-metric candidates while one of its
in-box anchors has metric 0 (the order torch.topk gives equal values is not defined).  Cases are
redrawn with the next seed until stable.
"""
import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

NC = 80
HW = (64, 96)
STRIDES = (8, 16, 32)


def setup(upstream):
    import _upstream_stubs
    _upstream_stubs.install(os.environ.get('GYOLO_VOCAB', '/work/shared/data/vocab.txt'))
    up = os.path.abspath(upstream)
    if up not in sys.path:
        sys.path.insert(0, up)
    import torch
    torch.set_num_threads(1)
    from utils.metrics import bbox_iou
    from utils.panoptic.tal.assigner import TaskAlignedAssigner
    from utils.panoptic.tal.anchor_generator import make_anchors, dist2bbox
    import utils.caption.loss_tal_dual as LTD
    return torch, bbox_iou, TaskAlignedAssigner, make_anchors, dist2bbox, LTD


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--upstream', required=True)
    ap.add_argument('--out', required=True)
    args = ap.parse_args()
    torch, bbox_iou, TAL, make_anchors, dist2bbox, LTD = setup(args.upstream)
    os.makedirs(args.out, exist_ok=True)
    written = []

    def save(name, a, dtype=np.float32):
        a = np.ascontiguousarray(np.asarray(a).astype(dtype))
        np.save(os.path.join(args.out, name + '.npy'), a)
        written.append(name)

    # ---- CIoU on box pairs: random, identical, disjoint, nested, degenerate (zero width / height)
    g = np.random.default_rng(7)
    b1 = np.concatenate([g.uniform(0, 50, (40, 2)), np.zeros((40, 2))], 1)
    b1[:, 2:] = b1[:, :2] + g.uniform(0.5, 40, (40, 2))
    b2 = b1 + g.normal(0, 6, (40, 4))
    b2[:, 2:] = np.maximum(b2[:, 2:], b2[:, :2] + 0.25)
    extra1 = [[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 4, 4], [2, 2, 8, 8], [5, 5, 5, 9], [1, 1, 6, 1]]
    extra2 = [[0, 0, 10, 10], [20, 20, 30, 35], [0, 0, 40, 40], [0, 0, 10, 10], [4, 4, 9, 9], [1, 0, 6, 2]]
    b1 = np.concatenate([b1, extra1]).astype(np.float32)
    b2 = np.concatenate([b2, extra2]).astype(np.float32)
    ciou = bbox_iou(torch.from_numpy(b1), torch.from_numpy(b2), xywh=False, CIoU=True).squeeze(-1)
    save('ciou.b1', b1)
    save('ciou.b2', b2)
    save('ciou.out', ciou.numpy())

    # ---- anchors and bbox_decode, as ComputeLossLH runs them
    feats = [torch.zeros(1, 1, HW[0] // s, HW[1] // s) for s in STRIDES]
    anc, stride_t = make_anchors(feats, torch.tensor(STRIDES, dtype=torch.float32), 0.5)
    A = anc.shape[0]
    proj = torch.arange(16).float()
    dist = torch.from_numpy(np.random.default_rng(8).normal(0, 2, (A, 64)).astype(np.float32))
    dec = dist2bbox(dist.view(1, A, 4, 16).softmax(3).matmul(proj), anc, xywh=False)[0]
    save('decode.dist', dist.numpy())
    save('decode.anc', anc.numpy())
    save('decode.stride', stride_t.view(-1).numpy())
    save('decode.out', dec.numpy())

    # ---- TaskAlignedAssigner cases
    class _Stub:  # just enough of ComputeLoss for its preprocess()
        device = torch.device('cpu')
    preprocess = LTD.ComputeLossLH.preprocess

    def objects(kind, rng):
        """targets rows (image, class, x, y, w, h), normalised."""
        if kind == 'none':
            return np.zeros((0, 6))
        if kind == 'one':
            return np.array([[1, 17, 0.45, 0.55, 0.5, 0.6]])
        if kind == 'overlapping':
            c = rng.uniform(0.4, 0.6, 2)
            rows = [[0, rng.integers(0, NC), *(c + rng.normal(0, 0.03, 2)), *rng.uniform(0.35, 0.7, 2)] for _ in range(5)]
            return np.array(rows + [[1, 3, 0.5, 0.5, 0.6, 0.7]])
        if kind == 'border':
            return np.array([[0, 5, 0.15, 0.2, 0.3, 0.4],     # touches left and top
                             [0, 9, 0.8, 0.75, 0.4, 0.5],     # touches right and bottom
                             [1, 60, 0.5, 0.5, 1.0, 1.0]])    # the whole image
        # random: three objects in image 0, one in image 1
        rows = []
        for img, n in ((0, 3), (1, 1)):
            for _ in range(n):
                wh = rng.uniform(0.3, 0.8, 2)
                xy = rng.uniform(wh / 2, 1 - wh / 2)
                rows.append([img, rng.integers(0, NC), *xy, *wh])
        return np.array(rows)

    def predictions(rng, B):
        logits = rng.normal(-2, 2, (B, A, NC)).astype(np.float32)
        d = torch.from_numpy(rng.normal(0, 1.5, (B, A, 64)).astype(np.float32))
        boxes = dist2bbox(d.view(B, A, 4, 16).softmax(3).matmul(proj), anc, xywh=False) * stride_t
        return torch.from_numpy(logits).sigmoid(), boxes

    def stable(res, tal, scores, boxes, anc_px, gt_labels, gt_bboxes, mask_gt, topk):
        """True when no selection hinges on a near-tie (see the module docstring)."""
        tal.bs, tal.n_max_boxes = scores.shape[0], gt_bboxes.shape[1]  # set by forward() upstream
        align, overlaps = tal.get_box_metrics(scores, boxes, gt_labels, gt_bboxes)
        in_gts = (torch.cat((anc_px[None] - gt_bboxes.view(-1, 1, 4)[..., :2],
                             gt_bboxes.view(-1, 1, 4)[..., 2:] - anc_px[None]), 2).amin(2) > 1e-9)
        in_gts = in_gts.view(align.shape)
        B, M, _ = align.shape
        for b in range(B):
            for m in range(M):
                if not mask_gt[b, m, 0]:
                    continue
                cand = (align[b, m] * in_gts[b, m]).numpy()
                pos = np.sort(cand[cand > 0])[::-1]
                zero_in = bool(((cand == 0) & in_gts[b, m].numpy()).any())
                if len(pos) < topk and zero_in:
                    return False, 'object %d/%d: %d positive candidates and a zero-metric in-box anchor' % (b, m, len(pos))
                if len(pos) > topk and (pos[topk - 1] - pos[topk]) <= 1e-4 * pos[topk - 1]:
                    return False, 'object %d/%d: top-k boundary near-tie' % (b, m)
                if len(pos) > 1 and (np.abs(np.diff(pos[:topk + 1])) <= 1e-6 * pos[0]).any():
                    return False, 'object %d/%d: equal metrics' % (b, m)
        # anchors claimed by several objects: the CIoU argmax must be clear
        mask_pos, _, _ = tal.get_pos_mask(scores, boxes, gt_labels, gt_bboxes, anc_px, mask_gt)
        multi = mask_pos.sum(1) > 1
        for b, a in multi.nonzero().tolist():
            ov = np.sort(overlaps[b, :, a].numpy())[::-1]
            if ov[0] - ov[1] <= 1e-4 * max(ov[0], 1e-12):
                return False, 'anchor %d/%d: claimed twice with near-equal CIoU' % (b, a)
        # the normalised metric of a positive anchor: max over objects must be clear too
        return True, ''

    cases = [('random', 10), ('none', 10), ('one', 10), ('overlapping', 10), ('border', 10), ('o2o', 1)]
    for name, topk in cases:
        kind = 'random' if name == 'o2o' else name
        B = 2
        for seed in range(100, 400):
            rng = np.random.default_rng(seed)
            targets = objects(kind, rng).astype(np.float32)
            scores, boxes = predictions(rng, B)
            tal = TAL(topk=topk, num_classes=NC, alpha=0.5, beta=6.0)
            imgsz = torch.tensor(HW, dtype=torch.float32)
            t = preprocess(_Stub(), torch.from_numpy(targets), B, scale_tensor=imgsz[[1, 0, 1, 0]])
            gt_labels, gt_bboxes = t.split((1, 4), 2)
            mask_gt = gt_bboxes.sum(2, keepdim=True).gt_(0)
            anc_px = anc * stride_t
            if gt_bboxes.shape[1]:
                ok, why = stable(None, tal, scores, boxes, anc_px, gt_labels, gt_bboxes, mask_gt, topk)
                if not ok:
                    print('  %s seed %d redrawn: %s' % (name, seed, why))
                    continue
            labels, tboxes, tscores, fg, gt_idx = tal(scores, boxes, anc_px, gt_labels, gt_bboxes, mask_gt)
            twice = 0
            if gt_bboxes.shape[1]:
                mp, _, _ = tal.get_pos_mask(scores, boxes, gt_labels, gt_bboxes, anc_px, mask_gt)
                twice = int((mp.sum(1) > 1).sum())
            break
        else:
            raise SystemExit('no stable draw for case ' + name)
        p = 'tal.%s.' % name
        save(p + 'scores', scores.numpy())
        save(p + 'boxes', boxes.numpy())
        save(p + 'anc', anc_px.numpy())
        save(p + 'targets', targets.reshape(-1, 6))
        save(p + 'hw', np.array(HW), np.int32)
        save(p + 'topk', np.array([topk]), np.int32)
        save(p + 'labels', labels.numpy(), np.int32)
        save(p + 'tboxes', tboxes.numpy())
        save(p + 'tscores', tscores.numpy())
        save(p + 'fg', fg.numpy(), np.uint8)
        save(p + 'gt_idx', gt_idx.numpy(), np.int32)
        print('%-12s seed %d: %d objects, %d positives (%d claimed twice), score sum %.6g'
              % (name, seed, len(targets), int(fg.sum()), twice, float(tscores.sum())))
    vision_loss_cases(torch, LTD, TAL, make_anchors, stable, save)
    optim_cases(torch, save)
    print('wrote %d arrays to %s' % (len(written), args.out))


def sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2.0, reduction='none'):
    """torchvision.ops.sigmoid_focal_loss (RetinaNet's focal loss), written from its documented
    definition: BCE-with-logits times (1 - p_t)^gamma times alpha_t, reduced."""
    import torch
    import torch.nn.functional as F
    p = torch.sigmoid(inputs)
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction='none')
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    if reduction == 'mean':
        return loss.mean()
    if reduction == 'sum':
        return loss.sum()
    return loss


def vision_loss_cases(torch, LTD, TAL, make_anchors, stable, save):
    """ComputeLossLH (overlap=False, as the README's --no-overlap) on random head outputs: the six
    loss items, the total, and autograd's gradient of the total with respect to every raw output.

      vl.<case>.d<k>_<l> [B, 64 + nc, H_l, W_l]   k = 0 aux one-to-many, 1 main, 2 one-to-one
      vl.<case>.mc<k> [B, nm, A], vl.<case>.p<k> [B, nm, Hm, Wm], vl.<case>.s<k> [B, S, Hm, Wm]
      vl.<case>.targets [n, 6], vl.<case>.masks [n, Hm, Wm], vl.<case>.semasks [B, S, Hm, Wm]
      vl.<case>.items [6] (box, seg, cls, dfl, sem, dice), vl.<case>.total [1]
      vl.<case>.g.<name>: d(total)/d(<name>) for every output above
    nc = 12, nm = 8, S = 13 semantic channels, 64x64 input (the loss does not depend on the sizes).
    """
    import torch.nn as nn
    LTD.sigmoid_focal_loss = sigmoid_focal_loss  # torchvision is not installed here
    nc, nm, S, H, W, B = 12, 8, 13, 64, 64, 2
    strides = (8, 16, 32)

    class DualDPanoptic(nn.Module):  # what ComputeLossLH reads from the model's last layer
        def __init__(self):
            super().__init__()
            self.stride = torch.tensor(strides, dtype=torch.float32)
            self.nc, self.nl, self.nm, self.reg_max = nc, 3, nm, 16
            self.no = nc + 16 * 4
            self.w = nn.Parameter(torch.zeros(1))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = nn.ModuleList([DualDPanoptic()])
            self.hyp = {'cls_pw': 1.0, 'fl_gamma': 0.0, 'label_smoothing': 0.0}

    loss_fn = LTD.ComputeLossLH(Model(), overlap=False)
    feats = [torch.zeros(1, 1, H // s, W // s) for s in strides]
    anc, stride_t = make_anchors(feats, torch.tensor(strides, dtype=torch.float32), 0.5)
    A, Hm, Wm = anc.shape[0], H // 4, W // 4

    for case in ('random', 'one_empty'):
        for seed in range(500, 800):
            rng = np.random.default_rng(seed)
            rows = []
            for img, n in ((0, 3), (1, 2 if case == 'random' else 0)):
                for _ in range(n):
                    wh = rng.uniform(0.3, 0.8, 2)
                    xy = rng.uniform(wh / 2, 1 - wh / 2)
                    rows.append([img, rng.integers(0, nc), *xy, *wh])
            targets = np.array(rows, dtype=np.float32)
            masks = np.zeros((len(rows), Hm, Wm), np.float32)
            yy, xx = np.mgrid[0:Hm, 0:Wm] + 0.5
            for j, r in enumerate(rows):  # an ellipse inside each box, at 1/4 resolution
                cx, cy, w, h = r[2] * Wm, r[3] * Hm, r[4] * Wm, r[5] * Hm
                masks[j] = (((xx - cx) / (w / 2)) ** 2 + ((yy - cy) / (h / 2)) ** 2 <= 1).astype(np.float32)
            semasks = (rng.uniform(0, 1, (B, S, Hm, Wm)) < 0.15).astype(np.float32)
            outs = {}
            for k in range(3):
                for l, s_ in enumerate(strides):
                    a = rng.normal(0, 1.5, (B, 64 + nc, H // s_, W // s_)).astype(np.float32)
                    a[:, 64:] -= 2.0  # class logits mostly negative, as a detector's
                    outs['d%d_%d' % (k, l)] = a
            for k in range(2):
                outs['mc%d' % k] = rng.normal(0, 1, (B, nm, A)).astype(np.float32)
                outs['p%d' % k] = rng.normal(0, 1, (B, nm, Hm, Wm)).astype(np.float32)
                outs['s%d' % k] = rng.normal(-1, 2, (B, S, Hm, Wm)).astype(np.float32)
            T = {k: torch.from_numpy(v).requires_grad_(True) for k, v in outs.items()}
            # the assigners' inputs, to check the draw is free of near-ties
            ok = True
            for k, topk in ((1, 10), (2, 1)):
                cat = torch.cat([T['d%d_%d' % (k, l)].detach().view(B, 64 + nc, -1) for l in range(3)], 2)
                dist, sc = cat.split((64, nc), 1)
                sc = sc.permute(0, 2, 1).sigmoid()
                bx = loss_fn.bbox_decode(anc, dist.permute(0, 2, 1).contiguous()) * stride_t
                t = loss_fn.preprocess(torch.from_numpy(targets).view(-1, 6), B, torch.tensor([W, H, W, H], dtype=torch.float32))
                gl, gb = t.split((1, 4), 2)
                mg = gb.sum(2, keepdim=True).gt_(0)
                good, why = stable(None, TAL(topk=topk, num_classes=nc, alpha=0.5, beta=6.0), sc, bx, anc * stride_t, gl, gb, mg, topk)
                if not good:
                    print('  vl.%s seed %d redrawn: %s' % (case, seed, why))
                    ok = False
                    break
            if ok:
                break
        else:
            raise SystemExit('no stable draw for vision loss case ' + case)
        d = [[T['d%d_%d' % (k, l)] for l in range(3)] for k in range(3)]
        p = (d, [T['mc0'], T['mc1']], [T['p0'], T['p1']], [T['s0'], T['s1']])
        total, items = loss_fn(p, torch.from_numpy(targets).view(-1, 6), torch.from_numpy(masks), torch.from_numpy(semasks))
        total.backward()
        pre = 'vl.%s.' % case
        for k, v in outs.items():
            save(pre + k, v)
            save(pre + 'g.' + k, T[k].grad.numpy())
        save(pre + 'targets', targets.reshape(-1, 6))
        save(pre + 'masks', masks)
        save(pre + 'semasks', semasks)
        save(pre + 'items', items.numpy())
        save(pre + 'total', total.detach().view(1).numpy())
        print('vl.%-10s seed %d: items %s total %.6g' % (case, seed, np.array2string(items.numpy(), precision=5), float(total)))


def optim_cases(torch, save):
    """torch.optim.AdamW / SGD(nesterov) over three steps with per-group learning rates, as upstream's
    custom_optimizer builds them (group 0 biases, 1 norm weights, 2 weights with decay);
    clip_grad_norm_; utils/general.py one_flat_cycle; utils/torch_utils.py ModelEMA.

      opt.p<i>.init, opt.g<i>.step<s> [shape], opt.lr [steps, 3]
      opt.adamw.p<i>, opt.adamw.m<i>, opt.adamw.v<i>; opt.sgd.p<i>       after the three steps
      opt.clip.g<i>, opt.clip.out<i>.<max_norm>, opt.clip.total          clip_grad_norm_ at 10 and 0.05
      opt.flat [61, 2]: one_flat_cycle(1, 0.125 / 0.25, 60)(x) for x = 0..60
      opt.ema.<name> (model after each update: opt.ema.model<u>.<name>), opt.ema.out.<name>
    """
    import torch.nn as nn
    from utils.general import one_flat_cycle
    from utils.torch_utils import ModelEMA
    g = torch.Generator().manual_seed(3)
    shapes = [(6, 3, 3, 3), (6,), (6,), (5,), (4, 5)]
    groups = [2, 1, 0, 0, 2]  # conv weight, bn weight, bn bias, linear bias, linear weight
    init = [torch.randn(s, generator=g) for s in shapes]
    steps = 3
    grads = [[torch.randn(s, generator=g) * 0.1 for s in shapes] for _ in range(steps)]
    lrs = np.array([[0.01, 0.0, 0.0], [0.007, 0.002, 0.002], [0.004, 0.004, 0.004]])
    for i, t in enumerate(init):
        save('opt.p%d.init' % i, t.numpy())
        for s_ in range(steps):
            save('opt.g%d.step%d' % (i, s_), grads[s_][i].numpy())
    save('opt.lr', lrs, np.float64)
    save('opt.groups', np.array(groups), np.int32)

    def run(make):
        ps = [nn.Parameter(t.clone()) for t in init]
        gs = [[p for p, gi in zip(ps, groups) if gi == j] for j in range(3)]
        o = make(gs[0])
        o.add_param_group({'params': gs[1], 'weight_decay': 0.0})
        o.add_param_group({'params': gs[2], 'weight_decay': 0.005})
        for s_ in range(steps):
            for j, grp in enumerate(o.param_groups):
                grp['lr'] = float(lrs[s_, j])
            for p, gr in zip(ps, grads[s_]):
                p.grad = gr.clone()
            o.step()
        return ps, o
    ps, o = run(lambda g0: torch.optim.AdamW(g0, lr=0.004, betas=(0.937, 0.999), eps=1e-4, weight_decay=0.0))
    for i, p in enumerate(ps):
        save('opt.adamw.p%d' % i, p.detach().numpy())
        save('opt.adamw.m%d' % i, o.state[p]['exp_avg'].numpy())
        save('opt.adamw.v%d' % i, o.state[p]['exp_avg_sq'].numpy())
    ps, o = run(lambda g0: torch.optim.SGD(g0, lr=0.01, momentum=0.937, nesterov=True))
    for i, p in enumerate(ps):
        save('opt.sgd.p%d' % i, p.detach().numpy())
    # clip_grad_norm_
    for i, gr in enumerate(grads[0]):
        save('opt.clip.g%d' % i, gr.numpy())
    for mx in (10.0, 0.05):
        ps = [nn.Parameter(t.clone()) for t in init]
        for p, gr in zip(ps, grads[0]):
            p.grad = gr.clone()
        total = torch.nn.utils.clip_grad_norm_(ps, max_norm=mx)
        for i, p in enumerate(ps):
            save('opt.clip.out%d.%g' % (i, mx), p.grad.numpy())
        save('opt.clip.total', total.view(1).numpy())
    # one_flat_cycle, as train.py builds lf and lf2 for 60 epochs
    lf, lf2 = one_flat_cycle(1, 0.125, 60), one_flat_cycle(1, 0.25, 60)
    save('opt.flat', np.array([[lf(x), lf2(x)] for x in range(61)]), np.float64)
    # ModelEMA over a Conv+BN: two updates, the model changed in between
    class ConvBN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 6, 3, bias=False)
            self.bn = nn.BatchNorm2d(6)
    torch.manual_seed(4)
    m = ConvBN()
    with torch.no_grad():
        for v in m.state_dict().values():
            if v.dtype.is_floating_point:
                v.copy_(torch.randn(v.shape))
        m.bn.running_var.abs_()
    ema = ModelEMA(m)
    for k, v in ema.ema.state_dict().items():
        if v.dtype.is_floating_point:
            save('opt.ema.init.' + k, v.numpy())
    for u in range(2):
        with torch.no_grad():
            for v in m.state_dict().values():
                if v.dtype.is_floating_point:
                    v.add_(torch.randn(v.shape) * 0.5)
        for k, v in m.state_dict().items():
            if v.dtype.is_floating_point:
                save('opt.ema.model%d.%s' % (u, k), v.numpy())
        ema.update(m)
    for k, v in ema.ema.state_dict().items():
        if v.dtype.is_floating_point:
            save('opt.ema.out.' + k, v.numpy())
    print('optimizer fixtures: adamw, sgd, clip (total %.6g), flat cycle, ema (%d updates)' % (float(total), ema.updates))


if __name__ == '__main__':
    main()
