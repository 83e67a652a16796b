"""What a score depends on, as stable fingerprints: the metric, the models and their sampling
settings, the program, the data and lmprog's scoring format.

A stored result (a MIPRO study, the score recorded in a prompt file) may be reused or compared only
when every one of these is the same. Fingerprints are stable across processes and checkouts: code
is identified by its module, qualified name and source text (never by a memory address), the
program by ``analyze(program).program_hash``, data by its rows, an LM by :meth:`BaseLM.fingerprint`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from lmprog import settings
from lmprog._fingerprint import code_identity, data_fingerprint, digest
from lmprog.lm import resolve_lm

if TYPE_CHECKING:
    from lmprog.function import LMFunction
    from lmprog.optimize._base import Task

logger = logging.getLogger("lmprog.optimize")

__all__ = [
    "FORMAT_VERSION",
    "code_identity",
    "data_fingerprint",
    "digest",
    "lm_identity",
    "models_identity",
    "program_identity",
    "score_context",
    "validation_key",
]

#: bump when lmprog changes how a score is computed or what a stored study holds: older stored
#: results are then never reused (the layout of MIPRO's records has its own version in the MIPRO
#: study key, ``mipro_store.STORE_FORMAT``)
FORMAT_VERSION = 3


def lm_identity(lm: Any) -> dict[str, Any]:
    """The identity of an LM (an object or a model name) with its default request parameters."""
    try:
        resolved = resolve_lm(lm)
    except Exception as e:  # an LM that cannot be resolved here is named by what was given
        logger.debug("cannot resolve LM %r for its identity: %s", lm, e)
        return {"lm": repr(lm)}
    return resolved.fingerprint()


def models_identity(
    functions: Sequence[LMFunction[..., Any]], extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Every model a run's scores depend on: the default LM, each function's own LM, and the
    sampling settings (global defaults and per function)."""
    current = settings.current()
    ident: dict[str, Any] = {
        "default": lm_identity(None),
        "temperature": current.temperature,
        "max_tokens": current.max_tokens,
        "functions": {
            f"{fn.signature.module}:{fn.signature.qualname}": {
                "lm": None if fn.lm is None else lm_identity(fn.lm),
                "temperature": fn.temperature,
                "max_tokens": fn.max_tokens,
                "max_retries": fn.max_retries,
            }
            for fn in functions
        },
    }
    for name, lm in (extra or {}).items():
        ident[name] = None if lm is None else lm_identity(lm)
    return ident


def program_identity(program: Callable[..., Any], functions: Sequence[LMFunction[..., Any]]) -> str:
    """``analyze(program).program_hash``; without static analysis, the functions' signature hashes
    and the entry point's code."""
    try:
        from lmprog.source import analyze

        return analyze(program).program_hash
    except Exception as e:  # analysis is unavailable for this program: identify what we can
        logger.debug("program analysis failed (%s); identifying the program by its code", e)
        return digest([code_identity(program), [fn.signature_hash for fn in functions]])


def score_context(task: Task) -> dict[str, Any]:
    """Everything besides the prompts that a validation score of ``task`` depends on."""
    return {
        "format": FORMAT_VERSION,
        "metric": code_identity(task.metric),
        "models": models_identity(task.functions),
        "program": program_identity(task.program, task.functions),
        "functions": [fn.signature_hash for fn in task.functions],
    }


def validation_key(task: Task) -> str:
    """The key under which a validation score of ``task`` is comparable: the score context and the
    validation data. Two scores with the same key were measured the same way on the same data."""
    return digest({"context": score_context(task), "val": data_fingerprint(task.valset)})
