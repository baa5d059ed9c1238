#!/usr/bin/env bash
# Builds gyolo and runs its whole test suite (C++ unit and parity tests, CLI tests).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DGYOLO_BUILD_TESTS=ON
cmake --build build -j2
# Passive OpenMP waiting: idle worker threads sleep instead of spinning, which keeps the suite fast
# when the machine is shared.
OMP_WAIT_POLICY=passive ctest --test-dir build --output-on-failure
