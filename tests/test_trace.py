from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

import lmprog
from lmprog import lm_function, traced
from lmprog.testing import ScriptedLM
from lmprog.trace import Span, Trace, add_sink, current_span, remove_sink


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
    fact = helper(text)
    return answer(question=question, fact=fact)


def test_nested_sync_tree_has_correct_parent_links() -> None:
    lm = ScriptedLM(["the fact", "the answer"])
    with lmprog.context(lm=lm), lmprog.trace() as t:
        assert pipeline("q?", "some text") == "the answer"
    (root,) = t.roots
    assert root.name == "pipeline" and root.kind == "traced" and root.parent_id is None
    assert [c.name for c in root.children] == ["helper", "answer"]
    (ext,) = root.children[0].children
    assert ext.name == "extract" and ext.kind == "lm" and ext.parent_id == root.children[0].id
    assert ext.raw == "the fact" and ext.output == "the fact" and ext.model == "scripted"
    assert ext.messages is not None and ext.messages[-1]["content"] == "text: some text"
    assert ext.calls == 1 and ext.requests == 1 and ext.prompt_tokens > 0
    assert root.inputs == {"question": "q?", "text": "some text"} and root.output == "the answer"
    assert all(s.end is not None and s.end >= s.start for s in t.spans)


def test_nothing_is_recorded_outside_a_trace_block_and_when_disabled() -> None:
    lm = ScriptedLM(["a", "b", "c", "d"])
    with lmprog.context(lm=lm):
        pipeline("q", "t")
        with lmprog.context(trace=False), lmprog.trace() as t:
            pipeline("q", "t")
    assert t.spans == []
    assert current_span() is None


def test_errors_are_recorded_on_the_failing_span_and_its_parents() -> None:
    lm = ScriptedLM(["x", "y", "z"])

    @lm_function
    def num(text: str) -> int:
        """A number."""

    @traced
    def outer(text: str) -> int:
        return num(text)

    with lmprog.context(lm=lm), lmprog.trace() as t:
        try:
            outer("t")
        except lmprog.OutputParseError:
            pass
    (root,) = t.roots
    assert root.error and "OutputParseError" in root.error
    child = root.children[0]
    assert child.error and child.parse_retries == 2 and child.calls == 2  # a format failure: 2 requests


def test_async_tasks_keep_separate_subtrees() -> None:
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
    with lmprog.context(lm=lm), lmprog.trace() as t:
        assert asyncio.run(root("a", "b")) == ["A", "B"]
    (r,) = t.roots
    assert len(r.children) == 2
    for br in r.children:
        (leaf,) = br.children
        assert leaf.parent_id == br.id and leaf.output == br.inputs["text"].upper()


def test_threads_of_an_evaluation_pool_attach_to_the_callers_span() -> None:
    lm = ScriptedLM(lambda messages: "ok")

    @traced
    def run_all() -> float:
        data = [{"question": f"q{i}", "text": f"t{i}", "label": "ok"} for i in range(6)]
        return lmprog.evaluate(
            pipeline, data, lambda ex, pred: pred == ex["label"], threads=4, progress=False
        ).score

    with lmprog.context(lm=lm), lmprog.trace() as t:
        assert run_all() == 100.0
    (root,) = t.roots
    assert root.name == "run_all"
    assert sorted(c.inputs["question"] for c in root.children) == [f"q{i}" for i in range(6)]
    assert all(c.name == "pipeline" and c.parent_id == root.id for c in root.children)
    assert len([s for s in t.spans if s.kind == "lm"]) == 12


def test_jsonl_round_trip_rebuilds_the_tree(tmp_path: Path) -> None:
    lm = ScriptedLM(["fact", "answer"])
    with lmprog.context(lm=lm), lmprog.trace() as t:
        pipeline("q", "t")
    path = tmp_path / "run.jsonl"
    t.to_jsonl(path)
    lines = path.read_text().splitlines()
    assert len(lines) == 4 and all(json.loads(line)["id"] for line in lines)
    back = Trace.from_jsonl(path)
    (root,) = back.roots
    assert [c.name for c in root.children] == ["helper", "answer"]
    assert root.children[0].children[0].raw == "fact"
    assert [s.id for s in back.spans] == [s.id for s in t.spans]


def test_spans_never_hold_api_keys(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", secret)

    @traced
    def call(api_key: str, text: str) -> str:
        return extract(text + " " + secret)

    with lmprog.context(lm=ScriptedLM(["done " + secret])), lmprog.trace() as t:
        call(secret, "hello")
    path = tmp_path / "t.jsonl"
    t.to_jsonl(path)
    assert secret not in path.read_text()


class RecordingSink:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str | None]] = []

    def on_start(self, span: Span) -> None:
        assert current_span() is span and span.end is None
        self.events.append(("start", span.name, span.parent_id))

    def on_end(self, span: Span) -> None:
        assert span.end is not None
        self.events.append(("end", span.name, span.error))


def test_sinks_see_every_span_without_a_trace_block() -> None:
    sink = RecordingSink()
    add_sink(sink)
    add_sink(sink)  # idempotent
    try:
        with lmprog.context(lm=ScriptedLM(["fact", "answer", "fact", "answer"])):
            pipeline("q", "t")
            with lmprog.context(trace=False):
                pipeline("q", "t")
    finally:
        remove_sink(sink)
    assert [(e, n) for e, n, _ in sink.events] == [
        ("start", "pipeline"),
        ("start", "helper"),
        ("start", "extract"),
        ("end", "extract"),
        ("end", "helper"),
        ("start", "answer"),
        ("end", "answer"),
        ("end", "pipeline"),
    ]
    assert sink.events[0][2] is None and all(p is not None for _, _, p in sink.events[1:3])


def test_a_sink_removed_mid_span_still_sees_it_end_and_a_failing_sink_is_only_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = RecordingSink()

    class Broken:
        def on_end(self, span: Span) -> None:
            raise RuntimeError("sink down")

    broken = Broken()

    @traced
    def work(x: int) -> int:
        remove_sink(sink)
        return x + 1

    add_sink(sink)
    add_sink(broken)
    try:
        assert work(1) == 2
        assert work(2) == 3
    finally:
        remove_sink(broken)
    assert [(e, n) for e, n, _ in sink.events] == [("start", "work"), ("end", "work")]
    assert "sink down" in caplog.text


def test_traced_inputs_bind_like_the_signature() -> None:
    @traced
    def plain(a: int, b: int = 2, *, c: str = "c") -> None: ...

    @traced
    def varargs(a: int, *rest: int, **extra: int) -> None: ...

    with lmprog.trace() as t:
        plain(1)
        plain(1, 3)
        plain(c="x", a=5)
        plain(b=4, a=1, c="y")
        varargs(1, 2, 3, k=4)
        with pytest.raises(TypeError):
            plain(1, 2, 3)  # type: ignore[call-arg, arg-type]
        with pytest.raises(TypeError):
            plain(1, d=1)  # type: ignore[call-arg]
    inputs = [s.inputs for s in t.spans]
    assert inputs[:5] == [
        {"a": 1, "b": 2, "c": "c"},
        {"a": 1, "b": 3, "c": "c"},
        {"a": 5, "b": 2, "c": "x"},
        {"a": 1, "b": 4, "c": "y"},
        {"a": 1, "rest": (2, 3), "extra": {"k": 4}},
    ]
    assert [list(i) for i in inputs[2:4]] == [["a", "b", "c"]] * 2
    assert inputs[5] == {"args": [1, 2, 3]} and inputs[6] == {"args": [1], "d": 1}
    assert all(s.error and s.error.startswith("TypeError") for s in t.spans[5:])


def test_span_usage_is_one_usage_read_through_by_the_count_attributes(tmp_path: Path) -> None:
    lm = ScriptedLM(["the fact"])
    with lmprog.context(lm=lm), lmprog.trace() as t:
        extract("some text")
    (s,) = t.spans
    assert isinstance(s.usage, lmprog.Usage)
    assert (
        (s.calls, s.requests, s.prompt_tokens, s.completion_tokens)
        == (
            s.usage.calls,
            s.usage.requests,
            s.usage.prompt_tokens,
            s.usage.completion_tokens,
        )
        == (1, 1, lm.usage.prompt_tokens, 2)
    )
    s.cost = 0.5  # old writers of a count still work, through the one Usage
    assert s.usage.cost == 0.5
    data = s.to_dict()
    assert "usage" not in data and {k: data[k] for k in s.usage.to_dict()} == s.usage.to_dict()
    path = tmp_path / "one.jsonl"
    t.to_jsonl(path)
    (back,) = Trace.from_jsonl(path).spans
    assert back.usage == s.usage and back.cost == 0.5
