#!/usr/bin/env bash
# Installs everything (scripts/setup.sh), then runs the main job: a 4-rank DDP
# training over gloo started by Foehn's own launcher, with no MASTER_ADDR or
# MASTER_PORT anywhere. Extra arguments go to the training (e.g. --steps 200).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/foehn env
echo
exec .venv/bin/foehn run -n 4 .venv/bin/python examples/ddp.py "$@"
