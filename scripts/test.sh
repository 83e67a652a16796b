#!/usr/bin/env bash
# Everything CI checks, from a fresh clone: install, lint, format, types, tests, then the main
# job end to end in its shortened mode (examples/topics.py --quick: same steps, fewer examples).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh "dev,local,otel,distributed,ray,postgres"
# a PostgreSQL server for the shared-study tests (the tests start their own on 127.0.0.1, skipped
# when it cannot be installed)
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 \
    && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq postgresql >/dev/null) \
        || echo "postgresql could not be installed: the PostgreSQL tests will be skipped"
fi
# headless Chromium renders the HTML optimization report in one test (skipped when absent)
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
        || echo "chromium could not be installed: the report rendering test will be skipped"
fi
.venv/bin/ruff check lmprog tests examples benchmarks
.venv/bin/ruff format --check lmprog tests examples benchmarks
.venv/bin/mypy
.venv/bin/python -m pytest -q "$@"
.venv/bin/python examples/topics.py --quick
