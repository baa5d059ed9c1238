#!/usr/bin/python3
"""Side-by-side speed of gyolo, ONNX Runtime and upstream PyTorch eager: same machine, same weights.

fp32, batch 1, square SxS input, 2 threads by default. Set-up (once; run from the repository root):

    apt-get update && apt-get install -y --no-install-recommends python3-torch python3-numpy \
        python3-opencv python3-yaml python3-pil python3-onnx libopenblas0-openmp
        # Debian's torch 1.13 and onnx 1.12. libopenblas0-openmp matters: without it torch's Linear
        # layers (the caption decoder) run on the reference BLAS, ~50x slower (8 s of addmm at 640)
    (cd benchmarks && npm install --onnxruntime-node-install=skip)  # onnxruntime-node 1.30.0 (CPU)
    # upstream checkout, e.g. git clone <WongKinYiu/GeneralistYOLO> /tmp/upstream
    /usr/bin/python3 weights_tools/make_fixtures.py --upstream /tmp/upstream --variant full \
        --out /tmp/sbs/ref --image examples/data/horses.jpg \
        --save-ckpt /tmp/sbs/gyolo_random.pt --gguf /tmp/sbs/gyolo_random.gguf   # random weights
    /usr/bin/python3 benchmarks/export_onnx.py --upstream /tmp/upstream \
        --checkpoint /tmp/sbs/gyolo_random.pt --out-dir /tmp/sbs/onnx --sizes 640,320 \
        --graphs vision,full --check                  # ~1 min per vision file, ~6 min per full file

Run:

    /usr/bin/python3 benchmarks/side_by_side.py --upstream /tmp/upstream \
        --checkpoint /tmp/sbs/gyolo_random.pt --gguf /tmp/sbs/gyolo_random.gguf \
        --onnx-dir /tmp/sbs/onnx [--sizes 640,320] [--threads 2] [--rounds 3] [--runs 5] \
        [--tasks vision|all] [--gyolo build/bin/gyolo] [--gyolo-env GYOLO_ISA=avx2] \
        [--skip ort,pytorch] [--json results.json]

Each round runs, for each size in turn, (1) gyolo, (2) ONNX Runtime, (3) PyTorch; each of them does
one warm-up pass and then --runs timed passes and reports its median. Rounds alternate so that
machine load affects all three alike; the table gives the median (and range) over rounds of those
per-round medians, and the ratios gyolo / ONNX Runtime and gyolo / PyTorch (< 1: gyolo is faster).
A second table gives each tool's fastest single run over all rounds, steadier on a busy machine.

  gyolo        `GYOLO --gyolo-env... bench --weights GGUF --imgsz S --square --runs N --threads T
               --tasks vision|all` (one process per round; its JSON line gives median_ms, stages,
               kernels).
  ONNX Runtime `node benchmarks/ort_bench.js ONNX_DIR/gyolo_{vision|full}_S.onnx S N T` (CPU EP,
               intra-op threads T, inter-op 1, all graph optimisations, sequential). Files come
               from export_onnx.py; a missing file shows as n/a.
  PyTorch      upstream loaded as caption/predict.py loads it (attempt_load: float, fuse, eval),
               in this process, torch.set_num_threads(T), torch.no_grad().

--tasks vision (default): the vision forward only. Upstream's Grit is switched off; PyTorch still
  computes upstream's training-only auxiliary branch in eval and discards it (as its users do),
  whereas gyolo and the ONNX graph (dead code eliminated by the exporter) do not.
--tasks all: gyolo runs its whole pipeline (letterbox of a synthetic picture, vision, NMS, masks,
  semantic, panoptic, caption); ONNX Runtime runs gyolo_full_S.onnx and PyTorch the full forward,
  both vision + caption (beam 5, 20 steps) but no post-processing. The table therefore also gives
  gyolo's vision + caption stage medians ("gyolo fwd") and their ratios, the like-for-like figure.
--gyolo-env KEY=VAL (repeatable) sets variables for gyolo only, e.g. GYOLO_ISA=avx2 to time its
  AVX2 kernels on an AVX-512 machine.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, '..'))
sys.path.insert(0, os.path.join(ROOT, 'weights_tools'))

FLAGS = ('avx2', 'avx512f', 'avx512_bf16', 'amx_tile')


def cpu_info():
    model, flags = '?', set()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                k, _, v = line.partition(':')
                k = k.strip()
                if k == 'model name' and model == '?':
                    model = v.strip()
                elif k == 'flags' and not flags:
                    flags = set(v.split())
    except OSError:
        pass
    return model, {fl: fl in flags for fl in FLAGS}, os.cpu_count()


def loadavg():
    try:
        return open('/proc/loadavg').read().split()[0]
    except OSError:
        return '?'


def fmt(v, spread=None):
    if v is None:
        return 'n/a'
    s = f'{v:.0f}' if v >= 100 else f'{v:.1f}'
    if spread and len(spread) > 1:
        lo, hi = min(spread), max(spread)
        s += f' ({lo:.0f}-{hi:.0f})' if v >= 100 else f' ({lo:.1f}-{hi:.1f})'
    return s


def ratio(a, b):
    return f'**{a / b:.2f}**' if a is not None and b else 'n/a'


def med(xs):
    return statistics.median(xs) if xs else None


def run_json(cmd, env=None, what=''):
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f'{what} failed (rc {p.returncode}): {" ".join(cmd)}\n{p.stderr[-2000:]}')
    lines = [l for l in p.stdout.splitlines() if l.strip().startswith('{')]
    if not lines:
        raise RuntimeError(f'{what}: no JSON line in output of {" ".join(cmd)}:\n{p.stdout[-2000:]}')
    return json.loads(lines[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--upstream', required=True, help='upstream GeneralistYOLO checkout')
    ap.add_argument('--checkpoint', required=True, help='upstream-format .pt (same weights as --gguf)')
    ap.add_argument('--gguf', required=True, help='the .pt converted by weights_tools/convert.py')
    ap.add_argument('--onnx-dir', default=None, help='folder with export_onnx.py output (gyolo_{vision,full}_S.onnx)')
    ap.add_argument('--sizes', default='640', help='comma-separated square sizes, e.g. 640,320')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--runs', type=int, default=5, help='timed passes per tool per round (after one warm-up)')
    ap.add_argument('--tasks', choices=['vision', 'all'], default='vision')
    ap.add_argument('--gyolo', default=os.path.join(ROOT, 'build', 'bin', 'gyolo'), help='gyolo CLI binary')
    ap.add_argument('--gyolo-env', action='append', default=[], metavar='KEY=VAL',
                    help='environment variable for gyolo only (repeatable), e.g. GYOLO_ISA=avx2')
    ap.add_argument('--node', default='node')
    ap.add_argument('--skip', default='', help='comma-separated tools to leave out: gyolo, ort, pytorch')
    ap.add_argument('--json', default=None, help='also write all raw results to this file')
    a = ap.parse_args()

    sizes = [int(s) for s in a.sizes.split(',')]
    skip = {s.strip() for s in a.skip.split(',') if s.strip()}
    bad = skip - {'gyolo', 'ort', 'pytorch'}
    if bad:
        raise SystemExit(f'--skip: unknown {sorted(bad)}')
    runs = max(3, a.runs)   # gyolo bench wants at least 3
    genv = dict(os.environ)
    for kv in a.gyolo_env:
        k, sep, v = kv.partition('=')
        if not sep or not k:
            raise SystemExit(f'--gyolo-env wants KEY=VAL, got {kv!r}')
        genv[k] = v
    graph = 'vision' if a.tasks == 'vision' else 'full'
    onnx = {}
    if 'ort' not in skip:
        for s in sizes:
            f = os.path.join(a.onnx_dir, f'gyolo_{graph}_{s}.onnx') if a.onnx_dir else None
            onnx[s] = f if f and os.path.exists(f) else None
            if onnx[s] is None:
                print(f'note: no ONNX file for {graph} {s}x{s} '
                      f'({f or "no --onnx-dir"}): ONNX Runtime column is n/a', file=sys.stderr)

    model = mf = torch = None
    if 'pytorch' not in skip:
        import make_fixtures as mf
        import torch
        Y = mf.setup_upstream(a.upstream, mf.DEFAULT_VOCAB)
        model = mf.load_like_predict(Y, a.checkpoint)
        torch.set_num_threads(a.threads)   # after setup_upstream, which sets its own
        if a.tasks == 'vision':
            model.model[56].forward = lambda x: None   # Grit off: vision only

    tools = [t for t in ('gyolo', 'ort', 'pytorch') if t not in skip]
    res = {s: {t: [] for t in tools} for s in sizes}
    best = {s: {t: [] for t in tools} for s in sizes}   # per-round fastest single run
    gfwd = {s: [] for s in sizes}       # gyolo vision + caption stages (tasks all)
    gextra = {}
    ort_ver = None
    load0 = loadavg()
    t_start = time.time()
    for r in range(a.rounds):
        for s in sizes:
            line = [f'round {r + 1}/{a.rounds} {s}x{s}:']
            if 'gyolo' in tools:
                js = run_json([a.gyolo, 'bench', '--weights', a.gguf, '--imgsz', str(s), '--square', '--runs',
                               str(runs), '--threads', str(a.threads), '--tasks', a.tasks], genv, 'gyolo bench')
                res[s]['gyolo'].append(js['median_ms'])
                best[s]['gyolo'].append(js['min_ms'])
                st = js.get('stages_median_ms', {})
                if a.tasks == 'all' and 'vision' in st and 'caption' in st:
                    gfwd[s].append(st['vision'] + st['caption'])
                gextra = {k: js.get(k) for k in ('kernels', 'cpu', 'vision_gflop', 'peak_rss_mb')}
                gextra['stages'] = st
                line.append(f'gyolo {js["median_ms"]:.1f} ms')
            if 'ort' in tools:
                if onnx[s]:
                    js = run_json([a.node, os.path.join(HERE, 'ort_bench.js'), onnx[s], str(s), str(runs),
                                   str(a.threads)], None, 'ort_bench.js')
                    ort_ver = js.get('ort')
                    res[s]['ort'].append(js['median_ms'])
                    best[s]['ort'].append(js['min_ms'])
                    line.append(f'ORT {js["median_ms"]:.1f} ms')
                else:
                    line.append('ORT n/a')
            if 'pytorch' in tools:
                torch.manual_seed(0)
                x = torch.rand(1, 3, s, s)
                if a.tasks == 'all':
                    mf.set_caption_params(model, x)
                ts = []
                with torch.no_grad():
                    model(x)   # warm-up
                    for _ in range(runs):
                        t0 = time.perf_counter()
                        model(x)
                        ts.append((time.perf_counter() - t0) * 1e3)
                res[s]['pytorch'].append(statistics.median(ts))
                best[s]['pytorch'].append(min(ts))
                line.append(f'PyTorch {res[s]["pytorch"][-1]:.1f} ms')
            print(' '.join(line), flush=True)

    model_name, flags, ncpu = cpu_info()
    print()
    print(f'CPU: {model_name}, {ncpu} logical CPUs; flags: '
          + ', '.join(f'{k} {"yes" if v else "no"}' for k, v in flags.items())
          + f'; load average {load0} at start, {loadavg()} at end ({time.time() - t_start:.0f} s)')
    if 'gyolo' in tools:
        env_s = ' '.join(a.gyolo_env) or '(default environment)'
        print(f'gyolo: {a.gyolo} {env_s}; kernels: {gextra.get("kernels")}; gyolo sees: {gextra.get("cpu")}')
    vers = []
    if 'ort' in tools:
        vers.append(f'ONNX Runtime {ort_ver or "?"} (onnxruntime-node)')
    if 'pytorch' in tools:
        vers.append(f'PyTorch {torch.__version__} eager')
    print('; '.join(vers) + f'; fp32, batch 1, {a.threads} threads, --tasks {a.tasks}, '
          f'{a.rounds} rounds x {runs} timed runs (median of per-round medians, range of rounds)')
    print()
    head = ['input']
    if 'gyolo' in tools:
        head.append('gyolo (ms)' if a.tasks == 'vision' else 'gyolo whole pipeline (ms)')
        if a.tasks == 'all':
            head.append('gyolo fwd: vision+caption (ms)')
    if 'ort' in tools:
        head.append('ONNX Runtime (ms)')
    if 'pytorch' in tools:
        head.append('PyTorch eager (ms)')
    pre = 'pipeline ' if a.tasks == 'all' else ''
    if 'gyolo' in tools and 'ort' in tools:
        head.append(f'gyolo {pre}/ ORT')
        if a.tasks == 'all':
            head.append('gyolo fwd / ORT')
    if 'gyolo' in tools and 'pytorch' in tools:
        head.append(f'gyolo {pre}/ PyTorch')
        if a.tasks == 'all':
            head.append('gyolo fwd / PyTorch')
    print('| ' + ' | '.join(head) + ' |')
    print('|' + '---|' * len(head))
    for s in sizes:
        g = med(res[s].get('gyolo', []))
        gf = med(gfwd[s])
        o = med(res[s].get('ort', []))
        p = med(res[s].get('pytorch', []))
        row = [f'{s}x{s}']
        if 'gyolo' in tools:
            row.append(fmt(g, res[s]['gyolo']))
            if a.tasks == 'all':
                row.append(fmt(gf, gfwd[s]))
        if 'ort' in tools:
            row.append(fmt(o, res[s]['ort']))
        if 'pytorch' in tools:
            row.append(fmt(p, res[s]['pytorch']))
        if 'gyolo' in tools and 'ort' in tools:
            row.append(ratio(g, o))
            if a.tasks == 'all':
                row.append(ratio(gf, o))
        if 'gyolo' in tools and 'pytorch' in tools:
            row.append(ratio(g, p))
            if a.tasks == 'all':
                row.append(ratio(gf, p))
        print('| ' + ' | '.join(row) + ' |')
    # On a busy machine the fastest single run is the steadier figure: show it too.
    print('\nFastest single run over all rounds (ms' + ('; gyolo: whole pipeline' if a.tasks == 'all' else '')
          + '):\n')
    bh = ['input'] + [{'gyolo': 'gyolo', 'ort': 'ONNX Runtime', 'pytorch': 'PyTorch'}[t] for t in tools]
    if 'gyolo' in tools and 'ort' in tools:
        bh.append('gyolo / ORT')
    if 'gyolo' in tools and 'pytorch' in tools:
        bh.append('gyolo / PyTorch')
    print('| ' + ' | '.join(bh) + ' |')
    print('|' + '---|' * len(bh))
    for s in sizes:
        b = {t: (min(best[s][t]) if best[s][t] else None) for t in tools}
        row = [f'{s}x{s}'] + [fmt(b[t]) for t in tools]
        if 'gyolo' in tools and 'ort' in tools:
            row.append(ratio(b['gyolo'], b['ort']))
        if 'gyolo' in tools and 'pytorch' in tools:
            row.append(ratio(b['gyolo'], b['pytorch']))
        print('| ' + ' | '.join(row) + ' |')
    if a.tasks == 'all' and gextra.get('stages'):
        print('\ngyolo stage medians of the last round (ms): '
              + ', '.join(f'{k} {v}' for k, v in gextra['stages'].items()))
    if a.json:
        with open(a.json, 'w') as f:
            json.dump({'args': vars(a), 'cpu': model_name, 'flags': flags, 'results': res, 'best': best, 'gyolo_fwd': gfwd,
                       'gyolo': gextra, 'ort_version': ort_ver,
                       'torch_version': torch.__version__ if torch else None}, f, indent=1)


if __name__ == '__main__':
    main()
