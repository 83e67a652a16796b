"""Old import path of the persistent response cache, kept for users: it now lives in
:mod:`lmprog.lm` (``lmprog.lm._cache``).
"""

from __future__ import annotations

from lmprog.lm._cache import CACHE_FILENAME, ResponseCache, cache_key, get_cache, without_secrets
from lmprog.lm._secrets import is_secret_param

__all__ = ["CACHE_FILENAME", "ResponseCache", "cache_key", "get_cache", "is_secret_param", "without_secrets"]
