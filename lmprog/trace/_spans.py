"""Spans and call trees of a run.

A span is opened for every lm_function call and every ``@traced`` function, but only while someone
listens: a collector (``with lmprog.trace() as t:``) in this context, or a process-wide span sink
registered with :func:`add_sink` (OpenTelemetry export is one, see ``lmprog.trace.enable_otel``).
When no one listens no span object is made, so tracing costs next to nothing. The current span and
the active collectors live in contextvars: asyncio tasks inherit them, and the worker threads
lmprog starts run in a copy of the caller's context, so parent links survive both.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from lmprog import settings
from lmprog.trace._span import Span, new_id

logger = logging.getLogger("lmprog.trace")


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
    """Collect the call trees of everything run inside the block (threads started by lmprog too).

    Yields:
        A :class:`Trace`: ``.spans`` (every finished span, by start time), ``.roots`` (the tops
        of the call trees), ``.lm_spans()``, ``.to_jsonl(path)``.

    Example:
        >>> import lmprog
        >>> from lmprog.testing import ScriptedLM
        >>> @lmprog.lm_function
        ... def capital(country: str) -> str:
        ...     '''The capital of the country.'''
        >>> with lmprog.context(lm=ScriptedLM(["Paris"])), lmprog.trace() as t:
        ...     capital("France")
        'Paris'
        >>> [(s.name, s.kind, s.output) for s in t.spans]
        [('capital', 'lm', 'Paris')]
    """
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
    ``on_start`` is later given to ``on_end``. A sink may define ``on_annotate(span)``, called
    when a span is judged after it ended (:func:`annotate`: a score, feedback). Exceptions a sink
    raises are logged, never propagated to the traced call.
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
        id=new_id(),
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


def annotate(s: Span, *, score: float | None = None, feedback: str | None = None) -> None:
    """Judge a finished span: set its ``score`` and/or ``feedback`` (None leaves a value as it is)
    and tell the registered sinks that define ``on_annotate(span)`` (the OpenTelemetry export
    adds the judgement to the exported trace)."""
    if score is not None:
        s.score = score
    if feedback is not None:
        s.feedback = feedback
    if score is None and feedback is None:
        return
    for sink in _sinks:
        hook = getattr(sink, "on_annotate", None)
        if hook is not None:
            _notify(hook, s)


def _notify(hook: _Hook, s: Span) -> None:
    try:
        hook(s)
    except Exception:
        logger.exception("span sink %r failed on span %s (%s)", hook, s.id, s.qualname)
