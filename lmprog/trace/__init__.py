"""TODO"""

from __future__ import annotations

from lmprog.trace._spans import (
    Span,
    SpanSink,
    Trace,
    add_sink,
    adopt,
    current_span,
    load_jsonl,
    remove_sink,
    span,
    trace,
    traced,
    tracing_active,
)

__all__ = [
    "Span",
    "SpanSink",
    "Trace",
    "add_sink",
    "adopt",
    "current_span",
    "load_jsonl",
    "remove_sink",
    "span",
    "trace",
    "traced",
    "tracing_active",
]
