#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) into build-fuzz/ (or $TAPELOOP_FUZZ_DIR)
# and runs each coverage-guided for a bounded time. Only the fuzz targets and what they link are
# compiled (checkpoint_fuzz: common/ and the engine without its trainer). FUZZ_SECONDS (default
# 60) bounds each target's run; TAPELOOP_JOBS the build's parallelism. A crash, leak, sanitizer
# report or timeout writes its input under the build dir (crash-*, leak-*, timeout-*) and fails
# the script.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-60}
dir=${TAPELOOP_FUZZ_DIR:-build-fuzz}
launcher=()
if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
CC=clang CXX=clang++ cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DTAPELOOP_FUZZ=ON -DTAPELOOP_CUDA=OFF -DTAPELOOP_WERROR=OFF "${launcher[@]}" >/dev/null
ninja -C "$dir" -j "${TAPELOOP_JOBS:-$(nproc)}" checkpoint_fuzz
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

# Seeds (byte 0 picks the loader, see checkpoint_fuzz.cc): the bundled and fixture configs, the
# start of the fixture safetensors files, and the valid safetensors / config / snapshots the
# target writes itself (TAPELOOP_FUZZ_SEED_DIR). The corpus grows across runs in the same dir.
corpus="$dir/corpus/checkpoint"
mkdir -p "$corpus"
for f in models/*/config.json tests/engine/fixtures/hf/*/config.json; do
  [ -f "$f" ] && { printf '\001'; cat "$f"; } > "$corpus/$(echo "$f" | tr / _)"
done
for f in tests/engine/fixtures/hf/*/model.safetensors; do
  [ -f "$f" ] && { printf '\000'; head -c 4096 "$f"; } > "$corpus/$(echo "$f" | tr / _)"
done
# The run's output (libFuzzer's progress, the loaders' warnings) goes to $dir/checkpoint_fuzz.log;
# its final stats are printed, and on failure its last 200 lines (the sanitizer report).
log="$dir/checkpoint_fuzz.log"
if ! (cd "$dir" && TAPELOOP_FUZZ_SEED_DIR=corpus/checkpoint ./bin/checkpoint_fuzz \
      -max_total_time="$seconds" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 corpus/checkpoint) >"$log" 2>&1; then
  tail -n 200 "$log"
  echo "fuzz: checkpoint_fuzz FAILED; the input is in $dir/ (crash-*, leak-*, timeout-*), log $log" >&2
  exit 1
fi
grep -E '^(Done|stat::|INFO: seed corpus)' "$log" || true
echo "fuzz: checkpoint_fuzz ran ${seconds}s with no crash"
