"""Old import path of the embedded model's client, kept for users: it now lives in
:mod:`lmprog.lm`.
"""

from __future__ import annotations

from lmprog.lm import (
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
