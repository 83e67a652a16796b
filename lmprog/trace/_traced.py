"""``@traced``: record a plain function (sync or async) as a span in the call tree; its inputs are
bound by parameter name with a fast path for plain signatures."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, overload

from lmprog.trace._spans import span, tracing_active

__all__ = ["traced"]

P = ParamSpec("P")
R = TypeVar("R")


def _binder(f: Callable[..., Any]) -> Callable[[tuple[Any, ...], dict[str, Any]], dict[str, Any]]:
    """``(args, kwargs) -> inputs by parameter name, defaults applied`` for ``f``.

    Plain signatures (no ``*args``, ``**kwargs`` or positional-only parameters) take a fast path
    that skips ``inspect.Signature.bind``; any call it cannot bind falls back to the slow one.
    """
    sig = inspect.signature(f)
    params = list(sig.parameters.values())

    def slow(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError:
            return {"args": list(args), **kwargs}
        bound.apply_defaults()
        return dict(bound.arguments)

    plain = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    if not all(p.kind in plain for p in params):
        return slow
    names = tuple(p.name for p in params)
    known = frozenset(names)
    positional = tuple(p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD)
    defaults = {p.name: p.default for p in params if p.default is not p.empty}

    def fast(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if len(args) > len(positional):
            return slow(args, kwargs)
        values = dict(zip(positional, args, strict=False))
        if not kwargs and len(values) == len(names):
            return values
        for k in kwargs:
            if k in values or k not in known:
                return slow(args, kwargs)
        values.update(kwargs)
        try:
            return {n: values[n] if n in values else defaults[n] for n in names}
        except KeyError:  # a required parameter is missing
            return slow(args, kwargs)

    return fast


@overload
def traced(fn: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def traced(*, name: str | None = None) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def traced(fn: Callable[..., Any] | None = None, /, *, name: str | None = None) -> Any:
    """Record a plain function (sync or async) as a span in the call tree.

    The span holds the call's inputs by parameter name, its output or error and its duration; the
    lm_functions it calls become its children. Nothing is recorded (and the cost is one check)
    when no :func:`trace` block or span sink listens.

    Args:
        fn: the function (when used bare: ``@traced``).
        name: the span's name (default: the function's name).

    Returns:
        The wrapped function, with the same signature; or, called with ``name`` only, a
        decorator that makes one.

    Example:
        >>> import lmprog
        >>> @lmprog.traced
        ... def shout(text: str) -> str:
        ...     return text.upper()
        >>> with lmprog.trace() as t:
        ...     shout("hi")
        'HI'
        >>> [(s.name, s.inputs, s.output) for s in t.roots]
        [('shout', {'text': 'hi'}, 'HI')]
    """

    def wrap(f: Callable[..., Any]) -> Callable[..., Any]:
        bind = _binder(f)
        label = name or f.__name__

        if inspect.iscoroutinefunction(f):

            @functools.wraps(f)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                if not tracing_active():
                    return await f(*args, **kwargs)
                with span(label, f.__qualname__, "traced", bind(args, kwargs)) as s:
                    out = await f(*args, **kwargs)
                    if s is not None:
                        s.output = out
                    return out

            async_wrapper.__lmprog_traced__ = True  # type: ignore[attr-defined]
            return async_wrapper

        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not tracing_active():
                return f(*args, **kwargs)
            with span(label, f.__qualname__, "traced", bind(args, kwargs)) as s:
                out = f(*args, **kwargs)
                if s is not None:
                    s.output = out
                return out

        wrapper.__lmprog_traced__ = True  # type: ignore[attr-defined]
        return wrapper

    return wrap(fn) if fn is not None else wrap
