#!/usr/bin/env bash
# Full-size check of every output against upstream's post-processing (local; needs python3-torch,
# python3-opencv and an upstream checkout; docs/outputs.md has the measured figures).
#   bash weights_tools/full_post_parity.sh /tmp/upstream [WORKDIR] [GYOLO_BINARY]
# Builds upstream's gyolo.yaml model with random weights (DFL bins kept 0..15), converts it,
# post-processes three cases with upstream's code, runs `gyolo predict --save-raw` on the same
# images and compares detections, masks, semantic and panoptic maps (compare_post.py). Then runs
# gyolo's post-processing on upstream's own raw outputs, which must match exactly.
set -euo pipefail
UP="$1"; W="${2:-/tmp/full_post}"; G="${3:-build/bin/gyolo}"
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
[ -f "$W/320/ref.json" ] || $PY weights_tools/make_post_fixtures.py --upstream "$UP" --full --out "$W" \
    --image examples/data/horses.jpg
M="$W/gyolo_post.gguf"
rm -rf "$W/ours_rect" "$W/ours_square" "$W/ours_320"
$G predict --weights "$M" --source examples/data/horses.jpg --out "$W/ours_rect" --save-raw >/dev/null
$G predict --weights "$M" --source examples/data/horses.jpg --out "$W/ours_square" --square --save-raw >/dev/null
$G predict --weights "$M" --source "$W/image_320x320.png" --imgsz 320 --out "$W/ours_320" --save-raw >/dev/null
st=0
for c in "rect ours_rect horses" "square ours_square horses" "320 ours_320 image_320x320"; do
  set -- $c
  echo "== $1"
  $PY weights_tools/compare_post.py "$W/$1" "$W/$2" "$3" || st=1
done
T="$(dirname "$G")/gyolo_tests"
if [ -x "$T" ]; then
  echo "== gyolo post-processing on upstream's raw outputs"
  GYOLO_FULL_POST_DIR="$W" "$T" "[.full]" || st=1
fi
exit $st
