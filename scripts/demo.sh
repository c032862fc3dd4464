#!/usr/bin/env bash
# Installs everything (scripts/setup.sh), then shows what Foehn sees from here.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/foehn env "$@"
