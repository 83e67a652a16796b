#!/usr/bin/env bash
# The main job: install lmprog with the embedded model and run the example optimization offline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh "local"
.venv/bin/python examples/tickets.py "$@"
