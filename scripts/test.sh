#!/usr/bin/env bash
# Installs everything (scripts/setup.sh) and runs every test:
#   1. the C tests, plain and under AddressSanitizer + UndefinedBehaviorSanitizer;
#   2. the hostlist fuzzer (libFuzzer) for FOEHN_FUZZ_SECONDS (30);
#   3. the Python tests on 3.13 (the same stable-ABI wheel) and on 3.11 with the
#      real engines: Open MPI mpirun, prterun, MPICH mpiexec.hydra, Slurm (one
#      and two nodes), torchrun.
# FOEHN_REQUIRE_ENGINES=1 (CI) turns a test skipped for a missing engine into a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

meson_build() {  # meson_build DIR [setup options...]
  local dir=$1
  shift
  if [ -d "$dir" ]; then
    meson setup --reconfigure "$dir" "$@" >/dev/null
  else
    meson setup "$dir" "$@" >/dev/null
  fi
  meson compile -C "$dir" >/dev/null
}

say "C tests"
meson_build build/c
meson test -C build/c --print-errorlogs

say "the C API as a C user gets it: install, pkg-config foehn, build examples/c/where.c"
rm -rf build/prefix
meson_build build/install --prefix="$PWD/build/prefix" -Dtests=false
meson install -C build/install >/dev/null
PC_DIR=$(dirname "$(find build/prefix -name foehn.pc)")
LIB_DIR=$(dirname "$(find build/prefix -name 'libfoehn.so' | head -n 1)")
# shellcheck disable=SC2046
cc examples/c/where.c $(PKG_CONFIG_PATH="$PC_DIR" pkg-config --cflags --libs foehn) -o build/where
LD_LIBRARY_PATH="$LIB_DIR" build/where

say "C tests under AddressSanitizer + UndefinedBehaviorSanitizer"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
meson_build build/asan -Db_sanitize=address,undefined -Db_lundef=false
meson test -C build/asan --print-errorlogs

say "hostlist fuzzer, ${FOEHN_FUZZ_SECONDS:-30} s"
CC=clang meson_build build/fuzz -Dfuzz=enabled -Db_sanitize=address,undefined -Db_lundef=false
mkdir -p build/fuzz/corpus
build/fuzz/tests/fuzz_hostlist -max_total_time="${FOEHN_FUZZ_SECONDS:-30}" -print_final_stats=0 \
  build/fuzz/corpus tests/fuzz/corpus/hostlist > build/fuzz/fuzz.log 2>&1 ||
  { tail -n 60 build/fuzz/fuzz.log; echo "test: the hostlist fuzzer found a failure (above)" >&2; exit 1; }
tail -n 2 build/fuzz/fuzz.log

if [ -x .venv-3.13/bin/python ]; then
  say "Python tests on $(.venv-3.13/bin/python -V) (same wheel)"
  # torch's CPU wheel on these machines is for 3.11: its cases run in the 3.11 run below.
  .venv-3.13/bin/python -m pytest -q -p no:cacheprovider tests/python \
    --deselect tests/python/test_mpi_api.py::test_torch_tensors \
    --ignore tests/python/test_pytorch_setup.py
elif [ "${FOEHN_REQUIRE_ENGINES:-0}" != 0 ]; then
  echo "test: no Python 3.13 environment (.venv-3.13)" >&2
  exit 1
fi

say "Python tests on $(.venv/bin/python -V), with the real engines"
.venv/bin/python -m pytest -q -p no:cacheprovider tests "$@"
