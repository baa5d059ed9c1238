#!/usr/bin/env bash
# Builds gyolo and runs its whole test suite (C++ unit and parity tests, CLI tests), once per CPU
# kernel set this machine can run: the best one as chosen at run time, and then each other one
# forced with GYOLO_ISA (always including the portable kernels), so an AVX-512 machine also
# exercises the AVX2 and portable paths. GYOLO_TEST_ISAS="best portable" overrides the list. Before
# that: the AArch64 kernels under qemu, the API reference, short fuzz runs, the sanitizer stage
# (tests/sanitize/run.sh) and the consumer builds.
set -euo pipefail
cd "$(dirname "$0")/.."
# Each stage's wall time, printed when it ends (CI's budget is 30 minutes on 2 cores).
stage_start=$SECONDS
stage() { echo "[time] $1: $((SECONDS - stage_start)) s (total ${SECONDS} s)"; stage_start=$SECONDS; }
# (the unit tests at -O1: half their compile time at -O3, and the suite is ~10 % slower; gyolo's
# libraries, the CLI and the kernels keep the Release build's -O3)
# The CUDA backend is compiled too where nvcc is installed (no GPU needed: its GPU tests then report
# themselves skipped; the kernels' bodies are tested on the host in the unit suite either way).
# GYOLO_REQUIRE_CUDA=1 (CI) makes a missing nvcc an error.
cuda_flags=()
nvcc_path=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)
if [ -n "$nvcc_path" ]; then
  cuda_flags=(-DGYOLO_ENABLE_CUDA=ON "-DCMAKE_CUDA_COMPILER=$nvcc_path")
  echo "CUDA backend: built with $nvcc_path"
elif [ "${GYOLO_REQUIRE_CUDA:-0}" = 1 ]; then
  echo "GYOLO_REQUIRE_CUDA=1 but no nvcc (PATH or /usr/local/cuda/bin)"; exit 1
else
  echo "CUDA backend: not built (no nvcc)"
fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DGYOLO_BUILD_TESTS=ON -DGYOLO_NATIVE=OFF -DGYOLO_UNITY_TESTS=ON \
  -DGYOLO_TEST_OPTIONS=-O1 "${cuda_flags[@]}"
cmake --build build -j2
stage build
echo "CPU and kernels: $(build/bin/gyolo --version)"
# The kernel tests cross-compiled for AArch64 and run under qemu-user (NEON portable kernels).
bash tests/cross/aarch64_kernels.sh build/aarch64
stage aarch64
# The API reference (docs/Doxyfile) builds from the headers without a warning.
rm -rf build/doxygen && mkdir -p build/doxygen && doxygen docs/Doxyfile >/dev/null
if [ -s build/doxygen/warnings.txt ]; then cat build/doxygen/warnings.txt; echo "doxygen: warnings"; exit 1; fi
echo "API reference: build/doxygen/html/index.html"
stage doxygen
# The libFuzzer targets (weights-file reader, image decoders + letterbox, video reader) under ASan,
# UBSan and LSan: a short run of each (10 s) on its seed corpus (docs/reliability.md has the long runs).
bash tests/fuzz/run.sh build/fuzz -max_total_time=10
stage fuzz
# The sanitizer stage: the whole unit suite, the CLI tests and the threads program under ASan, UBSan
# and LSan (clang), then threads sharing one model under TSan with OpenMP through Archer.
bash tests/sanitize/run.sh build/sanitize
stage sanitizers
# A host project built against gyolo four ways (install + find_package / pkg-config, add_subdirectory,
# FetchContent, the Debian packages), each run on the bundled scene.
bash tests/consumer/run.sh build
stage consumers
# The best kernel set as chosen at run time, then each other one forced (the best one is not run a
# second time under its own name).
best_isa=$(build/bin/gyolo info | sed -n 's/^kernels: \([a-z0-9]*\).*/\1/p')
isas="${GYOLO_TEST_ISAS:-best $(build/bin/gyolo info --isas | tr ' ' '\n' | grep -vx "$best_isa" | tr '\n' ' ')}"
# Passive OpenMP waiting: idle worker threads sleep instead of spinning, which keeps the suite fast
# when the machine is shared.
for isa in $isas; do
  echo "=== test suite with GYOLO_ISA=$isa ==="
  # Tests whose results do not depend on the kernels (the converter's Python tests, the soak's memory
  # bounds) run in the first pass only; the training runs with the best and the portable kernels.
  skip=()
  case "$isa" in
    best) ;;
    portable) skip=(-E "^(convert_py|fuzz_convert_short|soak_short)$") ;;
    *) skip=(-E "^(convert_py|fuzz_convert_short|soak_short|fit_run)$") ;;
  esac
  # (two tests at a time: the CLI tests and the soak run one process after another on one core)
  GYOLO_ISA="$isa" OMP_WAIT_POLICY=passive ctest --test-dir build --output-on-failure -j "$(nproc)" "${skip[@]}"
  stage "suite ($isa)"
done
