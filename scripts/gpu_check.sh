#!/usr/bin/env bash
# The CUDA checks, prepared here and run on a machine with a GPU in one go (under 10 minutes):
#
#   1. here, on Debian 12 with the packages scripts/setup.sh installs and an upstream checkout:
#        bash scripts/gpu_check.sh --prepare [UPSTREAM_DIR (default /tmp/upstream)]
#      copies what the GPU machine lacks into .gpu/ (ignored by git, ~30 MB): the header-only
#      dependencies and their CMake files, libjpeg-turbo, Catch2, and upstream's code (for the
#      PyTorch side of the benchmark; it is never committed).
#   2. on the GPU machine (nvcc, CMake, ninja, g++ and PyTorch there), from the repository root with
#      .gpu/ beside it (device tool: carry [".gpu"]):
#        bash scripts/gpu_check.sh
#      builds gyolo with -DGYOLO_ENABLE_CUDA=ON for that GPU (native), runs the CUDA tests (every
#      kernel against the reference, the network and the caption head against the CPU backend),
#      then benchmarks the vision network at 640x640, batch 1 and 8, gyolo fp32 and --half on CUDA
#      against PyTorch eager on upstream's model (random weights, our make_fixtures.randomize) in
#      fp32 and fp16 on the same GPU, and all tasks at batch 1 (the same random weights on both
#      sides, converted by convert.py), and prints the ratios. Logs and JSON lines go to $OUT (or
#      /tmp/gpu_check).
#
# gyolo's fp16 column is --half: tensor-core convolutions with half-precision tiles, fp32 storage and
# accumulation (PyTorch's fp16 stores half precision throughout).
set -euo pipefail
cd "$(dirname "$0")/.."
G=.gpu

if [ "${1:-}" = "--prepare" ]; then
  up=${2:-/tmp/upstream}
  [ -f "$up/models/caption/gyolo.yaml" ] || { echo "no upstream checkout at $up (models/caption/gyolo.yaml)"; exit 1; }
  rm -rf "$G" && mkdir -p "$G/usr/include" "$G/usr/lib" "$G/usr/share/cmake"
  cp -r /usr/include/eigen3 /usr/include/xtensor /usr/include/xtl /usr/include/nlohmann /usr/include/stb /usr/include/catch2 "$G/usr/include/"
  cp /usr/include/jpeglib.h /usr/include/jerror.h /usr/include/jmorecfg.h /usr/include/x86_64-linux-gnu/jconfig.h "$G/usr/include/"
  cp -L /usr/lib/x86_64-linux-gnu/libjpeg.so.62 "$G/usr/lib/"
  ln -s libjpeg.so.62 "$G/usr/lib/libjpeg.so"
  mkdir -p "$G/usr/share/eigen3" && cp -r /usr/share/eigen3/cmake "$G/usr/share/eigen3/"
  cp -r /usr/share/cmake/nlohmann_json /usr/share/cmake/xtl "$G/usr/share/cmake/"
  # (xtensor's CMake file finds its prefix four folders up)
  mkdir -p "$G/usr/lib/x86_64-linux-gnu/cmake" && cp -r /usr/lib/x86_64-linux-gnu/cmake/xtensor "$G/usr/lib/x86_64-linux-gnu/cmake/"
  mkdir -p "$G/upstream" && (cd "$up" && tar -cf - --exclude=figures --exclude=.git .) | tar -xf - -C "$G/upstream"
  du -sh "$G"
  echo "prepared $G; on the GPU machine: bash scripts/gpu_check.sh (device tool: carry [\".gpu\"])"
  exit 0
fi

OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
start=$SECONDS
t() { echo "[time] $1: $((SECONDS - start)) s"; }
[ -d "$G/usr/include/eigen3" ] || { echo "no $G/: run 'bash scripts/gpu_check.sh --prepare' on the build machine first"; exit 1; }
nvidia-smi -L 2>&1 | tee "$OUT/gpu.txt" || true
NVCC=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc)
echo "nvcc: $NVCC ($("$NVCC" --version | tail -1)); c++: $(c++ --version | head -1); cmake: $(cmake --version | head -1)"
P=$PWD/$G/usr
export LD_LIBRARY_PATH=$P/lib:${LD_LIBRARY_PATH:-}
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DGYOLO_BUILD_TESTS=ON -DGYOLO_BUILD_EXAMPLES=ON \
  -DGYOLO_INSTALL=OFF -DGYOLO_WITH_VIDEO=OFF -DGYOLO_ENABLE_CUDA=ON -DGYOLO_CUDA_ARCHITECTURES=native \
  -DCMAKE_CUDA_COMPILER="$NVCC" -DCMAKE_PREFIX_PATH="$P" -DEigen3_DIR="$P/share/eigen3/cmake" \
  -DSTB_INCLUDE_DIR="$P/include/stb" -DCATCH2_INCLUDE_DIR="$P/include" \
  -DJPEG_INCLUDE_DIR="$P/include" -DJPEG_LIBRARY="$P/lib/libjpeg.so" >"$OUT/configure.log" 2>&1 \
  || { tail -30 "$OUT/configure.log"; exit 1; }
cmake --build build-gpu -j "$(nproc)" --target gyolo_cuda_tests gyolo_cli >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
t build

# CUDA tests: kernels against the reference, the network against the CPU backend (1e-3 x max|ref|)
set +e
build-gpu/bin/gyolo_cuda_tests 2>&1 | tee "$OUT/cuda_tests.txt"
tests_rc=${PIPESTATUS[0]}
set -e
t tests

# Benchmarks: gyolo (fp32) then PyTorch eager (fp32, fp16) on the same GPU, 640x640, batch 1 and 8
: >"$OUT/bench.jsonl"
for b in 1 8; do
  build-gpu/bin/gyolo bench --weights random --device cuda:0 --tasks vision --imgsz 640 --square --batch "$b" --runs 20 $([ "$b" = 1 ] && echo --per-layer) \
    | tee -a "$OUT/bench.jsonl" || echo "gyolo bench batch $b failed"
done
# the fp16 tensor-core convolutions (fp32 storage and accumulation)
for b in 1 8; do
  build-gpu/bin/gyolo bench --weights random --device cuda:0 --tasks vision --imgsz 640 --square --batch "$b" --runs 20 --half \
    | tee -a "$OUT/bench.jsonl" || echo "gyolo bench --half batch $b failed"
done
t "gyolo bench"
PYTHONUNBUFFERED=1 python3 benchmarks/torch_gpu_bench.py --upstream "$G/upstream" --device cuda --sizes 640 --batches 1,8 \
  --precisions fp32,fp16 --runs 20 --warmup 5 2>"$OUT/torch.err" | tee -a "$OUT/bench.jsonl" || { echo "PyTorch bench failed:"; tail -20 "$OUT/torch.err"; }
t "pytorch bench"
# All tasks, the issue's target: the same random weights on both sides (PyTorch's model saved as an
# upstream checkpoint, converted by our convert.py), batch 1 at 640. PyTorch: the vision forward and
# Grit's beam search (fp16: Grit in fp32, as upstream casts its features); gyolo: the whole pipeline
# (also NMS, masks, semantic and panoptic).
PYTHONUNBUFFERED=1 python3 benchmarks/torch_gpu_bench.py --upstream "$G/upstream" --device cuda --sizes 640 --batches 1 \
  --precisions fp32,fp16 --runs 10 --warmup 3 --tasks caption --save-checkpoint "$OUT/random.pt" 2>"$OUT/torch_cap.err" \
  | tee -a "$OUT/bench.jsonl" || { echo "PyTorch caption bench failed:"; tail -20 "$OUT/torch_cap.err"; }
if python3 weights_tools/convert.py --checkpoint "$OUT/random.pt" --out "$OUT/random.gguf" --vocab weights_tools/data/vocab.txt; then
  for h in "" --half; do
    build-gpu/bin/gyolo bench --weights "$OUT/random.gguf" --device cuda:0 --tasks all --imgsz 640 --square --runs 10 --per-layer $h \
      | tee -a "$OUT/bench.jsonl" || echo "gyolo bench --tasks all $h failed"
  done
fi
rm -f "$OUT/random.pt" "$OUT/random.gguf"
t "all tasks"
python3 - "$OUT/bench.jsonl" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith('{')]
g = {r['batch']: r for r in rows if r.get('command') == 'bench' and r.get('tasks') == 'vision' and r.get('precision') == 'fp32'}
gh = {r['batch']: r for r in rows if r.get('command') == 'bench' and r.get('tasks') == 'vision' and r.get('precision', '').startswith('fp16')}
ga = {}
for r in rows:
    if r.get('command') == 'bench' and r.get('tasks') == 'all':
        pr = 'fp16' if r.get('precision', '').startswith('fp16') else 'fp32'
        ga[pr] = r
        cap = [l for l in r.get('layers', []) if l['layer'] == '56']
        print(f"gyolo pipeline (all tasks, batch 1, {pr}): {r['median_ms']} ms; stages {r.get('stages_median_ms')}"
              + (f"; caption head (layer 56, profiled) {cap[0]['ms']} ms" if cap else ''))
p = {(r['batch'], r['precision']): r for r in rows if r.get('tool') == 'pytorch' and r.get('tasks', 'vision') == 'vision'}
pc = {r['precision']: r for r in rows if r.get('tool') == 'pytorch' and r.get('tasks') == 'caption'}
print('\nall tasks, 640x640, batch 1 (median ms; ratio = PyTorch vision + caption / gyolo whole pipeline; target: fp16 >= 2)')
for pr in ('fp32', 'fp16'):
    a_, c_ = ga.get(pr, {}).get('median_ms'), pc.get(pr, {}).get('median_ms')
    print(f"{pr}: gyolo {a_ if a_ else 'n/a'}  torch {c_ if c_ else 'n/a'}  ratio {f'{c_ / a_:.2f}' if a_ and c_ else 'n/a'}")
if 1 in g and 'layers' in g[1]:
    top = sorted(g[1]['layers'], key=lambda l: -l['ms'])[:10]
    print('gyolo cuda, batch 1: slowest layers ' + ', '.join(f"{l['layer']} {l['ms']} ms ({l['gflops']} GFLOP/s)" for l in top))
print('\nvision forward, 640x640 (median ms; ratio = PyTorch / gyolo, > 1: gyolo faster)')
print(f"{'batch':>5} {'gyolo fp32':>11} {'torch fp32':>11} {'ratio':>6} {'gyolo fp16':>11} {'torch fp16':>11} {'ratio':>6}")
for b in (1, 8):
    gf = g.get(b, {}).get('median_ms'); tf = p.get((b, 'fp32'), {}).get('median_ms'); th = p.get((b, 'fp16'), {}).get('median_ms')
    f = lambda v: f'{v:11.2f}' if v else f"{'n/a':>11}"
    r = lambda a, c: f'{c / a:6.2f}' if a and c else f"{'n/a':>6}"
    gh16 = gh.get(b, {}).get('median_ms')
    print(f'{b:>5} {f(gf)} {f(tf)} {r(gf, tf)} {f(gh16)} {f(th)} {r(gh16, th)}')
PYEOF
t total
exit "$tests_rc"
