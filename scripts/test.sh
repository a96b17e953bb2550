#!/usr/bin/env bash
# Installs dependencies (idempotent), builds everything and runs the whole test suite.
# GPU tests skip themselves where no GPU is visible.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh "$@"
ctest --test-dir "${TAPELOOP_BUILD_DIR:-build}" -j "$(nproc)" --output-on-failure --timeout 600
