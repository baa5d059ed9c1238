#!/usr/bin/python3
"""Compare raw .npy outputs of the C++ port against a reference directory.

Usage:
    /usr/bin/python3 weights_tools/compare_raw.py REF_DIR OUR_DIR [--tol 1e-3] [--names input,pred,...]

For each name (default: input, pred, proto, semantic) whose <name>.npy exists in
both directories, prints name, shape, max|diff|, max|ref| and ratio =
max|diff| / max(max|ref|, 1e-12).  Exit status 1 if any shape differs or any
ratio exceeds --tol, 2 if nothing could be compared.
"""
import argparse
import os
import sys

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description='compare reference and port .npy outputs')
    ap.add_argument('ref_dir')
    ap.add_argument('our_dir')
    ap.add_argument('--tol', type=float, default=1e-3, help='max allowed max|diff|/max|ref| (default 1e-3)')
    ap.add_argument('--names', default='input,pred,proto,semantic',
                    help='comma-separated .npy base names to compare')
    ap.add_argument('--split-pred', action='store_true',
                    help='also compare pred channels 0:4 (boxes), 4:4+nc (scores), the rest (coefficients) separately')
    ap.add_argument('--nc', type=int, default=80)
    args = ap.parse_args(argv)

    failed, compared = False, 0
    print(f'{"name":<12} {"shape":<22} {"max|diff|":>12} {"max|ref|":>12} {"ratio":>10}')
    for name in [n for n in args.names.split(',') if n]:
        rp = os.path.join(args.ref_dir, name + '.npy')
        op = os.path.join(args.our_dir, name + '.npy')
        if not (os.path.exists(rp) and os.path.exists(op)):
            continue
        ref, our = np.load(rp), np.load(op)
        if ref.shape != our.shape:
            print(f'{name:<12} shape mismatch: ref {ref.shape} vs ours {our.shape}  FAIL')
            failed = True
            continue
        parts = [(name, ref, our)]
        if name == 'pred' and args.split_pred:
            nc = args.nc
            for part, sl in (('.box', slice(0, 4)), ('.scores', slice(4, 4 + nc)), ('.coef', slice(4 + nc, None))):
                parts.append((name + part, ref[:, sl], our[:, sl]))
        for pname, pref, pour in parts:
            bad, ok = compare_one(pname, pref, pour, args.tol)
            failed |= bad
            compared += ok
    if compared == 0 and not failed:
        print('nothing to compare', file=sys.stderr)
        return 2
    return 1 if failed else 0


def compare_one(name, ref, our, tol):
    ref64, our64 = ref.astype(np.float64), our.astype(np.float64)
    if ref.size == 0:
        diff = mref = 0.0
    else:
        diff = float(np.max(np.abs(ref64 - our64)))
        mref = float(np.max(np.abs(ref64)))
    if not np.all(np.isfinite(our64)):
        diff = float('inf')
    ratio = diff / max(mref, 1e-12)
    bad = not (ratio <= tol)
    print(f'{name:<14} {str(tuple(ref.shape)):<22} {diff:12.4e} {mref:12.4e} {ratio:10.3e}'
          f'{"  FAIL" if bad else ""}')
    return bad, 1


if __name__ == '__main__':
    sys.exit(main())
