#!/usr/bin/env bash
# Create .venv beside the checkout and install lmprog with the given extras (default: local).
# The first install builds llama-cpp-python from source (about 8 minutes on 2 cores); pip caches
# the wheel, so later installs take seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-local}"
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[${extras}]"
