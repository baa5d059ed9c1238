#!/usr/bin/env bash
# The CPU kernel tests (tests/test_kernels.cpp, tests/test_caption_kernels.cpp) built for AArch64
# with Debian's cross compiler and run under qemu-user: the portable kernels compile to NEON there.
# Correctness only (emulated speed means nothing). Needs g++-aarch64-linux-gnu and qemu-user
# (scripts/setup.sh installs them); prints a skip line and exits 0 where they are missing.
#   bash tests/cross/aarch64_kernels.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
CXX=aarch64-linux-gnu-g++
QEMU=qemu-aarch64
if ! command -v $CXX >/dev/null || ! command -v $QEMU >/dev/null; then
  echo "SKIP: $CXX or $QEMU not installed"
  exit 0
fi
out="${1:-build/aarch64}"
mkdir -p "$out/inc"
# Only Catch2's and Eigen's headers come from the host (both are architecture-independent).
ln -sfn /usr/include/catch2 "$out/inc/catch2"
flags=(-std=gnu++20 -O2 -fopenmp -DEIGEN_DONT_PARALLELIZE -Iinclude -isystem "$out/inc" -isystem /usr/include/eigen3)
# (the files compiled side by side, one per core; Catch2's runner without optimisation, as in
# tests/CMakeLists.txt)
objs=() pids=()
jobs=$(nproc)
for f in src/cpu_isa.cpp src/isa_portable.cpp src/kernels_cpu.cpp src/transformer_cpu.cpp tests/main.cpp tests/test_kernels.cpp tests/test_caption_kernels.cpp; do
  o="$out/$(basename "$f" .cpp).o"
  kflags=()
  case "$f" in src/isa_*) kflags=(-O3 -ffp-contract=fast) ;; tests/main.cpp) kflags=(-O0) ;; esac
  if [ ! -f "$o" ] || [ "$f" -nt "$o" ] || [ -n "$(find include src -newer "$o" -name '*.[hi]*' -print -quit)" ]; then
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
    $CXX "${flags[@]}" "${kflags[@]}" -c "$f" -o "$o" &
    pids+=($!)
  fi
  objs+=("$o")
done
for p in "${pids[@]}"; do wait "$p" || { echo "aarch64: a compile failed"; exit 1; }; done
$CXX -static -fopenmp "${objs[@]}" -o "$out/kernel_tests"
# ELF e_machine (bytes 18-19, little-endian) must be EM_AARCH64 = 183 (0xb7)
[ "$(od -An -tu1 -j18 -N1 "$out/kernel_tests" | tr -d ' ')" = 183 ] || { echo "not an AArch64 binary"; exit 1; }
echo "AArch64 kernel tests under $QEMU (portable kernels = NEON):"
QEMU_LD_PREFIX=/usr/aarch64-linux-gnu $QEMU "$out/kernel_tests" "${@:2}"
