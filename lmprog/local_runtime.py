"""Old import path of the embedded model's runtime settings, kept for users: it now lives in
:mod:`lmprog.lm`.
"""

from __future__ import annotations

from lmprog.lm import (
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

__all__ = [
    "DEFAULT_SLOTS",
    "INSTALL_COMMAND",
    "MODEL_INSTALL_COMMAND",
    "N_CTX",
    "RUNTIME_PACKAGE",
    "default_threads",
    "llama_threads",
    "prompt_cache",
    "require_runtime",
    "slots",
    "start_server",
]
