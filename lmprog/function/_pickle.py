"""How an lm_function pickles (process workers of ``evaluate`` receive them): by reference to
``module:qualname`` when the function is reachable that way, else by value (see
``LMFunction.__reduce__``). The functions here are what a pickle calls to get the function back."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lmprog.function._function import LMFunction, State


def by_reference(fn: LMFunction) -> bool:
    """Whether ``fn`` is the object its ``__module__`` (already imported, not ``__main__``) holds
    at its ``__qualname__``: then the receiving process imports it instead of a copy."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or module == "__main__":
        return False
    if "<locals>" in qualname or module not in sys.modules:
        return False
    return _lookup(sys.modules[module], qualname) is fn


def find(module: str, qualname: str) -> Any:
    """The lm_function at ``module:qualname`` (importing the module): unpickling by reference."""
    try:
        found = _lookup(importlib.import_module(module), qualname)
    except ImportError as e:
        raise ImportError(f"cannot unpickle lm_function {module}:{qualname}: {e}") from e
    if found is None:
        raise ImportError(f"cannot unpickle lm_function {module}:{qualname}: the module has no such name")
    return found


def rebuild(
    fn: Callable[..., Any], options: dict[str, Any], state: State | None, signature_hash: str
) -> LMFunction:
    """A copy of an lm_function pickled by value: the same function, options and state; its
    signature hash is the original's (the copy's source may not be found again)."""
    from lmprog.function._function import LMFunction

    func = LMFunction(fn, **options)
    func.__dict__["_known_signature_hash"] = signature_hash
    if state is not None:
        func._state = state
        func._file_state_loaded = True
    return func


def _lookup(obj: Any, qualname: str) -> Any:
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj
