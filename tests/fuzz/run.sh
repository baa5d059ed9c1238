#!/usr/bin/env bash
# Builds gyolo's libFuzzer targets (Debian: clang, libclang-rt-14-dev) with AddressSanitizer,
# UndefinedBehaviorSanitizer and LeakSanitizer, and runs each on its committed seed corpus.
#   tests/fuzz/run.sh [BUILD_DIR] [LIBFUZZER_ARGS...]
#     tests/fuzz/run.sh build/fuzz -max_total_time=20     CI: a short run of each target
#     tests/fuzz/run.sh build/fuzz -runs=1000000          the documented run (docs/reliability.md)
# GYOLO_FUZZ_TARGETS="gguf image" limits the targets. New inputs are written to BUILD_DIR/corpus/<t>/
# (the committed seeds in tests/fuzz/corpus/<t>/ are read, never written); a crash leaves
# BUILD_DIR/crash-* and exits non-zero: turn it into a regression test.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$src/build/fuzz}
shift || true
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(-max_total_time=20)
mkdir -p "$out"
out=$(cd "$out" && pwd)
targets=${GYOLO_FUZZ_TARGETS:-gguf image video}
cxx=${GYOLO_FUZZ_CXX:-clang++}
flags=(-std=c++20 -O1 -g -fopenmp -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -I"$src/include" -isystem /usr/include/stb -isystem /usr/include/eigen3 -DEIGEN_DONT_PARALLELIZE)
# (the targets are built side by side, one per core)
jobs=$(nproc) builds=()
for t in $targets; do
  extra=()
  case "$t" in
    gguf) extra=("$src/src/crc32.cpp" -ljpeg) ;;
    image) extra=("$src/src/image_decode.cpp" "$src/src/image_resize.cpp" "$src/src/crc32.cpp" -ljpeg) ;;
    video) extra=("$src/src/video_ffmpeg.cpp" $(pkg-config --libs libavformat libavcodec libswscale libavutil) -lpthread) ;;
  esac
  if [ ! -x "$out/fuzz_$t" ] || [ -n "$(find "$src/include" "$src/src" "$src/tests/fuzz/fuzz_$t.cpp" -newer "$out/fuzz_$t" -print -quit)" ]; then
    echo "== building fuzz_$t"
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
    rm -f "$out/fuzz_$t"
    "$cxx" "${flags[@]}" "$src/tests/fuzz/fuzz_$t.cpp" "${extra[@]}" -o "$out/fuzz_$t" >"$out/build_$t.log" 2>&1 &
    builds+=("$t:$!")
  fi
done
for b in "${builds[@]}"; do
  wait "${b#*:}" || { cat "$out/build_${b%%:*}.log"; echo "fuzz_${b%%:*}: build FAILED"; exit 1; }
done
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
for t in $targets; do
  mkdir -p "$out/corpus/$t"
  echo "== fuzz_$t ${args[*]}"
  (cd "$out" && ./fuzz_"$t" -rss_limit_mb=2048 -timeout=20 -print_final_stats=1 "${args[@]}" "$out/corpus/$t" "$src/tests/fuzz/corpus/$t") \
    >"$out/$t.log" 2>&1 || status=1
  grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|Done|#[0-9]+ *DONE)|cov: " "$out/$t.log" | tail -3 | sed "s/^/  [$t] /"
  if [ $status -ne 0 ]; then tail -60 "$out/$t.log"; echo "fuzz_$t: FAILED (log: $out/$t.log)"; exit 1; fi
done
