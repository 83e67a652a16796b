#!/usr/bin/env bash
# Everything CI checks, from a fresh clone: install, lint, format, types, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh "dev,local"
.venv/bin/ruff check lmprog tests examples benchmarks
.venv/bin/ruff format --check lmprog tests examples benchmarks
.venv/bin/mypy
.venv/bin/python -m pytest -q "$@"
