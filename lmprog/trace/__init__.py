"""Spans and call trees of a run (``with lmprog.trace() as t:``, ``@traced``), and their export
to OpenTelemetry (``enable_otel``).

Holds ``_spans`` and ``_otel``. May import: ``errors``, ``settings``, ``usage``, ``_version``,
``lm``. opentelemetry is imported on first use only.
"""

from __future__ import annotations

from lmprog.trace._otel import disable_otel, enable_otel, otel_enabled
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
    "disable_otel",
    "enable_otel",
    "load_jsonl",
    "otel_enabled",
    "remove_sink",
    "span",
    "trace",
    "traced",
    "tracing_active",
]
