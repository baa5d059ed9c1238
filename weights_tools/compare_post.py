#!/usr/bin/python3
"""Compare `gyolo predict --save-raw` outputs with upstream's post-processed reference
(make_post_fixtures.py --full) and print the done-when figures:

  detections  same count and classes; boxes (input pixels) within 0.05 px; scores within 1e-4
  masks       IoU >= 0.99 for every matched instance, at the input and the original resolution
  semantic    >= 99.9 % equal pixels (input resolution: channel arg-max; original: COCO ids PNG)
  panoptic    >= 99.5 % equal pixels of the COCO panoptic PNG (id = R + 256 G + 256^2 B)

  /usr/bin/python3 weights_tools/compare_post.py REF_CASE_DIR OUR_OUT_DIR STEM
Exit status 1 if a criterion fails.
"""
import json
import os
import sys

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_post_fixtures import rle_decode  # noqa: E402

SEM_IDS = None


def semantic_ids():
    # COCO id of each semantic channel (spec Appendix B)
    things = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32, 33,
              34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61,
              62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90]
    return np.array(things + list(range(92, 184)) + [0], np.int64)


def iou(a, b):
    a, b = a.astype(bool), b.astype(bool)
    u = (a | b).sum()
    return 1.0 if u == 0 else (a & b).sum() / u


def main():
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    ref_dir, our_dir, stem = sys.argv[1:]
    ok = True
    ref = json.load(open(os.path.join(ref_dir, 'ref.json')))
    rdet = np.load(os.path.join(ref_dir, 'det.npy'))
    rmask_in = np.load(os.path.join(ref_dir, 'masks_input.npy'))
    rmask_or = np.load(os.path.join(ref_dir, 'masks_orig.npy'))
    raw = os.path.join(our_dir, stem + '_raw')
    odet = np.load(os.path.join(raw, 'det.npy'))
    omask_in = np.load(os.path.join(raw, 'masks.npy'))
    oj = json.load(open(os.path.join(our_dir, stem + '.json')))
    h0, w0 = oj['height'], oj['width']
    print(f'detections: ours {len(odet)}, upstream {len(rdet)} (conf {ref["nms"]["conf"]})')
    # match each upstream detection to ours: same class, box within 0.05 px, score within 1e-4
    used = np.zeros(len(odet), bool)
    pairs = []
    for i, r in enumerate(rdet):
        cand = np.nonzero((~used) & (odet[:, 5] == r[5]) & (np.abs(odet[:, 4] - r[4]) <= 1e-4) &
                          (np.abs(odet[:, :4] - r[:4]).max(1) <= 0.05))[0]
        if len(cand):
            j = cand[np.argmin(np.abs(odet[cand, :4] - r[:4]).max(1))]
            used[j] = True
            pairs.append((i, j))
    same_order = sum(i == j for i, j in pairs)
    print(f'  matched {len(pairs)} of {len(rdet)} (same position in the NMS order: {same_order})')
    if pairs:
        bd = max(np.abs(odet[j, :4] - rdet[i, :4]).max() for i, j in pairs)
        sd = max(abs(odet[j, 4] - rdet[i, 4]) for i, j in pairs)
        print(f'  max |box diff| {bd:.2e} px, max |score diff| {sd:.2e}')
    if len(pairs) != len(rdet) or len(odet) != len(rdet):
        ok = False
        print('  FAIL: detections differ')
    # masks
    ious_in, ious_or = [], []
    for i, j in pairs:
        ious_in.append(iou(omask_in[j], rmask_in[i]))
        m = oj['detections'][j]['mask']
        ious_or.append(iou(rle_decode(m['counts'], h0, w0), rmask_or[i]))
    if pairs:
        nz = sum(1 for i, _ in pairs if rmask_or[i].any())
        print(f'masks: {nz} of {len(pairs)} non-empty; min IoU input {min(ious_in):.5f}, original {min(ious_or):.5f}; '
              f'below 0.99: {sum(v < 0.99 for v in ious_in)} / {sum(v < 0.99 for v in ious_or)}; '
              f'identical: {sum(v == 1.0 for v in ious_in)} / {sum(v == 1.0 for v in ious_or)}')
        if min(ious_in) < 0.99 or min(ious_or) < 0.99:
            ok = False
            print('  FAIL: mask IoU below 0.99')
    # semantic
    sin = np.load(os.path.join(raw, 'semantic_argmax.npy'))
    rin = np.load(os.path.join(ref_dir, 'sem_input.npy'))
    a_in = (sin == rin).mean()
    sem_png = cv2.imread(os.path.join(our_dir, oj['semantic']['png']), cv2.IMREAD_UNCHANGED)
    ror = semantic_ids()[np.load(os.path.join(ref_dir, 'sem_orig.npy'))]
    a_or = (sem_png.astype(np.int64) == ror).mean()
    print(f'semantic: {100 * a_in:.4f} % equal at the input resolution, {100 * a_or:.4f} % at the original')
    if a_in < 0.999 or a_or < 0.999:
        ok = False
        print('  FAIL: semantic agreement below 99.9 %')
    # panoptic
    pan = cv2.imread(os.path.join(our_dir, oj['panoptic']['png']), cv2.IMREAD_UNCHANGED)[:, :, ::-1].astype(np.uint32)
    ids = pan[:, :, 0] + 256 * pan[:, :, 1] + 65536 * pan[:, :, 2]
    rp = np.load(os.path.join(ref_dir, 'panoptic.npy'))
    a_p = (ids == rp).mean()
    rs = {(s['id'], s['category_id']) for s in ref['segments']}
    osg = {(s['id'], s['category_id']) for s in oj['panoptic']['segments_info']}
    print(f'panoptic: {100 * a_p:.4f} % equal pixels; segments ours {len(osg)}, upstream {len(rs)}, common {len(rs & osg)}')
    if a_p < 0.995:
        ok = False
        print('  FAIL: panoptic agreement below 99.5 %')
    print('PASS' if ok else 'FAIL')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
