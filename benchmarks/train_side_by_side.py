#!/usr/bin/python3
"""One training step (forward + backward of layers 0-55, auxiliary branch included, caption head
left out) of GYOLO: gyolo (C++) side by side with upstream's PyTorch model in train mode.

Both run the same objective, L = sum of every training output of head 55 (d1, d2, d3, mc, p, s),
on the same deterministic input, batch B at S x S, with the same thread count, and report the
median step time over --runs steps (after one warm-up step) and the peak resident memory of the
process. Upstream is built from its gyolo.yaml with random weights (our make_fixtures.py recipe).

  /usr/bin/python3 benchmarks/train_side_by_side.py --upstream /tmp/upstream \
      --gyolo build/bin/gyolo_train_bench [--imgsz 640] [--batch 2] [--threads 2] [--runs 3]
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'weights_tools'))


def torch_side(args):
    """Runs in a child process: prints one JSON line."""
    import resource
    import numpy as np
    import make_fixtures as MF
    Y = MF.setup_upstream(args.upstream, MF.DEFAULT_VOCAB)
    import torch
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = MF.build_model(Y, os.path.join(os.path.abspath(args.upstream), 'models/caption/gyolo.yaml'))
    MF.randomize(model, 1)
    model.model[56].forward = lambda x: None  # caption head: not in gyolo's train graph yet
    model.train()
    n = args.batch * 3 * args.imgsz * args.imgsz
    x = torch.from_numpy(((np.arange(n, dtype=np.int64) * 7919) % 1000).astype(np.float32) / 1000.0)
    x = x.reshape(args.batch, 3, args.imgsz, args.imgsz)

    def flat(o):
        if isinstance(o, torch.Tensor):
            return [o]
        r = []
        for e in o:
            r += flat(e)
        return r

    fwd, bwd = [], []
    for i in range(args.runs + 1):
        model.zero_grad(set_to_none=False)
        t0 = time.perf_counter()
        outs = flat(model(x)['detect'])
        loss = sum(o.sum() for o in outs)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        if i > 0:
            fwd.append((t1 - t0) * 1e3)
            bwd.append((t2 - t1) * 1e3)
    med = lambda v: sorted(v)[len(v) // 2]
    tot = [a + b for a, b in zip(fwd, bwd)]
    print(json.dumps({'forward_ms': med(fwd), 'backward_ms': med(bwd), 'step_ms': med(tot),
                      'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                      'torch': torch.__version__, 'threads': torch.get_num_threads()}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--upstream', default='/tmp/upstream')
    ap.add_argument('--gyolo', default=os.path.join(HERE, '..', 'build', 'bin', 'gyolo_train_bench'))
    ap.add_argument('--imgsz', type=int, default=640)
    ap.add_argument('--batch', type=int, default=2)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--torch-child', action='store_true', help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_child:
        torch_side(args)
        return
    common = ['--imgsz', str(args.imgsz), '--batch', str(args.batch), '--threads', str(args.threads)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    # gyolo: runs + 1 steps, the first is the warm-up (reported as first_step_ms)
    g = json.loads(subprocess.run([args.gyolo] + common + ['--runs', str(args.runs + 1)], check=True, env=env,
                                  capture_output=True, text=True).stdout)
    t = json.loads(subprocess.run([sys.executable, os.path.abspath(__file__), '--torch-child', '--upstream', args.upstream,
                                   '--runs', str(args.runs)] + common, check=True, env=env, capture_output=True,
                                  text=True).stdout.strip().split('\n')[-1])
    out = {'imgsz': args.imgsz, 'batch': args.batch, 'threads': args.threads, 'runs': args.runs, 'gyolo': g, 'pytorch': t,
           'speedup_step': t['step_ms'] / g['step_ms'], 'speedup_forward': t['forward_ms'] / g['forward_ms'],
           'speedup_backward': t['backward_ms'] / g['backward_ms'], 'memory_ratio': g['peak_rss_mb'] / t['peak_rss_mb'],
           'loadavg': os.getloadavg()[0]}
    print(json.dumps(out))


if __name__ == '__main__':
    main()
