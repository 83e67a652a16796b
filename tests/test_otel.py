from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import lmprog
from lmprog import lm_function, traced
from lmprog.otel import disable_otel, enable_otel, otel_enabled
from lmprog.testing import ScriptedLM


@lm_function
def extract(text: str) -> str:
    """Extract the key fact."""


@lm_function
def answer(question: str, fact: str) -> str:
    """Answer from the fact."""


@traced
def helper(text: str) -> str:
    return extract(text)


@traced
def pipeline(question: str, text: str) -> str:
    return answer(question=question, fact=helper(text))


@pytest.fixture
def provider() -> TracerProvider:
    return TracerProvider()


@pytest.fixture
def exporter(provider: TracerProvider) -> Iterator[InMemorySpanExporter]:
    exp = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exp))
    enable_otel(provider)
    yield exp
    disable_otel()


def by_name(spans: tuple[ReadableSpan, ...] | list[ReadableSpan]) -> dict[str, ReadableSpan]:
    out = {s.name: s for s in spans}
    assert len(out) == len(spans), [s.name for s in spans]
    return out


def parent_id(s: ReadableSpan) -> int | None:
    return s.parent.span_id if s.parent is not None else None


def span_id(s: ReadableSpan) -> int:
    assert s.context is not None
    return s.context.span_id


def test_spans_are_exported_without_a_trace_block_with_parent_links(
    exporter: InMemorySpanExporter,
) -> None:
    with lmprog.context(lm=ScriptedLM(["the fact", "the answer"])):
        assert pipeline("q?", "some text") == "the answer"
    spans = by_name(exporter.get_finished_spans())
    assert set(spans) == {"pipeline", "helper", "extract", "answer"}
    root = spans["pipeline"]
    assert root.parent is None
    assert parent_id(spans["helper"]) == span_id(root)
    assert parent_id(spans["answer"]) == span_id(root)
    assert parent_id(spans["extract"]) == span_id(spans["helper"])
    assert len({s.context.trace_id for s in spans.values() if s.context is not None}) == 1
    assert spans["extract"].kind is SpanKind.CLIENT and root.kind is SpanKind.INTERNAL


def test_timings_and_ids_match_the_lmprog_spans(exporter: InMemorySpanExporter) -> None:
    with lmprog.context(lm=ScriptedLM(["the fact", "the answer"])), lmprog.trace() as t:
        pipeline("q?", "some text")
    exported = {s.attributes["lmprog.span_id"]: s for s in exporter.get_finished_spans() if s.attributes}
    assert set(exported) == {s.id for s in t.spans}
    for s in t.spans:
        o = exported[s.id]
        assert s.end is not None and o.start_time is not None and o.end_time is not None
        assert o.start_time == int(s.start * 1e9) and o.end_time == int(s.end * 1e9)
        assert o.name == s.name and o.attributes is not None and o.attributes["lmprog.qualname"] == s.qualname


def test_lm_span_attributes_follow_the_genai_conventions(exporter: InMemorySpanExporter) -> None:
    lm = ScriptedLM(["the fact", "the answer"], model="scripted-1")
    with lmprog.context(lm=lm), lmprog.trace() as t:
        pipeline("q?", "some text")
    spans = by_name(exporter.get_finished_spans())
    ext = spans["extract"].attributes
    assert ext is not None
    (lm_span,) = [s for s in t.spans if s.name == "extract"]
    assert ext["gen_ai.operation.name"] == "chat"
    assert ext["gen_ai.request.model"] == "scripted-1" and ext["gen_ai.response.model"] == "scripted-1"
    assert ext["gen_ai.usage.input_tokens"] == lm_span.prompt_tokens > 0
    assert ext["gen_ai.usage.output_tokens"] == lm_span.completion_tokens == 2
    assert ext["lmprog.kind"] == "lm" and str(ext["lmprog.qualname"]).endswith("extract")
    assert ext["lmprog.cache_hit"] is False and ext["lmprog.parse_retries"] == 0
    assert ext["lmprog.calls"] == 1 and ext["lmprog.requests"] == 1 and ext["lmprog.cost"] == 0.0
    assert json.loads(str(ext["lmprog.inputs"])) == {"text": "some text"}
    assert json.loads(str(ext["lmprog.output"])) == "the fact"
    assert ext["lmprog.raw"] == "the fact"
    assert json.loads(str(ext["lmprog.messages"]))[-1]["content"] == "text: some text"
    root = spans["pipeline"].attributes
    assert root is not None and root["lmprog.kind"] == "traced"
    assert json.loads(str(root["lmprog.inputs"])) == {"question": "q?", "text": "some text"}
    assert "gen_ai.operation.name" not in root
    assert spans["pipeline"].status.status_code is StatusCode.UNSET


def test_parse_retries_and_cache_hits_are_reported(exporter: InMemorySpanExporter) -> None:
    @lm_function
    def count(text: str) -> int:
        """How many words."""

    lm = ScriptedLM(["many", "3"], cache=True)
    with lmprog.context(lm=lm):
        assert count("a b c") == 3
        assert count("a b c") == 3  # both completions now come from the cache
    first, second = exporter.get_finished_spans()
    assert first.attributes is not None and second.attributes is not None
    assert first.attributes["lmprog.parse_retries"] == 1 and first.attributes["lmprog.calls"] == 2
    assert first.attributes["lmprog.cache_hit"] is False and first.attributes["lmprog.requests"] == 2
    assert second.attributes["lmprog.cache_hit"] is True and second.attributes["lmprog.requests"] == 0


def test_failures_set_error_status_on_the_span_and_its_parents(exporter: InMemorySpanExporter) -> None:
    @lm_function
    def num(text: str) -> int:
        """A number."""

    @traced
    def outer(text: str) -> int:
        return num(text)

    with lmprog.context(lm=ScriptedLM(["x", "y", "z"])), pytest.raises(lmprog.OutputParseError):
        outer("t")
    spans = by_name(exporter.get_finished_spans())
    for name in ("num", "outer"):
        s = spans[name]
        assert s.status.status_code is StatusCode.ERROR
        assert s.status.description and "could not parse" in s.status.description
        assert s.attributes is not None and s.attributes["error.type"] == "OutputParseError"
        assert "lmprog.output" not in s.attributes
    assert spans["num"].attributes is not None and spans["num"].attributes["lmprog.parse_retries"] == 2


def test_async_tasks_keep_separate_subtrees(exporter: InMemorySpanExporter) -> None:
    @lm_function
    async def echo(text: str) -> str:
        """Echo."""

    @traced
    async def branch(text: str) -> str:
        await asyncio.sleep(0.01)
        return await echo(text)

    @traced
    async def root(a: str, b: str) -> list[str]:
        return list(await asyncio.gather(branch(a), branch(b)))

    lm = ScriptedLM(lambda messages: messages[-1]["content"].split(": ", 1)[1].upper())
    with lmprog.context(lm=lm):
        assert asyncio.run(root("a", "b")) == ["A", "B"]
    spans = exporter.get_finished_spans()
    (top,) = [s for s in spans if s.name == "root"]
    branches = [s for s in spans if s.name == "branch"]
    assert len(branches) == 2 and all(parent_id(b) == span_id(top) for b in branches)
    for b in branches:
        assert b.attributes is not None
        text = json.loads(str(b.attributes["lmprog.inputs"]))["text"]
        (leaf,) = [s for s in spans if s.name == "echo" and parent_id(s) == span_id(b)]
        assert (
            leaf.attributes is not None and json.loads(str(leaf.attributes["lmprog.output"])) == text.upper()
        )


def test_threads_of_an_evaluation_pool_attach_to_the_callers_span(exporter: InMemorySpanExporter) -> None:
    @traced
    def run_all() -> float:
        data = [{"question": f"q{i}", "text": f"t{i}", "label": "ok"} for i in range(6)]
        return lmprog.evaluate(
            pipeline, data, lambda ex, pred: pred == ex["label"], threads=4, progress=False
        ).score

    with lmprog.context(lm=ScriptedLM(lambda messages: "ok")):
        assert run_all() == 100.0
    spans = exporter.get_finished_spans()
    (top,) = [s for s in spans if s.name == "run_all"]
    pipelines = [s for s in spans if s.name == "pipeline"]
    assert len(pipelines) == 6 and all(parent_id(p) == span_id(top) for p in pipelines)
    pipeline_ids = {span_id(p) for p in pipelines}
    assert len([s for s in spans if s.name == "answer" and parent_id(s) in pipeline_ids]) == 6
    assert len({s.context.trace_id for s in spans if s.context is not None}) == 1


def test_lmprog_spans_nest_inside_and_around_other_otel_spans(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    tracer = provider.get_tracer("app")

    @traced
    def step(text: str) -> str:
        with tracer.start_as_current_span("http-call"):
            return extract(text)

    with lmprog.context(lm=ScriptedLM(["fact"])), tracer.start_as_current_span("request"):
        step("t")
    spans = by_name(exporter.get_finished_spans())
    assert parent_id(spans["step"]) == span_id(spans["request"])
    assert parent_id(spans["http-call"]) == span_id(spans["step"])
    assert parent_id(spans["extract"]) == span_id(spans["http-call"])


def test_spans_never_hold_api_keys(monkeypatch: pytest.MonkeyPatch, exporter: InMemorySpanExporter) -> None:
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", secret)

    @traced
    def call(api_key: str, text: str) -> str:
        return extract(text + " " + secret)

    @traced
    def fail(text: str) -> None:
        raise RuntimeError(f"bad key {secret}")

    with lmprog.context(lm=ScriptedLM(["done " + secret])):
        call(secret, "hello")
        with pytest.raises(RuntimeError):
            fail("x")
    spans = exporter.get_finished_spans()
    assert len(spans) == 3
    dumped = [json.dumps(dict(s.attributes or {})) + str(s.status.description) for s in spans]
    assert all(secret not in d for d in dumped)
    assert any("[REDACTED]" in d for d in dumped)


def test_long_values_are_cut_and_content_can_be_left_out(provider: TracerProvider) -> None:
    exp = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exp))
    enable_otel(provider, max_length=64)
    try:
        with lmprog.context(lm=ScriptedLM(["fact"])):
            helper("word " * 100)
        enable_otel(provider, capture_content=False)
        with lmprog.context(lm=ScriptedLM(["fact"])):
            helper("word " * 100)
    finally:
        disable_otel()
    spans = exp.get_finished_spans()
    assert len(spans) == 4
    cut = [s.attributes for s in spans[:2] if s.attributes is not None]
    assert all(len(str(a["lmprog.inputs"])) == 64 and str(a["lmprog.inputs"]).endswith("...") for a in cut)
    for s in spans[2:]:
        assert s.attributes is not None
        assert not {"lmprog.inputs", "lmprog.output", "lmprog.messages", "lmprog.raw"} & set(s.attributes)
        assert s.attributes["lmprog.kind"] in ("lm", "traced")


def test_nothing_is_exported_when_disabled_or_tracing_is_off(exporter: InMemorySpanExporter) -> None:
    assert otel_enabled()
    with lmprog.context(lm=ScriptedLM(["a", "b", "c", "d"])):
        with lmprog.context(trace=False):
            pipeline("q", "t")
        assert exporter.get_finished_spans() == ()
        disable_otel()
        assert not otel_enabled()
        pipeline("q", "t")
    assert exporter.get_finished_spans() == ()


def test_a_missing_opentelemetry_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(lmprog.MissingDependencyError, match=r"pip install 'lmprog\[otel\]'"):
        enable_otel()
    assert not otel_enabled()


def test_bad_max_length_is_a_usage_error() -> None:
    with pytest.raises(lmprog.UsageError, match="max_length"):
        enable_otel(TracerProvider(), max_length=0)


def test_evaluate_exports_the_metric_feedback_as_child_spans_of_the_judged_spans(
    exporter: InMemorySpanExporter,
) -> None:
    def metric(example: dict[str, Any], prediction: str) -> lmprog.Feedback:
        return lmprog.Feedback(0.5, "half right", for_function={"extract": "missed the date"})

    with lmprog.context(lm=ScriptedLM(["the fact", "the answer"]), cache=False):
        lmprog.evaluate(pipeline, [{"question": "q?", "text": "t", "answer": "a"}], metric, progress=False)
    spans = exporter.get_finished_spans()
    feedback = [s for s in spans if s.name == "lmprog.feedback"]
    judged = {parent_id(s): dict(s.attributes or {}) for s in feedback}
    ids = {s.name: span_id(s) for s in spans if s.name != "lmprog.feedback"}
    assert set(judged) == {ids["pipeline"], ids["extract"]}
    root = judged[ids["pipeline"]]
    assert root["lmprog.score"] == 0.5 and root["lmprog.feedback"] == "half right"
    assert judged[ids["extract"]]["lmprog.feedback"] == "missed the date"
    assert "lmprog.score" not in judged[ids["extract"]]


def test_feedback_text_is_content_and_stays_home_without_capture(provider: TracerProvider) -> None:
    exp = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exp))
    enable_otel(provider, capture_content=False)
    try:
        with lmprog.context(lm=ScriptedLM(["the fact", "the answer"]), cache=False):
            lmprog.evaluate(
                pipeline,
                [{"question": "q?", "text": "t", "answer": "a"}],
                lambda e, p: lmprog.Feedback(1.0, "secret label a"),
                progress=False,
            )
    finally:
        disable_otel()
    (fb,) = [s for s in exp.get_finished_spans() if s.name == "lmprog.feedback"]
    assert dict(fb.attributes or {}) == {
        "lmprog.span_id": dict(fb.attributes or {})["lmprog.span_id"],
        "lmprog.score": 1.0,
    }
