"""What a name can denote during analysis, and the contexts names are resolved in."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeGuard

import libcst as cst

from lmprog.source._files import Binding, DefInfo, SourceFile, is_project_file
from lmprog.source._scan import Scan, scan_function

MISSING: Any = object()
MAX_DEPTH = 24


#: The class attribute by which analysis knows an lm_function: ``LMFunction`` sets it. This
#: package sits below :mod:`lmprog.function` and never imports it (see :func:`is_lm_function`).
LM_FUNCTION_MARK = "__lmprog_lm_function__"
#: The attribute the ``lm_function`` decorator itself carries (see :func:`is_lm_decorator`).
LM_DECORATOR_MARK = "__lmprog_decorator__"


class AnalyzedFunction(Protocol):
    """What analysis reads of an lm_function (an ``LMFunction`` is one)."""

    @property
    def fn(self) -> Callable[..., Any]: ...

    @property
    def name(self) -> str: ...

    @property
    def lm(self) -> object: ...

    @property
    def max_retries(self) -> int: ...

    @property
    def temperature(self) -> float | None: ...


def is_lm_function(obj: object) -> TypeGuard[AnalyzedFunction]:
    """Whether ``obj`` is an lm_function (its class carries :data:`LM_FUNCTION_MARK`)."""
    return getattr(type(obj), LM_FUNCTION_MARK, False) is True


def is_lm_decorator(obj: object) -> bool:
    """Whether ``obj`` is the ``lm_function`` decorator (it carries :data:`LM_DECORATOR_MARK`)."""
    return getattr(obj, LM_DECORATOR_MARK, False) is True


@dataclass(eq=False)
class ModuleCtx:
    name: str
    file: SourceFile
    namespace: Mapping[str, Any] | None
    package: str


@dataclass(eq=False)
class FuncCtx:
    """A function being analyzed: its def in the source, and the runtime function when known."""

    key: str
    module: ModuleCtx
    info: DefInfo
    obj: Any | None
    parent: FuncCtx | None
    owner: Runtime | Static | None
    bound_self: Any = None  # the instance, when the entry is a bound method or a callable object
    _scan: Scan | None = None

    @property
    def node(self) -> cst.FunctionDef:
        assert isinstance(self.info.node, cst.FunctionDef)
        return self.info.node

    @property
    def scan(self) -> Scan:
        if self._scan is None:
            self._scan = scan_function(self.node)
        return self._scan


@dataclass(frozen=True, eq=False)
class Runtime:
    obj: Any


@dataclass(frozen=True, eq=False)
class Static:
    """A def or class known only from the source."""

    module: ModuleCtx
    info: DefInfo

    @property
    def key(self) -> str:
        return f"{self.module.name}.{self.info.qualname}"


@dataclass(frozen=True, eq=False)
class Instance:
    cls: Runtime | Static


@dataclass(frozen=True, eq=False)
class Const:
    """A module-level assignment in the user's code; ``value`` is its runtime value when known."""

    module: ModuleCtx
    name: str
    binding: Binding
    value: Any = MISSING

    @property
    def key(self) -> str:
        return f"{self.module.name}.{self.name}"


Target = Runtime | Static | Instance | Const


def unwrap(obj: Any) -> Any:
    """The function behind bound methods, partials, static/class methods and ``functools.wraps``
    wrappers such as ``@traced``; an LMFunction is returned as is."""
    for _ in range(MAX_DEPTH):
        if is_lm_function(obj):
            return obj
        if isinstance(obj, functools.partial):
            obj = obj.func
        elif (
            isinstance(obj, staticmethod | classmethod)
            or inspect.ismethod(obj)
            or is_lm_function(getattr(obj, "__func__", None))  # an lm_function bound to an instance
        ):
            obj = obj.__func__
        elif inspect.isfunction(obj) and hasattr(obj, "__wrapped__"):
            obj = obj.__wrapped__
        else:
            return obj
    return obj


def is_code(value: Any) -> bool:
    """Functions, classes and modules (resolved as code), as opposed to data (constants)."""
    return (
        is_lm_function(value)
        or isinstance(value, functools.partial | staticmethod | classmethod)
        or inspect.isroutine(value)
        or inspect.isclass(value)
        or inspect.ismodule(value)
    )


def has_own_source(fn: Any) -> bool:
    """A Python function written by the user (not generated code, such as a dataclass ``__init__``
    whose pseudo-file lives in a real module)."""
    if not inspect.isfunction(fn):
        return False
    path = fn.__code__.co_filename
    if path.startswith("<"):
        return not path.startswith("<frozen") and fn.__globals__.get("__file__") is None
    return is_project_file(path)


def as_class(target: Target | None) -> Runtime | Static | None:
    """The class a target denotes, if it is one."""
    if isinstance(target, Runtime) and inspect.isclass(target.obj):
        return target
    if isinstance(target, Static) and isinstance(target.info.node, cst.ClassDef):
        return target
    return None
