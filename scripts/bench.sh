#!/usr/bin/env bash
# Installs everything plus the benchmarks' peers, then runs every benchmark in bench/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pip install -q python-hostlist
mkdir -p bench/results
.venv/bin/python bench/hostlists.py --out bench/results
