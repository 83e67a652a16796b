"""Export lmprog spans to OpenTelemetry, so traces can go to Jaeger, Langfuse, Phoenix...

Needs the ``otel`` extra (``pip install 'lmprog[otel]'``). After :func:`enable_otel`, every
lm_function call and every ``@traced`` call in the process becomes an OpenTelemetry span, inside a
``lmprog.trace()`` block or not, until :func:`disable_otel`::

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    from lmprog.trace._otel import enable_otel

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    enable_otel(provider)

Each lmprog span becomes one OpenTelemetry span with the same name, start and end times. An
lmprog span opened under another is its child; a top-level one is a child of the OpenTelemetry span
current where it runs (a web request's, say), and OpenTelemetry spans opened inside a traced
function (HTTP client instrumentation, your own) are children of its span. Attributes:

- every span: ``lmprog.kind`` (``"lm"`` or ``"traced"``), ``lmprog.qualname``, ``lmprog.span_id``
  (the id in lmprog's JSONL traces), ``lmprog.inputs`` and ``lmprog.output`` (JSON);
- lm_function spans, after the OpenTelemetry GenAI conventions: ``gen_ai.operation.name``
  (``"chat"``), ``gen_ai.request.model``, ``gen_ai.response.model``,
  ``gen_ai.usage.input_tokens``, ``gen_ai.usage.output_tokens``; and ``lmprog.cache_hit``,
  ``lmprog.parse_retries``, ``lmprog.calls``, ``lmprog.requests`` (failed ones included),
  ``lmprog.failed_requests``, ``lmprog.cost``,
  ``lmprog.messages`` (the last rendered messages, JSON) and ``lmprog.raw`` (the last completion);
- a failed call: status ``ERROR`` with the error message, and ``error.type``;
- a span judged after it ended (``evaluate`` puts the metric's score and feedback on each
  example's root span, and per-function feedback on that function's spans): a child span
  ``lmprog.feedback`` of its span, with ``lmprog.score`` and ``lmprog.feedback`` (the text; left
  out with ``capture_content=False``) and ``lmprog.span_id`` (the judged span's). The spans of the
  last ``FEEDBACK_MEMORY`` ended spans are remembered for this; older ones get no feedback span.

Text attributes are cut to ``max_length`` characters. Credentials never leave: parameters named
like ``api_key`` and the values of credential environment variables are redacted first.
``capture_content=False`` leaves out inputs, outputs, messages and completions altogether.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from pydantic_core import to_jsonable_python

from lmprog._version import __version__
from lmprog.errors import MissingDependencyError, UsageError
from lmprog.lm import redact, resolve_lm, secret_values
from lmprog.trace._span import Span
from lmprog.trace._spans import add_sink, remove_sink

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.context import Context
    from opentelemetry.trace import Span as OtelSpan
    from opentelemetry.trace import SpanContext, Tracer, TracerProvider

INSTALL_COMMAND = "pip install 'lmprog[otel]'"
DEFAULT_MAX_LENGTH = 4096
#: ended spans whose OpenTelemetry context is kept, so feedback given later can join their trace
FEEDBACK_MEMORY = 4096

_sink: _OtelSink | None = None
_lock = threading.Lock()


def enable_otel(
    tracer_provider: TracerProvider | None = None,
    *,
    capture_content: bool = True,
    max_length: int = DEFAULT_MAX_LENGTH,
) -> None:
    """Export every lmprog span from now on to OpenTelemetry.

    ``tracer_provider`` defaults to the global one (``opentelemetry.trace.set_tracer_provider``).
    Calling it again replaces the previous export. Raises
    :class:`~lmprog.errors.MissingDependencyError` when OpenTelemetry is not installed.
    """
    global _sink
    if max_length < 16:
        raise UsageError(f"max_length must be >= 16, got {max_length}")
    api = _require_otel()
    provider = tracer_provider if tracer_provider is not None else api.get_tracer_provider()
    sink = _OtelSink(provider.get_tracer("lmprog", __version__), capture_content, max_length)
    with _lock:
        if _sink is not None:
            remove_sink(_sink)
        _sink = sink
        add_sink(sink)


def disable_otel() -> None:
    """Stop exporting; spans already open are still exported when they end."""
    global _sink
    with _lock:
        if _sink is not None:
            remove_sink(_sink)
            _sink = None


def otel_enabled() -> bool:
    """Whether :func:`enable_otel` is in force."""
    return _sink is not None


def _require_otel() -> Any:
    """The ``opentelemetry.trace`` module, or a MissingDependencyError naming the install command."""
    try:
        from opentelemetry import trace
    except ImportError as e:
        raise MissingDependencyError(
            "OpenTelemetry export needs opentelemetry-sdk, which is not installed; "
            f"install it with: {INSTALL_COMMAND}"
        ) from e
    return trace


class _OtelSink:
    """A span sink (see ``lmprog.trace.SpanSink``) that mirrors lmprog spans as OpenTelemetry spans.

    ``on_start`` opens the OpenTelemetry span and makes it current in the span's context, which is
    how children (lmprog's and anyone's) find their parent; ``on_end`` sets the attributes and ends
    it with lmprog's timings.
    """

    def __init__(self, tracer: Tracer, capture_content: bool, max_length: int) -> None:
        from opentelemetry import context, trace

        self._tracer = tracer
        self._context = context
        self._trace = trace
        self._capture = capture_content
        self._max = max_length
        self._open: dict[str, tuple[OtelSpan, Token[Context]]] = {}
        self._ended: OrderedDict[str, SpanContext] = OrderedDict()
        self._lock = threading.Lock()

    def on_start(self, span: Span) -> None:
        kind = self._trace.SpanKind.CLIENT if span.kind == "lm" else self._trace.SpanKind.INTERNAL
        otel_span = self._tracer.start_span(span.name, kind=kind, start_time=_ns(span.start))
        token = self._context.attach(self._trace.set_span_in_context(otel_span))
        with self._lock:
            self._open[span.id] = (otel_span, token)

    def on_end(self, span: Span) -> None:
        with self._lock:
            entry = self._open.pop(span.id, None)
        if entry is None:
            return
        otel_span, token = entry
        self._context.detach(token)
        try:
            if otel_span.is_recording():
                self._finish(otel_span, span)
        finally:
            otel_span.end(end_time=_ns(span.end if span.end is not None else span.start))
            with self._lock:
                self._ended[span.id] = otel_span.get_span_context()
                while len(self._ended) > FEEDBACK_MEMORY:
                    self._ended.popitem(last=False)

    def on_annotate(self, span: Span) -> None:
        """A child span ``lmprog.feedback`` of ``span``'s, holding its score and feedback."""
        with self._lock:
            parent = self._ended.get(span.id)
        if parent is None:
            return
        attrs: dict[str, Any] = {"lmprog.span_id": span.id}
        if span.score is not None:
            attrs["lmprog.score"] = span.score
        if span.feedback is not None and self._capture:
            attrs["lmprog.feedback"] = self._text(span.feedback, secret_values())
        ctx = self._trace.set_span_in_context(self._trace.NonRecordingSpan(parent))
        now = _ns(time.time())
        feedback_span = self._tracer.start_span("lmprog.feedback", context=ctx, start_time=now)
        feedback_span.set_attributes(attrs)
        feedback_span.end(end_time=now)

    def _finish(self, otel_span: OtelSpan, span: Span) -> None:
        secrets = secret_values()
        attrs: dict[str, Any] = {
            "lmprog.kind": span.kind,
            "lmprog.qualname": span.qualname,
            "lmprog.span_id": span.id,
        }
        if self._capture:
            attrs["lmprog.inputs"] = self._json(span.inputs, secrets)
            if span.error is None:
                attrs["lmprog.output"] = self._json(span.output, secrets)
        if span.kind == "lm":
            attrs.update(self._lm_attributes(span, secrets))
        otel_span.set_attributes(attrs)
        if span.error is not None:
            otel_span.set_attribute("error.type", span.error.split(":", 1)[0])
            status = self._trace.Status(self._trace.StatusCode.ERROR, self._text(span.error, secrets))
            otel_span.set_status(status)

    def _lm_attributes(self, span: Span, secrets: list[str]) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.usage.input_tokens": span.prompt_tokens,
            "gen_ai.usage.output_tokens": span.completion_tokens,
            "lmprog.parse_retries": span.parse_retries,
            "lmprog.calls": span.calls,
            "lmprog.requests": span.requests,
            "lmprog.failed_requests": span.failed_requests,
            "lmprog.cost": span.cost,
        }
        requested = _requested_model(span)
        if requested is not None:
            attrs["gen_ai.request.model"] = requested
        if span.model:
            attrs["gen_ai.response.model"] = span.model
        if span.cache_hit is not None:
            attrs["lmprog.cache_hit"] = span.cache_hit
        if self._capture:
            if span.messages is not None:
                attrs["lmprog.messages"] = self._json(span.messages, secrets)
            if span.raw is not None:
                attrs["lmprog.raw"] = self._text(span.raw, secrets)
        return attrs

    def _json(self, value: Any, secrets: list[str]) -> str:
        data = redact(to_jsonable_python(value, fallback=repr), secrets)
        return self._cut(json.dumps(data, ensure_ascii=False))

    def _text(self, value: str, secrets: list[str]) -> str:
        return self._cut(redact(value, secrets))

    def _cut(self, text: str) -> str:
        return text if len(text) <= self._max else text[: self._max - 3] + "..."


def _requested_model(span: Span) -> str | None:
    """The model the lm_function asked for (``Span.model`` is the one that answered)."""
    if span.kind == "lm" and span.obj is not None:  # the obj of an lm span is its LMFunction
        return resolve_lm(getattr(span.obj, "lm", None)).model
    return span.model or None


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)
