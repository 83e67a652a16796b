"""Modules that are also their main function: ``lmprog.evaluate``, ``lmprog.optimize``, ``lmprog.trace``.

Each of these names is both a module (``lmprog.optimize.mipro``, ``lmprog.trace.Trace``) and the
function users call (``lmprog.optimize(...)``, ``with lmprog.trace():``). A package attribute can
only be one object, and binding the function there broke ``import lmprog.optimize.mipro`` (the
import system walks package attributes). So the attribute stays the module, and the module's
class is switched to :class:`CallableModule`, whose call runs the function of the module's own
name (``lmprog.trace(...)`` is ``lmprog.trace.trace(...)``); ``inspect.signature`` reports that
function's signature.
"""

from __future__ import annotations

import inspect
import sys
import types
from typing import Any


class CallableModule(types.ModuleType):
    """A module that, called, calls its function of the same name (see the module docstring)."""

    def _function(self) -> Any:
        return getattr(self, self.__name__.rsplit(".", 1)[-1])

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._function()(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.signature(self._function())


def make_callable(package: str, *names: str) -> None:
    """Bind each ``package.name`` to its (already imported) module, made callable."""
    parent = sys.modules[package]
    for name in names:
        module = sys.modules[f"{package}.{name}"]
        if not callable(getattr(module, name, None)):
            raise TypeError(f"{package}.{name} has no function {name}")
        module.__class__ = CallableModule
        setattr(parent, name, module)
