#!/usr/bin/env bash
# Installs everything plus the benchmarks' peers and plotting, builds the C
# programs the benchmarks run, then runs every benchmark in bench/; results
# (JSON, markdown tables, PNG plots) go to bench/results/. bench/comm makes its
# own Python 3.13 venv for pympi (.venv-pympi) when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
.venv/bin/python -m pip install -q python-hostlist matplotlib
if [ -d build/c ]; then meson setup --reconfigure build/c >/dev/null; else meson setup build/c >/dev/null; fi
meson compile -C build/c >/dev/null
mkdir -p bench/results
.venv/bin/python bench/bootstrap.py --out bench/results "$@"
.venv/bin/python bench/hostlists.py --out bench/results
.venv/bin/python bench/comm/run.py --out bench/results
