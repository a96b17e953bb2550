#!/usr/bin/env bash
# Installs tapeloop's build and test dependencies from Debian 12 packages.
# Idempotent: packages already present are skipped, and nothing is fetched when all are there.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libgrpc++-dev libgrpc-dev protobuf-compiler protobuf-compiler-grpc libprotobuf-dev
  libabsl-dev libsqlite3-dev sqlite3
  libgtest-dev libgmock-dev libbenchmark-dev
  libopenblas-dev nlohmann-json3-dev gnuplot-nox fonts-dejavu-core
  python3 python3-grpcio python3-grpc-tools python3-numpy
  clang libclang-rt-14-dev openssl
)
# clang and libclang-rt-14-dev (libclang_rt.fuzzer and the ASan / UBSan runtimes) are for the
# libFuzzer build of scripts/fuzz.sh, which CI runs (.ci/run).

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

echo "setup: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup: done"
