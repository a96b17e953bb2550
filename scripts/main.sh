#!/usr/bin/env bash
# The main job on the bundled default: evaluate the bundled models (models/) on the short
# version of the paper-addition suite, print the "n->m (p%)" table and the report's path.
# Rerunning resumes from build/main/results.db (delete it for a fresh run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
mkdir -p build/main
build/bin/tapeloop eval --suite paper-addition-short --models-dir models \
  --db build/main/results.db --report build/main/report
