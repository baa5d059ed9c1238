#!/usr/bin/env bash
# Demo: builds gyolo and runs `gyolo predict` on the bundled photo.
#   bash examples/demo.sh [CHECKPOINT.pt | MODEL.gguf]
# With an upstream checkpoint (e.g. gyolo.pt) it is converted first with our own tool
# (weights_tools/convert.py, Debian's /usr/bin/python3). With no argument the demo runs on
# deterministic RANDOM weights and says so: the pipeline runs, the outputs mean nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DGYOLO_BUILD_TESTS=OFF -DGYOLO_NATIVE=OFF >/dev/null
cmake --build build -j2 --target gyolo_cli
weights=random
if [ $# -ge 1 ]; then
  case "$(head -c 4 "$1" | od -An -c | tr -d ' ')" in
    GGUF) weights="$1" ;;
    *) mkdir -p runs
       /usr/bin/python3 weights_tools/convert.py --checkpoint "$1" --out runs/model.gguf --vocab weights_tools/data/vocab.txt
       weights=runs/model.gguf ;;
  esac
fi
./build/bin/gyolo predict --weights "$weights" --source examples/data/horses.jpg --out runs/demo --save-raw
echo "results in runs/demo/"
