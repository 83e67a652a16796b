"""Streaming: ``BaseLM.stream``/``astream`` (deltas over the one call state machine) and
``fn.stream``/``fn.astream`` (text chunks, partial outputs, restarts, the final value)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pydantic
import pytest

import lmprog
from lmprog import FinalOutput, PartialOutput, Restart, TextChunk, lm_function
from lmprog.errors import OutputParseError, TransientLMError, UsageError
from lmprog.function import PROVIDER_RETRY
from lmprog.lm import BaseLM, Completion, Messages, StreamItem, TextDelta
from lmprog.testing import ScriptedLM
from lmprog.trace import current_span
from lmprog.usage import Usage


class Verdict(pydantic.BaseModel):
    topic: str
    score: int
    summary: str


@lm_function
def judge(text: str) -> Verdict:
    """Judge a text."""


@lm_function
def echo(text: str) -> str:
    """Repeat the text."""


@lm_function
async def ajudge(text: str) -> Verdict:
    """Judge a text."""


GOOD = {"topic": "cats", "score": 4, "summary": "a fine text about cats"}


def texts(events: list[Any]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextChunk))


# -- the LM contract -------------------------------------------------------------------------------
class OneShot(BaseLM):
    """A provider with only ``_request``: streams in one chunk (the default)."""

    def _request(self, messages: Messages, params: dict[str, Any]) -> Completion:
        return Completion("whole reply", usage=Usage(prompt_tokens=3, completion_tokens=2))


class Flaky(BaseLM):
    """Streams half a reply and fails (transiently) on the first request, then streams a whole one."""

    def __init__(self) -> None:
        super().__init__("flaky", cache=False, backoff_base=0.0, backoff_max=0.0)
        self.requests = 0

    def _request(self, messages: Messages, params: dict[str, Any]) -> Completion:
        raise AssertionError("the stream path must not call _request")

    def _request_stream(self, messages: Messages, params: dict[str, Any]) -> Iterator[StreamItem]:
        self.requests += 1
        if self.requests == 1:
            yield "topic: do"
            raise TransientLMError("connection reset", model=self.model)
        text = "topic: cats\nscore: 4\nsummary: fine"
        yield from ("topic: cats\n", "score: 4\n", "summary: fine")
        yield Completion(text, usage=Usage(prompt_tokens=5, completion_tokens=6))


def test_scripted_lm_streams_word_pieces_then_the_whole_completion() -> None:
    lm = ScriptedLM(["one two\nthree"])
    items = list(lm.stream([{"role": "user", "content": "hi"}]))
    assert items[:-1] == [TextDelta("one "), TextDelta("two\n"), TextDelta("three")]
    final = items[-1]
    assert isinstance(final, Completion) and final.text == "one two\nthree" and final.attempts == 1
    assert lm.usage.requests == 1 and lm.usage.calls == 1


def test_a_provider_without_streaming_streams_one_chunk() -> None:
    lm = OneShot("one-shot", cache=False)
    items = list(lm.stream([{"role": "user", "content": "hi"}]))
    assert items[0] == TextDelta("whole reply")
    assert isinstance(items[1], Completion) and items[1].text == "whole reply"
    assert len(items) == 2


def test_a_cache_hit_streams_the_cached_completion_in_one_piece() -> None:
    lm = ScriptedLM(["one two three"], cache=True)
    messages = [{"role": "user", "content": "hi"}]
    first = list(lm.stream(messages))
    assert len(first) == 4  # three words, then the completion
    second = list(lm.stream(messages))
    assert second[0] == TextDelta("one two three")
    assert isinstance(second[1], Completion) and second[1].cache_hit
    assert len(lm.calls) == 1  # the cache held the whole completion, stored once
    assert lm.complete(messages).text == "one two three" and len(lm.calls) == 1


def test_a_transient_failure_mid_stream_restarts_with_a_marker() -> None:
    lm = Flaky()
    items = list(lm.stream([{"role": "user", "content": "hi"}]))
    assert items[0] == TextDelta("topic: do")
    assert items[1] == TextDelta("", restart=True)
    final = items[-1]
    assert isinstance(final, Completion) and final.attempts == 2
    assert final.text == "".join(i.text for i in items[2:-1])
    assert lm.usage.failed_requests == 1 and lm.usage.requests == 2


def test_an_abandoned_stream_caches_nothing() -> None:
    lm = ScriptedLM(["one two three", "four"], cache=True)
    messages = [{"role": "user", "content": "hi"}]
    stream = lm.stream(messages)
    assert next(stream) == TextDelta("one ")
    stream.close()
    assert lm.complete(messages).text == "four"  # a new request, not a cache hit


def test_astream_streams_a_sync_streaming_provider_piece_by_piece() -> None:
    lm = ScriptedLM(["a b c"])

    async def collect() -> list[Any]:
        return [item async for item in lm.astream([{"role": "user", "content": "hi"}])]

    items = asyncio.run(collect())
    assert items[:-1] == [TextDelta("a "), TextDelta("b "), TextDelta("c")]
    assert isinstance(items[-1], Completion) and items[-1].text == "a b c"


def test_litellm_streams_chunks_and_rebuilds_the_completion() -> None:
    lm = lmprog.LM("openai/gpt-4o-mini", mock_response="hello there you", cache=False)
    items = list(lm.stream([{"role": "user", "content": "x"}]))
    pieces = [i.text for i in items if isinstance(i, TextDelta)]
    final = items[-1]
    assert len(pieces) > 1 and "".join(pieces) == "hello there you"
    assert isinstance(final, Completion) and final.text == "hello there you"
    assert final.finish_reason == "stop" and final.usage.completion_tokens > 0


# -- lm_functions ----------------------------------------------------------------------------------
def test_stream_yields_chunks_fields_as_they_complete_and_the_final_value() -> None:
    with lmprog.context(lm=ScriptedLM([GOOD])):
        events = list(judge.stream("text"))
    with lmprog.context(lm=ScriptedLM([GOOD])):
        called = judge("text")
    final = events[-1]
    assert isinstance(final, FinalOutput) and final.value == called == Verdict(**GOOD)
    partials = [e.fields for e in events if isinstance(e, PartialOutput)]
    assert partials == [{"topic": "cats"}, {"topic": "cats", "score": 4}]
    assert texts(events) == "topic: cats\nscore: 4\nsummary: a fine text about cats"
    # a field is reported only once the next header has started
    first_partial = next(i for i, e in enumerate(events) if isinstance(e, PartialOutput))
    assert texts(events[:first_partial]).endswith("score: ")


def test_json_replies_report_fields_as_their_values_close() -> None:
    with lmprog.context(lm=ScriptedLM([GOOD], constraint="json_schema")):
        events = list(judge.stream("text"))
    partials = [dict(e.fields) for e in events if isinstance(e, PartialOutput)]
    assert partials == [{"topic": "cats"}, {"topic": "cats", "score": 4}, GOOD]
    assert events[-1] == FinalOutput(Verdict(**GOOD))


def test_a_refused_reply_restarts_the_stream_with_its_errors() -> None:
    bad = "topic: cats\nscore: many\nsummary: x"
    lm = ScriptedLM([bad, GOOD])
    with lmprog.context(lm=lm), lmprog.trace() as t:
        events = list(judge.stream("text"))
    restarts = [e for e in events if isinstance(e, Restart)]
    assert len(restarts) == 1 and restarts[0].attempt == 2
    assert any("score" in error for error in restarts[0].errors)
    cut = events.index(restarts[0])
    assert texts(events[:cut]) == bad
    assert texts(events[cut:]) == t.spans[0].raw  # the span keeps the last completion, whole
    assert all(e.attempt == 1 for e in events[:cut] if isinstance(e, TextChunk | PartialOutput))
    assert events[-1] == FinalOutput(Verdict(**GOOD))
    # the invalid score was never reported as a partial field
    assert all("score" not in e.fields for e in events[:cut] if isinstance(e, PartialOutput))
    (sp,) = t.spans
    assert sp.parse_retries == 1 and sp.output == Verdict(**GOOD) and sp.usage.requests == 2


def test_a_provider_retry_restarts_the_stream() -> None:
    with lmprog.context(lm=Flaky()):
        events = list(judge.stream("text"))
    restart = next(e for e in events if isinstance(e, Restart))
    assert restart == Restart(1, (PROVIDER_RETRY,))
    assert texts(events[events.index(restart) :]) == "topic: cats\nscore: 4\nsummary: fine"
    assert events[-1] == FinalOutput(Verdict(topic="cats", score=4, summary="fine"))


def test_a_failing_call_raises_from_the_stream_after_its_events() -> None:
    seen: list[Any] = []
    with lmprog.context(lm=ScriptedLM(["nonsense", "still nonsense"])), pytest.raises(OutputParseError):
        for event in judge.stream("text"):
            seen.append(event)
    assert texts(seen) == "nonsensestill nonsense"
    assert sum(isinstance(e, Restart) for e in seen) == 1


def test_the_trace_and_the_cache_record_the_whole_completion_once() -> None:
    lm = ScriptedLM([GOOD], cache=True)
    with lmprog.context(lm=lm), lmprog.trace() as t:
        first = list(judge.stream("text"))
        second = list(judge.stream("text"))
    assert len(lm.calls) == 1
    first_span, second_span = t.spans
    assert first_span.raw == second_span.raw == texts(first) == texts(second)
    assert [type(e) for e in second] == [TextChunk, PartialOutput, FinalOutput]  # one chunk
    assert second_span.cache_hit and not first_span.cache_hit
    assert first[-1] == second[-1]


def test_a_single_output_streams_text_only() -> None:
    with lmprog.context(lm=ScriptedLM(["say it again"])):
        events = list(echo.stream("say it again"))
    assert [type(e) for e in events] == [TextChunk, TextChunk, TextChunk, FinalOutput]
    assert events[-1] == FinalOutput("say it again")


def test_the_stream_span_does_not_leak_into_the_consumer_between_events() -> None:
    outer: list[Any] = []
    with lmprog.context(lm=ScriptedLM([GOOD, "again"])), lmprog.trace() as t:
        for event in judge.stream("text"):
            outer.append(current_span())
            if isinstance(event, FinalOutput):
                echo("inside the loop")
    assert outer and all(s is None for s in outer)
    assert [s.parent_id for s in t.spans] == [None, None]  # the echo call is not a child


def test_usage_scopes_around_a_stream_count_its_requests() -> None:
    with (
        lmprog.context(lm=ScriptedLM(["topic: cats\nscore: x\nsummary: y", GOOD])),
        lmprog.usage.track() as scope,
    ):
        events = judge.stream("text")
        assert events is not None and scope.total.requests == 0  # nothing runs before iterating
        list(events)
    assert scope.total.requests == 2 and scope.total.calls == 2


def test_breaking_out_closes_the_span() -> None:
    with lmprog.context(lm=ScriptedLM([GOOD])), lmprog.trace() as t:
        for event in judge.stream("text"):
            if isinstance(event, PartialOutput):
                break
    (sp,) = t.spans
    assert sp.end is not None and sp.error is not None and "GeneratorExit" in sp.error


def test_arguments_are_checked_when_the_stream_is_made() -> None:
    with pytest.raises(UsageError):
        judge.stream(missing="x")  # type: ignore[call-arg]


def test_the_stream_keeps_the_context_it_was_made_in() -> None:
    with lmprog.context(lm=ScriptedLM([GOOD])):
        events = judge.stream("text")
    assert list(events)[-1] == FinalOutput(Verdict(**GOOD))


def test_async_functions_stream_asynchronously() -> None:
    async def collect() -> tuple[list[Any], list[Any]]:
        with lmprog.context(lm=ScriptedLM([GOOD, GOOD])):
            from_async = [e async for e in ajudge.stream("text")]
            from_sync = [e async for e in judge.astream("text")]
        return from_async, from_sync

    from_async, from_sync = asyncio.run(collect())
    assert from_async == from_sync
    assert from_async[-1] == FinalOutput(Verdict(**GOOD))
    assert [dict(e.fields) for e in from_async if isinstance(e, PartialOutput)] == [
        {"topic": "cats"},
        {"topic": "cats", "score": 4},
    ]


def test_methods_stream_with_their_instance_bound() -> None:
    class Judge:
        @lm_function
        def rate(self, text: str) -> Verdict:
            """Judge a text."""

    with lmprog.context(lm=ScriptedLM([GOOD])):
        events = list(Judge().rate.stream("text"))
    assert events[-1] == FinalOutput(Verdict(**GOOD))


def test_partial_fields_skip_commas_in_strings_and_nested_values() -> None:
    from lmprog.format import partial_fields

    sig = judge.signature
    assert partial_fields(sig, '{"topic": "a, {b}", "score": 4, "summ') == {"topic": "a, {b}", "score": 4}
    assert partial_fields(sig, '```json\n{"topic": "x\\", y", "sc') == {"topic": 'x", y'}
    assert partial_fields(sig, '{"topic": "cats"') == {}  # its value may still grow
    assert partial_fields(sig, "topic: cats\nscore: 4") == {"topic": "cats"}
    assert partial_fields(echo.signature, "anything: at all\nmore: text") == {}
