#!/usr/bin/env python3
"""PyTorch eager on upstream's model: the peer of `gyolo bench --device cuda:0`.

Upstream's full model (models/caption/gyolo.yaml) with random weights (make_fixtures.randomize, our
own script, rounded to half precision so that a checkpoint of them holds exactly the same values),
fused and in eval mode as caption/predict.py runs it, on one device, under torch.no_grad(). One JSON
line per (size, batch, precision): median_ms, min_ms over --runs timed passes after --warmup passes,
each timed pass closed by torch.cuda.synchronize().

    python3 benchmarks/torch_gpu_bench.py --upstream UPSTREAM [--device cuda] [--sizes 640]
        [--batches 1,8] [--precisions fp32,fp16] [--runs 20] [--warmup 5]
        [--tasks vision|caption] [--save-checkpoint PATH]

--tasks vision (default): Grit switched off, the vision forward only (gyolo bench --tasks vision).
--tasks caption: the vision forward and Grit's 5-beam caption search as caption/predict.py sets it
up (gyolo bench --tasks all also runs NMS, masks, semantic and panoptic post-processing, which this
does not). --save-checkpoint writes the weights as an upstream checkpoint before fusing
(convert.py makes the GGUF that gyolo bench loads: the same weights on both sides, so that both
caption searches see the same model).

fp16: the model and the input in half precision (model.half()), PyTorch's usual eager fp16; with
--tasks caption Grit stays in fp32 (upstream casts its features to fp32; its fp16 caption does not
run), the vision layers are half.
Runs with Debian's torch 1.13 on the CPU too (--device cpu), which is how this script is checked
without a GPU. Upstream's code is not part of gyolo: pass its checkout.
"""
import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'weights_tools'))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--upstream', required=True)
    ap.add_argument('--device', default='cuda')
    ap.add_argument('--sizes', default='640')
    ap.add_argument('--batches', default='1,8')
    ap.add_argument('--precisions', default='fp32,fp16')
    ap.add_argument('--runs', type=int, default=20)
    ap.add_argument('--warmup', type=int, default=5)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--tasks', default='vision', choices=['vision', 'caption'])
    ap.add_argument('--save-checkpoint', help='also write the random weights as an upstream checkpoint (for convert.py)')
    a = ap.parse_args()

    import make_fixtures as mf
    Y = mf.setup_upstream(a.upstream, mf.DEFAULT_VOCAB)
    import torch
    torch.manual_seed(a.seed)
    model = mf.build_model(Y, os.path.join(os.path.abspath(a.upstream), 'models/caption/gyolo.yaml'))
    mf.randomize(model, a.seed)
    model.half().float()   # the values a half-precision checkpoint holds
    if a.save_checkpoint:
        mf.save_stripped(model, a.save_checkpoint, {i: f'class{i}' for i in range(model.yaml['nc'])}, None)
    model = model.fuse().eval()
    cap = getattr(model, 'cap_layer', 56)
    if a.tasks == 'vision':
        model.model[cap].forward = lambda x: None   # Grit off: the vision forward only
    dev = torch.device(a.device)
    model.to(dev)
    sync = torch.cuda.synchronize if dev.type == 'cuda' else (lambda: None)
    name = torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'cpu'

    for prec in a.precisions.split(','):
        if prec not in ('fp32', 'fp16'):
            raise SystemExit(f'--precisions: fp32 or fp16, got {prec!r}')
        m = model.half() if prec == 'fp16' else model.float()
        if a.tasks == 'caption':
            m.model[cap].float()
        dt = torch.float16 if prec == 'fp16' else torch.float32
        for s in [int(v) for v in a.sizes.split(',')]:
            for b in [int(v) for v in a.batches.split(',')]:
                g = torch.Generator().manual_seed(a.seed)
                x = torch.rand(b, 3, s, s, generator=g).to(dev, dt)
                ts = []

                def run():
                    if a.tasks == 'caption':
                        mf.set_caption_params(m, x)
                    return m(x)
                with torch.no_grad():
                    for _ in range(a.warmup):
                        run()
                    sync()
                    for _ in range(a.runs):
                        t0 = time.perf_counter()
                        run()
                        sync()
                        ts.append((time.perf_counter() - t0) * 1e3)
                print(json.dumps({'tool': 'pytorch', 'torch': torch.__version__, 'device': a.device, 'gpu': name,
                                  'tasks': a.tasks, 'input': [s, s], 'batch': b, 'precision': prec, 'runs': a.runs,
                                  'median_ms': round(statistics.median(ts), 3), 'min_ms': round(min(ts), 3),
                                  'images_per_s': round(1e3 * b / statistics.median(ts), 1)}), flush=True)


if __name__ == '__main__':
    main()
