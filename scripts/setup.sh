#!/usr/bin/env bash
# Installs the Debian 12 packages gyolo needs to build, test and run its Python tools. Run as root.
set -euo pipefail
pkgs=(build-essential cmake ninja-build libeigen3-dev xtensor-dev libstb-dev libjpeg62-turbo-dev
      catch2 libbenchmark-dev nlohmann-json3-dev python3-numpy doxygen
      pkg-config libavformat-dev libavcodec-dev libswscale-dev libavutil-dev  # video (gyolo::video)
      clang libclang-rt-14-dev libomp-14-dev  # libFuzzer targets (tests/fuzz), sanitizer stage (tests/sanitize)
      g++-aarch64-linux-gnu qemu-user)  # the last two: the AArch64 (NEON) kernel tests under emulation
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
