"""TODO"""

from __future__ import annotations

from lmprog.lm._base import (
    CONSTRAINT_KINDS,
    LM,
    BaseLM,
    Completion,
    ConstraintKind,
    InterceptedRequest,
    Messages,
    RequestHook,
    intercept_requests,
    resolve_lm,
)

__all__ = [
    "CONSTRAINT_KINDS",
    "LM",
    "BaseLM",
    "Completion",
    "ConstraintKind",
    "InterceptedRequest",
    "Messages",
    "RequestHook",
    "intercept_requests",
    "resolve_lm",
]
