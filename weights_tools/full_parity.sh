#!/usr/bin/env bash
# Full-size parity check against upstream (run locally; needs python3-torch, python3-opencv and an
# upstream checkout). Builds upstream's gyolo.yaml model with random weights and BN statistics,
# saves an upstream-format fp16 checkpoint, converts it with convert.py, and compares
# `gyolo predict --save-raw` with upstream's tensors at three input sizes.
#   bash weights_tools/full_parity.sh /tmp/upstream [WORKDIR]
set -euo pipefail
UP="$1"; W="${2:-/tmp/gyolo_full_parity}"
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
mkdir -p "$W"
$PY weights_tools/make_fixtures.py --upstream "$UP" --variant full --out "$W/ref_rect" \
    --image examples/data/horses.jpg --save-ckpt "$W/gyolo_random.pt" --gguf "$W/gyolo_random.gguf"
$PY weights_tools/make_fixtures.py --upstream "$UP" --variant full --out "$W/ref_square" \
    --image examples/data/horses.jpg --square --checkpoint "$W/gyolo_random.pt"
$PY weights_tools/make_fixtures.py --upstream "$UP" --variant full --out "$W/ref_320" \
    --image examples/data/horses.jpg --size 320 --checkpoint "$W/gyolo_random.pt"
G=build/bin/gyolo
$G predict --weights "$W/gyolo_random.gguf" --source examples/data/horses.jpg --out "$W/ours_rect" --save-raw
$G predict --weights "$W/gyolo_random.gguf" --source examples/data/horses.jpg --out "$W/ours_square" --square --save-raw
$G predict --weights "$W/gyolo_random.gguf" --source "$W/ref_320/image_320x320.png" --imgsz 320 --out "$W/ours_320" --save-raw
st=0
for c in "ref_rect ours_rect/horses_raw" "ref_square ours_square/horses_raw" "ref_320 ours_320/image_320x320_raw"; do
  set -- $c
  echo "== $1"
  $PY weights_tools/compare_raw.py --split-pred "$W/$1" "$W/$2" --tol 1e-3 || st=1
done
exit $st
