"""How an lm_function pickles (process workers of ``evaluate`` receive them): by reference to
``module:qualname`` when the function is reachable that way, else by value (see
``LMFunction.__reduce__``). :func:`find` is what a pickle calls to get a function back by
reference; ``LMFunction._rebuild`` by value."""

from __future__ import annotations

import importlib
import sys
from typing import Any


def by_reference(fn: object) -> bool:
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


def _lookup(obj: Any, qualname: str) -> Any:
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj
