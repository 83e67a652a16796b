"""Spans and call trees of a run (``with lmprog.trace() as t:``, ``@traced``), and their export
to OpenTelemetry (``enable_otel``).

Holds ``_span`` (``Span``), ``_spans`` (collectors, sinks, opening spans), ``_traced``
(``@traced``) and ``_otel``. May import: ``errors``, ``settings``, ``usage``, ``_version``,
``lm``. opentelemetry is imported on first use only.
"""

from __future__ import annotations

from lmprog.trace._otel import DEFAULT_MAX_LENGTH, INSTALL_COMMAND, disable_otel, enable_otel, otel_enabled
from lmprog.trace._span import Span
from lmprog.trace._spans import (
    SpanSink,
    Trace,
    add_sink,
    adopt,
    annotate,
    current_span,
    load_jsonl,
    remove_sink,
    span,
    trace,
    tracing_active,
)
from lmprog.trace._traced import traced

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "INSTALL_COMMAND",
    "Span",
    "SpanSink",
    "Trace",
    "add_sink",
    "adopt",
    "annotate",
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
