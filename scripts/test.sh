#!/usr/bin/env bash
# Builds gyolo and runs its whole test suite (C++ unit and parity tests, CLI tests), once per CPU
# kernel set this machine can run: the best one, and then each other one forced with GYOLO_ISA
# (always including the portable kernels), so an AVX-512 machine also exercises the AVX2 and
# portable paths. GYOLO_TEST_ISAS="best portable" overrides the list.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DGYOLO_BUILD_TESTS=ON -DGYOLO_NATIVE=OFF
cmake --build build -j2
echo "CPU and kernels: $(build/bin/gyolo --version)"
# The kernel tests cross-compiled for AArch64 and run under qemu-user (NEON portable kernels).
bash tests/cross/aarch64_kernels.sh build/aarch64
isas="${GYOLO_TEST_ISAS:-best $(build/bin/gyolo info --isas)}"
# Passive OpenMP waiting: idle worker threads sleep instead of spinning, which keeps the suite fast
# when the machine is shared.
for isa in $isas; do
  echo "=== test suite with GYOLO_ISA=$isa ==="
  skip=()
  case "$isa" in best|portable) ;; *) skip=(-E fit_run) ;; esac  # training runs: best and portable only
  GYOLO_ISA="$isa" OMP_WAIT_POLICY=passive ctest --test-dir build --output-on-failure "${skip[@]}"
done
