"""Old import path of the persistent response cache, kept for users: it now lives in
:mod:`lmprog.lm`.
"""

from __future__ import annotations

from lmprog.lm import CACHE_FILENAME, ResponseCache, cache_key, get_cache, is_secret_param, without_secrets

__all__ = ["CACHE_FILENAME", "ResponseCache", "cache_key", "get_cache", "is_secret_param", "without_secrets"]
