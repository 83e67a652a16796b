#!/usr/bin/env bash
# The main job: install lmprog with the embedded model and run the example optimization offline
# (examples/topics.py: about 1.5 min after the install on 2 cores; see the README).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh "local"
.venv/bin/python examples/topics.py "$@"
