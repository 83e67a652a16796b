"""A span: one call in a run's call tree (an lm_function call or a ``@traced`` function), with
its inputs, output or error, timing and, for lm calls, the messages, raw completion and usage.

Span ids are unique across the processes of a run (``pid-counter``). The usage counts live in
one :class:`~lmprog.usage.Usage` (``span.usage``); ``span.prompt_tokens`` and the other counts
read through to it. ``lmprog.trace._spans`` opens spans and collects them into call trees.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from typing import Any, Generic, TypeVar, overload

from pydantic_core import to_jsonable_python

from lmprog.lm import redact
from lmprog.usage import Usage

__all__ = ["Span", "new_id"]

_ids = itertools.count(1)
_pid = os.getpid()


def new_id() -> str:
    return f"{_pid:x}-{next(_ids):x}"


def _after_fork() -> None:
    """A forked child (a multiprocessing worker) numbers its spans under its own pid, so its span
    ids never repeat the parent's or a sibling's."""
    global _ids, _pid
    _ids = itertools.count(1)
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork)


T = TypeVar("T", int, float)

_USAGE_FIELDS = frozenset(f.name for f in fields(Usage))


class _UsageCount(Generic[T]):
    """A span attribute that reads (and, for old callers, writes) one count of ``span.usage``:
    the counts have one home, :class:`~lmprog.usage.Usage`."""

    def __set_name__(self, owner: type, name: str) -> None:
        if name not in _USAGE_FIELDS:
            raise TypeError(f"{name!r} is not a field of Usage")
        self.name = name

    @overload
    def __get__(self, span: None, owner: type) -> _UsageCount[T]: ...
    @overload
    def __get__(self, span: Span, owner: type) -> T: ...
    def __get__(self, span: Span | None, owner: type) -> T | _UsageCount[T]:
        if span is None:
            return self
        value: T = getattr(span.usage, self.name)
        return value

    def __set__(self, span: Span, value: T) -> None:
        counts: dict[str, Any] = {self.name: value}
        span.usage = replace(span.usage, **counts)


@dataclass
class Span:
    """One call in the tree. ``kind`` is ``"lm"`` for lm_functions, ``"tool"`` for a tool an
    lm_function's model called, and ``"traced"`` otherwise.

    lm spans also carry ``model``, the last rendered ``messages``, the last ``raw`` completion,
    ``parse_retries`` (completions rejected by the parser), ``usage`` (the call's
    :class:`~lmprog.usage.Usage`: completions, requests, failures, cache hits, tokens, cost; each
    count is also readable as an attribute, ``span.prompt_tokens``) and ``cache_hit`` (every
    completion of the call came from the cache). ``reasoning`` is what an
    ``@lm_function(reasoning=True)`` wrote before its answer (None for other spans).

    ``score`` (0-1) and ``feedback`` are set after the call, by whoever judged it (see
    :func:`~lmprog.trace.annotate`): ``evaluate`` puts the metric's score and feedback text on
    the root span of each example's run, and a :class:`~lmprog.metrics.Feedback`'s per-function
    text on the spans of that function.
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
    messages: list[dict[str, Any]] | None = None
    raw: str | None = None
    parse_retries: int = 0
    #: The LM usage of this span alone (children not included).
    usage: Usage = field(default_factory=Usage)
    cache_hit: bool | None = None
    reasoning: str | None = None
    #: option text -> score of a label-scoring call (``decode="score"``/``"calibrated"``)
    scores: dict[str, float] | None = None
    #: the tool calls of an lm_function with tools, in order: ``{"tool", "arguments", "result"}``
    #: or ``{"tool", "arguments", "error"}`` (each call is also a child span of kind ``"tool"``)
    tool_calls: list[dict[str, Any]] | None = None
    score: float | None = None
    feedback: str | None = None
    children: list[Span] = field(default_factory=list, repr=False)
    #: the live object that ran (the LMFunction of an lm span); not serialized
    obj: Any = field(default=None, repr=False, compare=False)

    calls = _UsageCount[int]()
    requests = _UsageCount[int]()
    failed_requests = _UsageCount[int]()
    cache_hits = _UsageCount[int]()
    prompt_tokens = _UsageCount[int]()
    completion_tokens = _UsageCount[int]()
    cost = _UsageCount[float]()

    @property
    def duration(self) -> float | None:
        return None if self.end is None else self.end - self.start

    def add_usage(self, usage: Usage) -> None:
        """Add ``usage`` to this span's own counts."""
        self.usage = self.usage + usage

    def walk(self) -> Iterator[Span]:
        """This span and all its descendants, depth first."""
        yield self
        for child in self.children:
            yield from child.walk()

    def to_dict(self) -> dict[str, Any]:
        """The span as JSON-ready data, secrets redacted; the usage counts are flat keys
        (``"prompt_tokens": 12``), as :meth:`from_dict` reads them."""
        data: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            if key == "usage":
                data.update(value.to_dict())
            elif key not in ("children", "obj"):
                data[key] = value
        data["inputs"] = to_jsonable_python(self.inputs, fallback=repr)
        data["output"] = to_jsonable_python(self.output, fallback=repr)
        redacted: dict[str, Any] = redact(data)
        return redacted

    def __getstate__(self) -> dict[str, Any]:
        """For pickling (process workers send spans back): ``obj`` goes along only when it is an
        lm_function (which pickles by reference); other live objects stay behind."""
        state = dict(self.__dict__)
        if state.get("kind") != "lm":  # the obj of an lm span is its LMFunction
            state["obj"] = None
        return state

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Span:
        """A span from :meth:`to_dict` data (unknown keys ignored; no children)."""
        known = {
            k: v
            for k, v in data.items()
            if k in cls.__dataclass_fields__ and k not in ("children", "obj", "usage")
        }
        counts = {k: v for k, v in data.items() if k in _USAGE_FIELDS}
        return cls(**known, usage=Usage(**counts))
