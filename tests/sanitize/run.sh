#!/usr/bin/env bash
# The sanitizer stage (CI: scripts/test.sh; figures in docs/reliability.md):
#  1. AddressSanitizer + UndefinedBehaviorSanitizer (every report fatal) + LeakSanitizer: the whole
#     unit suite (training runs included), the CLI tests and the shared-model threads program, built
#     with clang (it compiles the sanitized code several times faster than gcc): gyolo's libraries
#     and the unit tests at -O1, the CLI and the other programs at -O0 (a quarter of the compile time;
#     the CLI tests spend theirs in the libraries, where gyolo's hot non-template code is compiled
#     once: docs/design.md).
#  2. ThreadSanitizer: N threads sharing one model, each with its own context (tests/threads.cpp),
#     with LLVM's OpenMP runtime and its Archer tool (OMP_TOOL_LIBRARIES), which tells TSan about
#     OpenMP's barriers and task synchronisation, so a report is a real race in gyolo's code.
#   tests/sanitize/run.sh [BUILD_DIR]        (default build/sanitize)
# Needs Debian's clang, libclang-rt-14-dev and libomp-14-dev (scripts/setup.sh installs them).
# Reports go to BUILD_DIR/reports/ (one file per process that had one); the stage fails when a test
# fails or any report was written.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$src/build/sanitize}
mkdir -p "$out"
out=$(cd "$out" && pwd)
reports="$out/reports"
rm -rf "$reports" && mkdir -p "$reports"
archer=${GYOLO_ARCHER:-/usr/lib/llvm-14/lib/libarcher.so}
common=(-G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=None -DGYOLO_BUILD_TESTS=ON
        -DGYOLO_INSTALL=OFF -DGYOLO_NATIVE=OFF -DGYOLO_UNITY_TESTS=ON)

step() { echo "== $* [at ${SECONDS} s]"; }
check_reports() {
  if [ -n "$(ls -A "$reports")" ]; then
    for f in "$reports"/*; do echo "---- $f"; head -80 "$f"; done
    echo "sanitizers: reports above ($1)"
    exit 1
  fi
}

step "ASan + UBSan build"
# (GYOLO_FUZZ_CLI: the CLI's fuzz target, from the CLI's objects, which get libFuzzer's coverage
# instrumentation)
san="-fsanitize=address,undefined -fno-sanitize-recover=all"
quiet="-Wno-pass-failed"  # -O1 leaves some `omp simd` loops unvectorised
cmake -S "$src" -B "$out/asan" "${common[@]}" -DGYOLO_FUZZ_CLI=ON -DGYOLO_LIBRARY_OPTIONS=-O1 -DGYOLO_TEST_OPTIONS=-O1 \
  -DCMAKE_CXX_FLAGS="-O0 -g1 -fno-omit-frame-pointer $quiet $san" -DCMAKE_EXE_LINKER_FLAGS="$san" >/dev/null
cmake --build "$out/asan" -j2 --target gyolo_tests gyolo_cli gyolo_tasks gyolo_threads gyolo_fuzz_cli
export ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1:log_path=$reports/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$reports/ubsan"
export LSAN_OPTIONS="suppressions=$src/tests/sanitize/lsan.supp:print_suppressions=0"
export OMP_WAIT_POLICY=passive
# Three processes side by side on the two cores: the unit suite without its training runs, the
# training runs ([fit-run], about 110 s of the suite's 280 s under ASan), and the CLI tests (one
# process after another). Each keeps about one core busy; their parallel parts are short.
step "ASan + UBSan: unit suite, its training runs and the CLI tests (side by side)"
"$out/asan/bin/gyolo_tests" "~[.]~[fit-run]" >"$out/unit.log" 2>&1 &
unit_pid=$!
"$out/asan/bin/gyolo_tests" "[fit-run]~[.]" >"$out/fit.log" 2>&1 &
fit_pid=$!
bash "$src/tests/cli_tests.sh" "$out/asan/bin/gyolo" "$src/tests/fixtures" >"$out/cli.log" 2>&1 &
cli_pid=$!
unit_rc=0 fit_rc=0 cli_rc=0
wait $unit_pid || unit_rc=$?
step "ASan + UBSan: unit suite ended (exit $unit_rc)"
wait $fit_pid || fit_rc=$?
step "ASan + UBSan: training runs ended (exit $fit_rc)"
wait $cli_pid || cli_rc=$?
step "ASan + UBSan: CLI tests ended (exit $cli_rc)"
if [ $unit_rc != 0 ]; then cat "$out/unit.log"; check_reports "unit suite"; exit 1; fi
tail -3 "$out/unit.log"
if [ $fit_rc != 0 ]; then cat "$out/fit.log"; check_reports "training runs"; exit 1; fi
tail -3 "$out/fit.log"
if [ $cli_rc != 0 ]; then cat "$out/cli.log"; check_reports "CLI tests"; exit 1; fi
tail -2 "$out/cli.log"
check_reports "unit suite, training runs, CLI tests"
step "ASan + UBSan: threads sharing one model"
"$out/asan/bin/gyolo_threads" "$src/models/gyolo-shapes.gguf" --workers 4 --omp 2 || { check_reports "threads"; exit 1; }
check_reports "threads"
step "ASan + UBSan: the CLI's argument parsing, fuzzed (${GYOLO_FUZZ_CLI_ARGS:--max_total_time=15})"
mkdir -p "$out/corpus/cli"
(cd "$out" && ./asan/bin/gyolo_fuzz_cli -close_fd_mask=1 -print_final_stats=1 ${GYOLO_FUZZ_CLI_ARGS:--max_total_time=15} \
   "$out/corpus/cli" "$src/tests/fuzz/corpus/cli") >"$out/fuzz_cli.log" 2>&1 || { tail -40 "$out/fuzz_cli.log"; check_reports "fuzz_cli"; exit 1; }
grep -E "^stat::number_of_executed_units|cov: " "$out/fuzz_cli.log" | tail -2 | sed "s/^/  [cli] /"
check_reports "fuzz_cli"
unset ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS

step "TSan build"
cmake -S "$src" -B "$out/tsan" "${common[@]}" -DGYOLO_BUILD_EXAMPLES=OFF \
  -DCMAKE_CXX_FLAGS="-O1 -g1 -fno-omit-frame-pointer $quiet -fsanitize=thread" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread" >/dev/null
cmake --build "$out/tsan" -j2 --target gyolo_threads
[ -f "$archer" ] || { echo "TSan: $archer not found (Debian: libomp-14-dev)"; exit 1; }
step "TSan: threads sharing one model (OpenMP through Archer)"
export OMP_TOOL_LIBRARIES="$archer" ARCHER_OPTIONS="verbose=1"
export TSAN_OPTIONS="halt_on_error=1:ignore_noninstrumented_modules=1:second_deadlock_stack=1:log_path=$reports/tsan"
# (Archer's "detected" line goes to stdout, the program's JSON line too)
"$out/tsan/bin/gyolo_threads" "$src/models/gyolo-shapes.gguf" --workers 4 --omp 2 >"$out/tsan.out" 2>&1 || {
  cat "$out/tsan.out"; check_reports "TSan"; exit 1; }
cat "$out/tsan.out"
grep -q "Archer detected OpenMP application with TSan" "$out/tsan.out" || { echo "TSan: Archer was not loaded"; exit 1; }
check_reports "TSan"
echo "sanitizers: no reports (${SECONDS} s)"
