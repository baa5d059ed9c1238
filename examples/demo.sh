#!/usr/bin/env bash
# Demo: builds gyolo and runs `gyolo predict`.
#   bash examples/demo.sh                  the model gyolo trained itself (models/gyolo-shapes.gguf,
#                                          made by `gyolo train` on generated scenes: docs/training.md)
#                                          on a generated scene it never saw (examples/data/shapes.png)
#   bash examples/demo.sh CHECKPOINT.pt    the official model (e.g. gyolo.pt) on the bundled photo,
#   bash examples/demo.sh MODEL.gguf       converted first with our own tool (weights_tools/convert.py,
#                                          Debian's /usr/bin/python3)
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DGYOLO_BUILD_TESTS=OFF -DGYOLO_NATIVE=OFF >/dev/null
cmake --build build -j2 --target gyolo_cli
if [ $# -ge 1 ]; then
  case "$(head -c 4 "$1" | od -An -c | tr -d ' ')" in
    GGUF) weights="$1" ;;
    *) mkdir -p runs
       /usr/bin/python3 weights_tools/convert.py --checkpoint "$1" --out runs/model.gguf --vocab weights_tools/data/vocab.txt
       weights=runs/model.gguf ;;
  esac
  ./build/bin/gyolo predict --weights "$weights" --source examples/data/horses.jpg --out runs/demo --save-raw
  echo "results in runs/demo/ (horses.png: boxes, masks, caption; horses_semantic_color.png; horses_panoptic.png)"
else
  ./build/bin/gyolo predict --weights models/gyolo-shapes.gguf --source examples/data/shapes.png --imgsz 256 --out runs/demo
  echo "results in runs/demo/ (shapes.png: boxes, masks, caption; shapes_semantic_color.png; shapes_panoptic.png)"
  echo "the scene's own caption: a red triangle and a yellow star and an orange square on the snow below the sky"
fi
