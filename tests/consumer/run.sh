#!/usr/bin/env bash
# Builds tests/consumer (a host project with its own compile-time variant) against gyolo the ways a
# user would, and runs each build on the bundled scene with the shipped model:
#   1. cmake --install to a prefix, then find_package(gyolo CONFIG) and pkg-config
#   2. add_subdirectory(<this checkout>)
#   3. FetchContent from this checkout as a local git repository (its committed HEAD)
#   4. cpack -G DEB: libgyolo-dev and gyolo; with CI=true as root they are installed with dpkg -i and
#      found in /usr (then removed again); otherwise they are unpacked with dpkg -x and found there.
# usage: tests/consumer/run.sh BUILD_DIR [WORK_DIR]   (BUILD_DIR: a configured and built gyolo tree)
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "$1" && pwd)
work=${2:-$build/consumer}
model=$src/models/gyolo-shapes.gguf
image=$src/examples/data/shapes.png
jobs=${GYOLO_CONSUMER_JOBS:-2}
# Release builds at -O0 (GYOLO_CONSUMER_OPT): what is tested is that each way builds, links and runs;
# -O0 compiles the consumer and (modes 2, 3) gyolo's compiled part in about a third of the time of
# -O3 (the four ways: 112 s here, 137 s at -O1), and gyolo's kernels are compiled at -O3 whatever the
# build type.
opt=${GYOLO_CONSUMER_OPT:--O0}
rm -rf "$work"
mkdir -p "$work"
fail() { echo "consumer: FAIL: $*" >&2; exit 1; }
# The program must find the shipped model's objects on the bundled scene (as the CLI tests check).
run_consumer() {  # label exe
  local out
  out=$("$2" "$model" "$image" 256) || fail "$1: the consumer exited with $?: $out"
  echo "$out" | sed "s/^/  [$1] /"
  for c in square star triangle; do grep -q "^  $c: " <<<"$out" || fail "$1: no $c detected"; done
  grep -q "^caption: .* on the snow below the sky$" <<<"$out" || fail "$1: unexpected caption"
}
configure_build() {  # dir mode [cmake args...]
  local dir=$1 mode=$2
  shift 2
  cmake -S "$src/tests/consumer" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="$opt -DNDEBUG" -DGYOLO_CONSUMER_MODE="$mode" "$@" >"$dir.configure.log" 2>&1 ||
    { cat "$dir.configure.log"; fail "$mode: configure"; }
  cmake --build "$dir" -j"$jobs" >"$dir.build.log" 2>&1 || { tail -50 "$dir.build.log"; fail "$mode: build"; }
}

echo "== consumer 1: install + find_package + pkg-config"
prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" >"$work/install.log"
for f in include/gyolo/gyolo.hpp lib/libgyolo.a lib/libgyolo_train.a lib/cmake/gyolo/gyoloConfig.cmake lib/cmake/gyolo/gyoloConfigVersion.cmake \
         lib/cmake/gyolo/gyoloTargets.cmake lib/pkgconfig/gyolo.pc bin/gyolo share/gyolo/vocab.txt share/gyolo/models/gyolo-shapes.gguf; do
  [ -e "$prefix/$f" ] || fail "install: $f is missing"
done
configure_build "$work/package" package -DCMAKE_PREFIX_PATH="$prefix"
grep -q "consumer: gyolo .* from $prefix/lib/cmake/gyolo" "$work/package.configure.log" || fail "find_package did not use $prefix"
run_consumer package "$work/package/consumer"
# a component that is not there must fail find_package clearly
# components: cpu and cli are there; cuda is there when the build has the CUDA backend (a probe
# links gyolo::cuda and, without a GPU, gets cuda_error), else it is refused with the reason
mkdir -p "$work/components"
cuda_built=OFF
grep -q "^GYOLO_ENABLE_CUDA:BOOL=ON" "$build/CMakeCache.txt" && cuda_built=ON
cat >"$work/components/CMakeLists.txt" <<'PROBE'
cmake_minimum_required(VERSION 3.20)
project(gyolo_components CXX)
find_package(gyolo CONFIG COMPONENTS cuda)
if(CUDA_BUILT)
  if(NOT gyolo_FOUND OR NOT TARGET gyolo::cuda)
    message(FATAL_ERROR "the cuda component, built and installed, was not found: ${gyolo_NOT_FOUND_MESSAGE}")
  endif()
  add_executable(cuda_probe cuda_probe.cpp)
  target_link_libraries(cuda_probe PRIVATE gyolo::cuda)
  set(why "found")
elseif(gyolo_FOUND OR NOT gyolo_NOT_FOUND_MESSAGE MATCHES "GYOLO_ENABLE_CUDA")
  message(FATAL_ERROR "the cuda component, not built, was not refused with its reason")
else()
  set(why "${gyolo_NOT_FOUND_MESSAGE}")
endif()
find_package(gyolo CONFIG REQUIRED COMPONENTS cpu train cli video)
get_target_property(cli gyolo::cli IMPORTED_LOCATION_RELEASE)
if(NOT EXISTS "${cli}" OR NOT EXISTS "${gyolo_DATA_DIR}/vocab.txt")
  message(FATAL_ERROR "gyolo::cli (${cli}) or gyolo_DATA_DIR (${gyolo_DATA_DIR}) is wrong")
endif()
add_executable(video_probe video_probe.cpp)
target_link_libraries(video_probe PRIVATE gyolo::video)
message(STATUS "components: cpu, cli (${cli}), video; cuda: ${why}")
PROBE
cat >"$work/components/cuda_probe.cpp" <<'PROBE'
#include <gyolo/cuda.hpp>
#include <iostream>
int main() {  // the installed CUDA backend: a GPU's name, or the clear error where there is none
  if (gyolo::cudart::device_count() > 0) {
    gyolo::context<gyolo::cuda> ctx(0);
    std::cout << "cuda: " << gyolo::cudart::info(0).name << "\n";
    return 0;
  }
  try {
    gyolo::context<gyolo::cuda> ctx(0);
  } catch (const gyolo::cuda_error& e) {
    std::cout << "cuda: no GPU, as expected: " << e.what() << "\n";
    return 0;
  }
  std::cout << "cuda: no GPU, yet no cuda_error\n";
  return 1;
}
PROBE
cat >"$work/components/video_probe.cpp" <<'PROBE'
#include <gyolo/io/video.hpp>
#include <iostream>
int main() {  // writes and reads back one lossless frame through the installed gyolo::video
  gyolo::image_u8 f(16, 16, 3);
  for (std::size_t i = 0; i < f.data.size(); ++i) f.data[i] = std::uint8_t(i * 37);
  gyolo::video::writer_options o;
  o.codec = "ffv1";
  { gyolo::video::writer w("probe.mkv", 16, 16, o); w.write(f); w.finish(); }
  gyolo::video::reader r("probe.mkv");
  auto g = r.next();
  std::cout << "video: " << gyolo::video::version() << (g && g->image.data == f.data ? ", round trip exact" : ", ROUND TRIP WRONG") << "\n";
  return g && g->image.data == f.data ? 0 : 1;
}
PROBE
cmake -S "$work/components" -B "$work/components/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" \
  -DCUDA_BUILT=$cuda_built >"$work/components.log" 2>&1 ||
  { cat "$work/components.log"; fail "find_package components"; }
grep "components:" "$work/components.log" | sed 's/^/  /'
cmake --build "$work/components/build" >>"$work/components.log" 2>&1 || { tail -30 "$work/components.log"; fail "gyolo::video consumer build"; }
vout=$(cd "$work/components/build" && ./video_probe) || fail "gyolo::video consumer: $vout"
echo "  $vout"
if [ "$cuda_built" = ON ]; then
  cout=$("$work/components/build/cuda_probe") || fail "gyolo::cuda consumer: $cout"
  echo "  $cout"
fi
PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --exists --print-errors gyolo || fail "pkg-config does not find gyolo"
# shellcheck disable=SC2046
g++ "$src/tests/consumer/pkgconfig_check.cpp" -o "$work/pkgconfig_check" \
  $(PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --cflags --libs gyolo) || fail "pkg-config build"
"$work/pkgconfig_check" | sed 's/^/  [pkg-config] /'
"$prefix/bin/gyolo" --version | sed 's/^/  [installed cli] /'

echo "== consumer 2: add_subdirectory"
configure_build "$work/subdirectory" subdirectory -DGYOLO_SOURCE_DIR="$src"
[ ! -e "$work/subdirectory/gyolo/bin" ] && [ ! -e "$work/subdirectory/bin/gyolo_tests" ] || fail "add_subdirectory built gyolo's own tests or CLI"
run_consumer subdirectory "$work/subdirectory/consumer"

echo "== consumer 3: FetchContent (local git repository, committed HEAD)"
if git -C "$src" rev-parse HEAD >/dev/null 2>&1; then
  [ -z "$(git -C "$src" status --porcelain -- CMakeLists.txt cmake include src)" ] ||
    echo "  note: the checkout has uncommitted changes; FetchContent builds the committed HEAD"
  configure_build "$work/fetchcontent" fetchcontent -DGYOLO_SOURCE_DIR="$src" -DGYOLO_GIT_TAG="$(git -C "$src" rev-parse HEAD)"
  run_consumer fetchcontent "$work/fetchcontent/consumer"
else
  echo "  skipped: $src is not a git checkout"
fi

echo "== consumer 4: Debian packages (cpack -G DEB)"
(cd "$build" && cpack -G DEB -B "$work/deb" >"$work/cpack.log" 2>&1) || { tail -30 "$work/cpack.log"; fail "cpack"; }
dev=$(ls "$work"/deb/libgyolo-dev_*.deb) && cli=$(ls "$work"/deb/gyolo_*.deb) || fail "cpack did not make libgyolo-dev and gyolo"
dpkg-deb -f "$dev" Package Version Depends | sed 's/^/  [libgyolo-dev] /'
dpkg-deb -f "$cli" Package Depends | sed 's/^/  [gyolo] /'
dpkg-deb -c "$dev" >"$work/dev.contents"
dpkg-deb -c "$cli" >"$work/cli.contents"
grep -q "./usr/lib/cmake/gyolo/gyoloConfig.cmake" "$work/dev.contents" || fail "libgyolo-dev lacks the CMake package"
grep -q "./usr/include/gyolo/gyolo.hpp" "$work/dev.contents" || fail "libgyolo-dev lacks the headers"
grep -q "./usr/bin/gyolo$" "$work/cli.contents" || fail "the gyolo package lacks /usr/bin/gyolo"
if [ "${CI:-}" = true ] && [ "$(id -u)" = 0 ]; then
  dpkg -i "$dev" "$cli" >/dev/null || fail "dpkg -i"
  trap 'dpkg -r gyolo libgyolo-dev >/dev/null 2>&1 || true' EXIT
  configure_build "$work/debpkg" package
  grep -q "consumer: gyolo .* from /usr/lib/cmake/gyolo" "$work/debpkg.configure.log" || fail "find_package did not use the installed package"
  run_consumer deb "$work/debpkg/consumer"
  gyolo --version | sed 's/^/  [\/usr\/bin\/gyolo] /'
else
  dpkg -x "$dev" "$work/debroot" && dpkg -x "$cli" "$work/debroot"
  configure_build "$work/debpkg" package -DCMAKE_PREFIX_PATH="$work/debroot/usr"
  grep -q "consumer: gyolo .* from $work/debroot/usr/lib/cmake/gyolo" "$work/debpkg.configure.log" || fail "find_package did not use the unpacked package"
  run_consumer deb "$work/debpkg/consumer"
fi
echo "consumer: all builds passed"
