"""LM clients: the :class:`BaseLM` contract (cache, retries, rate limit, usage around one provider
method), ``LM`` over litellm and the embedded llama.cpp model, and which LM a call uses.

Holds ``_types`` (``Completion``, ``Messages``, constraint kinds), ``_base`` (``BaseLM``, request
interception), ``_client`` (``LM``, ``resolve_lm``, the default model), ``_litellm`` (the litellm
boundary), ``_local``/``_local_runtime`` (the embedded model), ``_cache``, ``_retry``,
``_ratelimit`` and ``_secrets``. May import: ``errors``, ``settings``, ``usage``, ``_fingerprint``.
litellm and xllamacpp are imported on first use only.
"""

from __future__ import annotations

from lmprog.lm._base import (
    BaseLM,
    InterceptedRequest,
    RequestHook,
    intercept_requests,
)
from lmprog.lm._cache import ResponseCache, cache_key, get_cache, without_secrets
from lmprog.lm._client import LM, configured_model, default_model, resolve_lm
from lmprog.lm._secrets import is_secret_param, redact, secret_values
from lmprog.lm._types import CONSTRAINT_KINDS, Completion, ConstraintKind, Messages

__all__ = [
    "CONSTRAINT_KINDS",
    "LM",
    "BaseLM",
    "Completion",
    "ConstraintKind",
    "InterceptedRequest",
    "Messages",
    "RequestHook",
    "ResponseCache",
    "cache_key",
    "configured_model",
    "default_model",
    "get_cache",
    "intercept_requests",
    "is_secret_param",
    "redact",
    "resolve_lm",
    "secret_values",
    "without_secrets",
]
