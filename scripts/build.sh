#!/usr/bin/env bash
# Configures and builds tapeloop into build/ (or $TAPELOOP_BUILD_DIR). Extra arguments are passed
# to CMake, e.g. -DTAPELOOP_CUDA=OFF.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${TAPELOOP_BUILD_DIR:-build}
jobs=${TAPELOOP_JOBS:-$(nproc)}
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=${TAPELOOP_BUILD_TYPE:-RelWithDebInfo} "$@" >/dev/null
ninja -C "$build_dir" -j "$jobs"
