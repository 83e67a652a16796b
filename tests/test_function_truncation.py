"""Replies cut at ``max_tokens`` and empty replies are failed attempts, never answers.

A cut reply may still parse (the ``1`` of ``12``): it is never read, never cached, retried once
with twice the token budget, then reported as ``TruncatedOutputError``. An empty reply from any
provider is a failed request, retried like a transient failure. The sync and async paths share
one retry state machine, so every behaviour is checked on both.
"""

from __future__ import annotations

import asyncio
import enum
import pickle
from typing import Annotated, Any, Literal

import annotated_types
import pytest

import lmprog
from lmprog import OutputParseError, lm_function, settings
from lmprog.cache import get_cache
from lmprog.errors import LmprogError, TransientLMError, TruncatedOutputError
from lmprog.function import MAX_RETRY_TOKENS, SHORT_OUTPUT_TOKENS
from lmprog.lm import Completion
from lmprog.testing import ScriptedLM
from lmprog.trace import trace
from lmprog.usage import Usage


@lm_function
def count(text: str) -> int:
    """Count the words of the text."""


@lm_function
async def acount(text: str) -> int:
    """Count the words of the text."""


@lm_function
def summarize(text: str) -> str:
    """Summarize the text in one sentence."""


@lm_function
async def asummarize(text: str) -> str:
    """Summarize the text in one sentence."""


def cut(text: str) -> Completion:
    """A reply the provider cut at max_tokens."""
    return Completion(text, finish_reason="length")


def call(fn_sync: Any, fn_async: Any, mode: str, text: str) -> Any:
    if mode == "sync":
        return fn_sync(text)
    return asyncio.run(fn_async(text))


MODES = ["sync", "async"]


@pytest.mark.parametrize("mode", MODES)
def test_a_cut_reply_is_not_read_and_is_retried_with_twice_the_budget(mode: str) -> None:
    lm = ScriptedLM([cut("1"), "12"])  # "1" parses as an int: it must not be the answer
    with lmprog.context(lm=lm):
        assert call(count, acount, mode, "a b c d e f g h i j k l") == 12
    assert [c.params["max_tokens"] for c in lm.calls] == [SHORT_OUTPUT_TOKENS, 2 * SHORT_OUTPUT_TOKENS]
    assert lm.calls[1].messages == lm.calls[0].messages  # the model did nothing wrong: no error shown


@pytest.mark.parametrize("mode", MODES)
def test_a_reply_cut_twice_raises_a_clear_error_naming_the_function(mode: str) -> None:
    lm = ScriptedLM([cut("1"), cut("12"), "never asked"])
    with lmprog.context(lm=lm), trace() as t, pytest.raises(TruncatedOutputError) as info:
        call(count, acount, mode, "a b c")
    error = info.value
    name = (count if mode == "sync" else acount).signature.qualname
    assert isinstance(error, OutputParseError) and isinstance(error, LmprogError)
    assert (error.function, error.raw, error.attempts, error.max_tokens) == (name, "12", 2, 96)
    assert str(error).startswith(f"{name}: the model's reply was cut off at max_tokens=96 after 2 attempt(s)")
    assert "'12'" in str(error) and "max_tokens" in error.errors[0]
    assert len(lm.calls) == 2  # one retry, with a larger budget, then the report
    (sp,) = t.lm_spans()
    assert sp.error is not None and sp.error.startswith("TruncatedOutputError")
    assert (sp.raw, sp.parse_retries, sp.requests) == ("12", 2, 2)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is TruncatedOutputError and str(copy) == str(error)
    assert (copy.function, copy.raw, copy.attempts, copy.max_tokens) == (name, "12", 2, 96)


@pytest.mark.parametrize("mode", MODES)
def test_a_cut_reply_is_never_cached(mode: str) -> None:
    with settings.context(cache=True):
        cache = get_cache(settings.current().cache_dir)
        before = len(cache)
        with (
            lmprog.context(lm=ScriptedLM([cut("1"), cut("12")], cache=True)),
            pytest.raises(TruncatedOutputError),
        ):
            call(count, acount, mode, "a b c d e f g h i j k l")
        assert len(cache) == before  # nothing written
        first = ScriptedLM([cut("1"), "12"], cache=True)
        with lmprog.context(lm=first):
            assert call(count, acount, mode, "a b c d e f g h i j k l") == 12
        assert len(cache) == before + 1  # only the complete reply, under its larger budget
        # a later run asks again (the cut reply was not stored) and reads the complete one
        again = ScriptedLM([cut("1")], cache=True)
        with lmprog.context(lm=again):
            assert call(count, acount, mode, "a b c d e f g h i j k l") == 12
        assert len(again.calls) == 1 and again.usage.cache_hits == 1


def test_max_retries_zero_reports_a_cut_reply_at_once() -> None:
    fn = lm_function(max_retries=0)(count.fn)
    lm = ScriptedLM([cut("1"), "12"])
    with lmprog.context(lm=lm), pytest.raises(TruncatedOutputError) as info:
        fn("a b c")
    assert info.value.attempts == 1 and info.value.max_tokens == SHORT_OUTPUT_TOKENS and len(lm.calls) == 1


def test_the_larger_budget_is_capped() -> None:
    near = lm_function(max_tokens=3000)(summarize.fn)
    lm = ScriptedLM([cut("A long"), "A long text."])
    with lmprog.context(lm=lm):
        assert near("...") == "A long text."
    assert [c.params["max_tokens"] for c in lm.calls] == [3000, MAX_RETRY_TOKENS]
    at_cap = lm_function(max_tokens=MAX_RETRY_TOKENS)(summarize.fn)
    lm = ScriptedLM([cut("A long"), "never asked"])
    with lmprog.context(lm=lm), pytest.raises(TruncatedOutputError) as info:
        at_cap("...")  # no larger budget to try: reported at once
    assert info.value.max_tokens == MAX_RETRY_TOKENS and len(lm.calls) == 1


def test_the_budget_doubled_is_the_one_sent_the_lms_default_or_the_settings() -> None:
    lm = ScriptedLM([cut("A"), "A text."], max_tokens=100)
    with lmprog.context(lm=lm):
        assert summarize("...") == "A text."
    assert [c.params["max_tokens"] for c in lm.calls] == [100, 200]
    lm = ScriptedLM([cut("A"), "A text."])
    with lmprog.context(lm=lm, max_tokens=300):
        assert summarize("...") == "A text."
    assert [c.params["max_tokens"] for c in lm.calls] == [300, 600]


def test_a_cut_reply_after_a_validation_retry_is_still_reported_as_cut() -> None:
    lm = ScriptedLM(["many", cut("1"), cut("12")])
    with lmprog.context(lm=lm), pytest.raises(TruncatedOutputError) as info:
        count("a b c")
    assert info.value.attempts == 3 and len(lm.calls) == 3


# -- empty replies -------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_an_empty_reply_is_a_failed_request_not_the_answer(mode: str) -> None:
    lm = ScriptedLM(["", "  \n", "A short summary."])
    with lmprog.context(lm=lm):
        assert call(summarize, asummarize, mode, "some text") == "A short summary."
    assert len(lm.calls) == 3
    assert lm.usage.requests == 3 and lm.usage.failed_requests == 2 and lm.usage.calls == 1


@pytest.mark.parametrize("mode", MODES)
def test_empty_replies_only_end_in_a_transient_error_naming_the_model(mode: str) -> None:
    lm = ScriptedLM(["", "", "never asked"], num_retries=1)
    with (
        lmprog.context(lm=lm),
        pytest.raises(TransientLMError, match="scripted: the model returned an empty"),
    ):
        call(summarize, asummarize, mode, "some text")
    assert len(lm.calls) == 2
    assert lm.usage == Usage(requests=2, failed_requests=2, prompt_tokens=lm.usage.prompt_tokens)


def test_an_empty_reply_cut_at_max_tokens_is_a_cut_reply() -> None:
    lm = ScriptedLM([cut(""), "A short summary."])  # e.g. a reasoning model that spent the budget
    with lmprog.context(lm=lm):
        assert summarize("some text") == "A short summary."
    assert [c.params["max_tokens"] for c in lm.calls] == [512, 1024]
    assert lm.usage.failed_requests == 0


def test_scripted_completions_keep_their_finish_reason_and_logprobs() -> None:
    tokens = [{"token": "4", "logprob": -0.1, "top_logprobs": []}]
    lm = ScriptedLM([Completion("4", finish_reason="stop", logprobs=tokens), cut("fo")])
    first = lm.complete([{"role": "user", "content": "2 + 2?"}])
    assert (first.text, first.finish_reason, first.logprobs) == ("4", "stop", tokens)
    second = lm.complete([{"role": "user", "content": "2 + 2?"}])
    assert (second.text, second.finish_reason, second.usage.completion_tokens) == ("fo", "length", 1)


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@pytest.mark.parametrize(
    ("annotation", "capped"),
    [
        (int, True),
        (float, True),
        (bool, True),
        (Literal["a", "b"], True),
        (Color, True),
        (Annotated[int, annotated_types.Gt(0)], True),  # a constraint keeps its type's cap
        (str, False),
        (int | None, False),
        (list[int], False),
    ],
)
def test_one_short_output_caps_the_completion(annotation: Any, capped: bool) -> None:
    def fn(text: str) -> Any:
        """Answer about the text."""

    fn.__annotations__["return"] = annotation
    wrapped = lm_function(fn)
    assert wrapped.max_tokens == (SHORT_OUTPUT_TOKENS if capped else None)


def test_a_tuple_of_numbers_or_an_explicit_cap_is_not_capped_short() -> None:
    @lm_function
    def pair(text: str) -> tuple[int, int]:
        """Two counts."""

    @lm_function(max_tokens=7)
    def bounded(text: str) -> int:
        """A count."""

    assert pair.max_tokens is None and bounded.max_tokens == 7
