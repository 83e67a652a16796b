"""LM clients: the :class:`BaseLM` contract (cache, retries, rate limit, usage around one provider
method), ``LM`` over litellm and the embedded llama.cpp model, and which LM a call uses.

Holds ``_types`` (``Completion``, ``TextDelta``, ``Messages``, constraint kinds), ``_base``
(``BaseLM``, request interception), ``_call``/``_stream`` (one call's state machine and its
streaming drivers), ``_client`` (``LM``, ``resolve_lm``, the default model), ``_litellm`` and
``_litellm_stream`` (the litellm boundary), ``_local``/``_local_runtime`` (the embedded model),
``_cache``, ``_retry``, ``_ratelimit`` and ``_secrets``. May import: ``errors``, ``settings``,
``usage``, ``_fingerprint``. litellm and xllamacpp are imported on first use only. Other
packages import what they need from here, never from the private modules (``redact`` for traces,
reports and cassettes, ``translate_error`` for fault injection, the embedded model's names for
``lmprog.local``).
"""

from __future__ import annotations

from lmprog.lm._base import (
    BaseLM,
    InterceptedRequest,
    RequestHook,
    intercept_requests,
)
from lmprog.lm._cache import CACHE_FILENAME, ResponseCache, cache_key, get_cache, without_secrets
from lmprog.lm._client import LM, configured_model, default_model, resolve_lm
from lmprog.lm._litellm import translate_error
from lmprog.lm._local import (
    DEFAULT_MODEL_FILE,
    DEFAULT_MODEL_PACKAGE,
    SAMPLING_PARAMS,
    SEED,
    LocalModel,
    LocalOutput,
    chat,
    chat_stream,
    default_model_path,
    is_local_model,
    load_model,
    resolve_model_path,
)
from lmprog.lm._local_runtime import (
    DEFAULT_SLOTS,
    INSTALL_COMMAND,
    MODEL_INSTALL_COMMAND,
    N_CTX,
    RUNTIME_PACKAGE,
    default_threads,
    llama_threads,
    prompt_cache,
    require_runtime,
    slots,
    start_server,
)
from lmprog.lm._secrets import is_secret_param, redact, secret_values
from lmprog.lm._types import (
    CONSTRAINT_KINDS,
    PROMPT_ROLE,
    Completion,
    ConstraintKind,
    Messages,
    StreamItem,
    TextDelta,
    ToolCall,
)

__all__ = [
    "CACHE_FILENAME",
    "CONSTRAINT_KINDS",
    "DEFAULT_MODEL_FILE",
    "DEFAULT_MODEL_PACKAGE",
    "DEFAULT_SLOTS",
    "INSTALL_COMMAND",
    "LM",
    "MODEL_INSTALL_COMMAND",
    "N_CTX",
    "PROMPT_ROLE",
    "RUNTIME_PACKAGE",
    "SAMPLING_PARAMS",
    "SEED",
    "BaseLM",
    "Completion",
    "ConstraintKind",
    "InterceptedRequest",
    "LocalModel",
    "LocalOutput",
    "Messages",
    "RequestHook",
    "ResponseCache",
    "StreamItem",
    "TextDelta",
    "ToolCall",
    "cache_key",
    "chat",
    "chat_stream",
    "configured_model",
    "default_model",
    "default_model_path",
    "default_threads",
    "get_cache",
    "intercept_requests",
    "is_local_model",
    "is_secret_param",
    "llama_threads",
    "load_model",
    "prompt_cache",
    "redact",
    "require_runtime",
    "resolve_lm",
    "resolve_model_path",
    "secret_values",
    "slots",
    "start_server",
    "translate_error",
    "without_secrets",
]
