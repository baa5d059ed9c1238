#!/usr/bin/python3
"""Side-by-side speed of gyolo and upstream PyTorch eager on the same machine, same weights.

    /usr/bin/python3 benchmarks/side_by_side.py --upstream /tmp/upstream \
        --checkpoint /tmp/full_ref/gyolo_random.pt --gguf /tmp/full_ref/gyolo_random.gguf \
        [--sizes 320,640] [--threads 2] [--rounds 3]

Upstream is loaded as predict.py loads it (attempt_load: float, fuse, eval) and timed on the vision
part of its forward (Grit switched off; upstream still runs its auxiliary branch, as its users do).
gyolo is timed with build/bin/gyolo_bench (BM_vision). Rounds alternate between the two so that
machine load affects both alike; the table reports medians and the ratio.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'weights_tools'))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--upstream', required=True)
    ap.add_argument('--checkpoint', required=True)
    ap.add_argument('--gguf', required=True)
    ap.add_argument('--sizes', default='320,640')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--reps', type=int, default=5)
    ap.add_argument('--bench', default=os.path.join(HERE, '..', 'build', 'bin', 'gyolo_bench'))
    a = ap.parse_args()

    import make_fixtures as mf
    import torch
    Y = mf.setup_upstream(a.upstream, mf.DEFAULT_VOCAB)
    torch.set_num_threads(a.threads)
    model = mf.load_like_predict(Y, a.checkpoint)
    model.model[56].forward = lambda x: None  # vision only
    sizes = [int(s) for s in a.sizes.split(',')]
    res = {s: {'pytorch': [], 'gyolo': []} for s in sizes}
    env = dict(os.environ, GYOLO_THREADS=str(a.threads), GYOLO_WEIGHTS=a.gguf)
    for r in range(a.rounds):
        for s in sizes:
            x = torch.rand(1, 3, s, s)
            with torch.no_grad():
                model(x)
                ts = []
                for _ in range(a.reps):
                    t0 = time.perf_counter()
                    model(x)
                    ts.append((time.perf_counter() - t0) * 1e3)
            res[s]['pytorch'].append(statistics.median(ts))
            out = subprocess.run([a.bench, f'--benchmark_filter=BM_vision/{s}/', '--benchmark_format=json',
                                  '--benchmark_min_time=2'], env=env, capture_output=True, text=True, check=True)
            js = json.loads(out.stdout)
            res[s]['gyolo'].append(js['benchmarks'][0]['real_time'])
            print(f'round {r}: {s}x{s} pytorch {res[s]["pytorch"][-1]:.1f} ms, gyolo {res[s]["gyolo"][-1]:.1f} ms',
                  flush=True)
    print(f'\n| input | PyTorch eager (ms, median of rounds) | gyolo (ms) | gyolo / PyTorch |')
    print('|---|---|---|---|')
    for s in sizes:
        p, g = statistics.median(res[s]['pytorch']), statistics.median(res[s]['gyolo'])
        print(f'| {s}x{s} | {p:.0f} ({min(res[s]["pytorch"]):.0f}-{max(res[s]["pytorch"]):.0f}) | '
              f'{g:.0f} ({min(res[s]["gyolo"]):.0f}-{max(res[s]["gyolo"]):.0f}) | {g / p:.2f} |')


if __name__ == '__main__':
    main()
