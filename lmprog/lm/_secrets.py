"""Keep API keys out of everything lmprog writes (traces, caches, prompt files, reports)."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from typing import Any

_SECRET_NAME = re.compile(r"(API_?KEY|TOKEN|SECRET|PASSWORD|AUTH)", re.IGNORECASE)
_SECRET_KEY = re.compile(r"(api_?key|secret|password|authorization|headers|^token$|access_token)", re.I)
REDACTED = "[REDACTED]"

# A request parameter whose name contains one of these is a credential: sent to the provider,
# never cached, shown or logged...
_SECRET_MARKERS = ("key", "token", "secret", "password", "authorization", "headers")
# ...except these, which are sampling parameters that happen to contain a marker.
_NOT_SECRET = frozenset({"max_tokens", "max_completion_tokens", "max_new_tokens", "top_k"})


def is_secret_param(name: str) -> bool:
    """Whether a request parameter name looks like a credential (``api_key``, ``extra_headers``,
    ``refresh_token``...). Strict: any parameter sent to a provider is checked with it."""
    lowered = name.lower()
    if lowered in _NOT_SECRET:
        return False
    return any(marker in lowered for marker in _SECRET_MARKERS)


def is_secret_key(name: str) -> bool:
    """Whether a key of a document lmprog writes (a span, a report, a cassette) names a credential.
    Narrower than :func:`is_secret_param`, so that keys like ``prompt_tokens`` or ``cache_key``
    survive."""
    return bool(_SECRET_KEY.search(name))


def secret_values() -> list[str]:
    """Values of environment variables that look like credentials (long enough to be real).

    Read afresh on every call (a key set at run time is redacted at once); only the matching of
    names is memoized, and only matching variables are read (tracers call this once per span).
    """
    env = os.environ
    return [v for k in env if _is_secret_name(k) and len(v := env.get(k, "")) >= 8]


@functools.lru_cache(maxsize=4096)
def _is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def redact(obj: Any, secrets: list[str] | None = None) -> Any:
    """A copy of a JSON-like object with secret parameters and known secret values removed."""
    values = secret_values() if secrets is None else secrets
    if isinstance(obj, dict):
        return {
            k: REDACTED if isinstance(k, str) and is_secret_key(k) else redact(v, values)
            for k, v in obj.items()
        }
    if isinstance(obj, list | tuple):
        return [redact(v, values) for v in obj]
    if isinstance(obj, str) and values:
        for v in values:
            if v in obj:
                obj = obj.replace(v, REDACTED)
    return obj


def split_secrets(params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``params`` split into (the public ones, the credentials: :func:`is_secret_param`)."""
    public: dict[str, Any] = {}
    secret: dict[str, Any] = {}
    for name, value in params.items():
        (secret if is_secret_param(name) else public)[name] = value
    return public, secret
