"""Spans and call trees of a run.

A span is opened for every lm_function call and every ``@traced`` function, but only while someone
listens: a collector (``with lmprog.trace() as t:``) in this context, or a process-wide span sink
registered with :func:`add_sink` (OpenTelemetry export is one, see ``lmprog.otel``). When no one
listens no span object is made, so tracing costs next to nothing. The current span and the active
collectors live in contextvars: asyncio tasks inherit them, and the worker threads lmprog starts
run in a copy of the caller's context, so parent links survive both.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import itertools
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, ParamSpec, Protocol, TypeVar, overload

from lmprog import settings
from lmprog._secrets import redact
from lmprog.usage import Usage

P = ParamSpec("P")
R = TypeVar("R")

logger = logging.getLogger("lmprog.trace")

_ids = itertools.count(1)
_pid = os.getpid()


def _new_id() -> str:
    return f"{_pid:x}-{next(_ids):x}"


def _after_fork() -> None:
    """A forked child (a multiprocessing worker) numbers its spans under its own pid, so its span
    ids never repeat the parent's or a sibling's."""
    global _ids, _pid
    _ids = itertools.count(1)
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork)


@dataclass
class Span:
    """One call in the tree. ``kind`` is ``"lm"`` for lm_functions and ``"traced"`` otherwise.

    lm spans also carry ``model``, the last rendered ``messages``, the last ``raw`` completion,
    ``parse_retries`` (completions rejected by the parser), ``calls`` (completions received),
    ``requests`` (every request sent to the provider, failed ones included), ``failed_requests``
    (those that failed), ``cache_hits``, token counts, ``cost`` and ``cache_hit`` (every
    completion of the call came from the cache).
    """

    id: str
    parent_id: str | None
    name: str
    qualname: str
    kind: str
    inputs: dict[str, Any] = field(default_factory=dict)
    output: Any = None
    error: str | None = None
    start: float = 0.0
    end: float | None = None
    model: str | None = None
    messages: list[dict[str, str]] | None = None
    raw: str | None = None
    parse_retries: int = 0
    calls: int = 0
    requests: int = 0
    failed_requests: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    cache_hit: bool | None = None
    children: list[Span] = field(default_factory=list, repr=False)
    #: the live object that ran (the LMFunction of an lm span); not serialized
    obj: Any = field(default=None, repr=False, compare=False)

    @property
    def duration(self) -> float | None:
        return None if self.end is None else self.end - self.start

    @property
    def usage(self) -> Usage:
        """The LM usage of this span alone (children not included)."""
        return Usage(
            calls=self.calls,
            requests=self.requests,
            cache_hits=self.cache_hits,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            cost=self.cost,
            failed_requests=self.failed_requests,
        )

    def add_usage(self, usage: Usage) -> None:
        """Add ``usage`` to this span's own counts."""
        self.calls += usage.calls
        self.requests += usage.requests
        self.failed_requests += usage.failed_requests
        self.cache_hits += usage.cache_hits
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens
        self.cost += usage.cost

    def walk(self) -> Iterator[Span]:
        """This span and all its descendants, depth first."""
        yield self
        for child in self.children:
            yield from child.walk()

    def to_dict(self) -> dict[str, Any]:
        from pydantic_core import to_jsonable_python

        data = {k: v for k, v in self.__dict__.items() if k not in ("children", "obj")}
        data["inputs"] = to_jsonable_python(self.inputs, fallback=repr)
        data["output"] = to_jsonable_python(self.output, fallback=repr)
        return redact(data)

    def __getstate__(self) -> dict[str, Any]:
        """For pickling (process workers send spans back): ``obj`` goes along only when it is an
        lm_function (which pickles by reference); other live objects stay behind."""
        from lmprog.function import LMFunction

        state = dict(self.__dict__)
        if not isinstance(state.get("obj"), LMFunction):
            state["obj"] = None
        return state

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Span:
        known = {
            k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k not in ("children", "obj")
        }
        return cls(**known)


class Trace:
    """The spans recorded inside one ``with trace():`` block, in completion order."""

    def __init__(self) -> None:
        self._spans: list[Span] = []
        self._lock = threading.Lock()

    def _add(self, span: Span) -> None:
        with self._lock:
            self._spans.append(span)

    def __getstate__(self) -> dict[str, Any]:
        with self._lock:
            return {"_spans": list(self._spans)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._spans = state["_spans"]
        self._lock = threading.Lock()

    @property
    def spans(self) -> list[Span]:
        """Every finished span, ordered by start time."""
        with self._lock:
            return sorted(self._spans, key=lambda s: s.start)

    @property
    def roots(self) -> list[Span]:
        """Spans whose parent was not recorded by this trace: the tops of the call trees."""
        spans = self.spans
        ids = {s.id for s in spans}
        return [s for s in spans if s.parent_id not in ids]

    def lm_spans(self) -> list[Span]:
        return [s for s in self.spans if s.kind == "lm"]

    def to_jsonl(self, path: str | os.PathLike[str]) -> None:
        """Write one span per line (parents link by ``parent_id``)."""
        Path(path).write_text(
            "".join(json.dumps(s.to_dict(), ensure_ascii=False) + "\n" for s in self.spans), encoding="utf-8"
        )

    @classmethod
    def from_jsonl(cls, path: str | os.PathLike[str]) -> Trace:
        """Read spans written by :meth:`to_jsonl` and rebuild their trees."""
        return cls.from_spans(
            Span.from_dict(json.loads(line))
            for line in Path(path).read_text(encoding="utf-8").splitlines()
            if line.strip()
        )

    @classmethod
    def from_spans(cls, spans: Any) -> Trace:
        t = cls()
        by_id: dict[str, Span] = {}
        for s in spans:
            s.children = []
            by_id[s.id] = s
            t._spans.append(s)
        for s in t._spans:
            parent = by_id.get(s.parent_id) if s.parent_id else None
            if parent is not None:
                parent.children.append(s)
        return t


load_jsonl = Trace.from_jsonl

_current: contextvars.ContextVar[Span | None] = contextvars.ContextVar("lmprog_span", default=None)
_collectors: contextvars.ContextVar[tuple[Trace, ...]] = contextvars.ContextVar("lmprog_traces", default=())
_tree_lock = threading.Lock()


def adopt(spans: list[Span]) -> None:
    """Record finished spans made in another process (a process worker of ``evaluate``) as if
    they had run here: their roots become children of the current span, and they go to this
    context's collectors and span sinks (``on_end`` only: they have ended)."""
    parent = _current.get()
    ids = {s.id for s in spans}
    for s in spans:
        if parent is not None and (s.parent_id is None or s.parent_id not in ids):
            s.parent_id = parent.id
            with _tree_lock:
                parent.children.append(s)
    for c in _collectors.get():
        for s in spans:
            c._add(s)
    for _, on_end in _hooks:
        for s in spans:
            _notify(on_end, s)


@contextmanager
def trace() -> Iterator[Trace]:
    """Collect the call trees of everything run inside the block (threads started by lmprog too)."""
    t = Trace()
    token = _collectors.set((*_collectors.get(), t))
    try:
        yield t
    finally:
        _collectors.reset(token)


class SpanSink(Protocol):
    """Receives every span opened anywhere in the process while registered with :func:`add_sink`,
    whether or not a ``trace()`` block is active.

    ``on_end(span)`` is called once the span is finished (``end``, ``output`` or ``error`` set), in
    the context and thread that ran it. A sink may also define ``on_start(span)``, called when the
    span opens, in the same context, before the function body runs; every span given to
    ``on_start`` is later given to ``on_end``. Exceptions a sink raises are logged, never
    propagated to the traced call.
    """

    def on_end(self, span: Span) -> None: ...


_Hook = Callable[[Span], None]
_sinks: tuple[SpanSink, ...] = ()
# (on_start or None, on_end) of every sink, rebuilt on registration; span() reads it once.
_hooks: tuple[tuple[_Hook | None, _Hook], ...] = ()
_sinks_lock = threading.Lock()


def add_sink(sink: SpanSink) -> None:
    """Send every span opened from now on to ``sink`` (see :class:`SpanSink`); idempotent."""
    with _sinks_lock:
        if any(s is sink for s in _sinks):
            return
        _set_sinks((*_sinks, sink))


def remove_sink(sink: SpanSink) -> None:
    """Stop sending new spans to ``sink``; spans it saw start still reach its ``on_end``."""
    with _sinks_lock:
        _set_sinks(tuple(s for s in _sinks if s is not sink))


def _set_sinks(sinks: tuple[SpanSink, ...]) -> None:
    global _sinks, _hooks
    _sinks = sinks
    _hooks = tuple((getattr(s, "on_start", None), s.on_end) for s in sinks)


def current_span() -> Span | None:
    return _current.get()


def tracing_active() -> bool:
    return bool(_collectors.get() or _hooks) and settings.current().trace


_IDLE: AbstractContextManager[None] = nullcontext()


def span(
    name: str, qualname: str, kind: str, inputs: dict[str, Any], obj: Any = None
) -> AbstractContextManager[Span | None]:
    """Open a span under the current one; yields None (and records nothing) when no one listens."""
    collectors = _collectors.get()
    hooks = _hooks
    if not (collectors or hooks) or not settings.current().trace:
        return _IDLE
    parent = _current.get()
    s = Span(
        id=_new_id(),
        parent_id=parent.id if parent is not None else None,
        name=name,
        qualname=qualname,
        kind=kind,
        inputs=inputs,
        obj=obj,
    )
    return _Open(s, parent, collectors, hooks)


class _Open:
    """The scope of one recorded span: makes it current, times it, hands it to the listeners."""

    __slots__ = ("_collectors", "_hooks", "_parent", "_span", "_token")

    def __init__(
        self,
        s: Span,
        parent: Span | None,
        collectors: tuple[Trace, ...],
        hooks: tuple[tuple[_Hook | None, _Hook], ...],
    ) -> None:
        self._span = s
        self._parent = parent
        self._collectors = collectors
        self._hooks = hooks

    def __enter__(self) -> Span:
        s = self._span
        self._token = _current.set(s)
        s.start = time.time()
        for on_start, _ in self._hooks:
            if on_start is not None:
                _notify(on_start, s)
        return s

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        s = self._span
        s.end = time.time()
        if exc is not None:
            s.error = f"{type(exc).__name__}: {exc}"
        _current.reset(self._token)
        if self._parent is not None:
            with _tree_lock:
                self._parent.children.append(s)
        for c in self._collectors:
            c._add(s)
        for _, on_end in self._hooks:
            _notify(on_end, s)


def _notify(hook: _Hook, s: Span) -> None:
    try:
        hook(s)
    except Exception:
        logger.exception("span sink %r failed on span %s (%s)", hook, s.id, s.qualname)


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
    """Record a plain function (sync or async) as a span in the call tree."""

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
