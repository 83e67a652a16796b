"""Old import path of the embedded model's client, kept for users: it now lives in
:mod:`lmprog.lm` (``lmprog.lm._local``).
"""

from __future__ import annotations

from lmprog.lm._local import (
    DEFAULT_MODEL_FILE,
    DEFAULT_MODEL_PACKAGE,
    SAMPLING_PARAMS,
    SEED,
    LocalModel,
    LocalOutput,
    chat,
    default_model_path,
    is_local_model,
    load_model,
    resolve_model_path,
)

__all__ = [
    "DEFAULT_MODEL_FILE",
    "DEFAULT_MODEL_PACKAGE",
    "SAMPLING_PARAMS",
    "SEED",
    "LocalModel",
    "LocalOutput",
    "chat",
    "default_model_path",
    "is_local_model",
    "load_model",
    "resolve_model_path",
]
