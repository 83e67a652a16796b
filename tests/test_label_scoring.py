"""Label scoring and contextual calibration: the math, the requests a scoring call sends, the span."""

from __future__ import annotations

import asyncio
import enum
import logging
import math
from typing import Annotated, Literal

import pytest
from label_functions import make

import lmprog
from lmprog import lm_function
from lmprog.errors import LMError, UsageError
from lmprog.format import (
    GRAMMAR_TOP_LOGPROBS,
    LabelOption,
    best_label,
    calibrated,
    calibration_prior,
    choice_texts,
    first_token_scores,
    forced_grammar,
    forced_text,
    label_options,
    probabilities,
    sequence_logprob,
)
from lmprog.function import State, content_free_scores
from lmprog.lm import Completion, Messages
from lmprog.signature import signature_from_function
from lmprog.testing import ScriptedLM
from lmprog.trace import trace


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


def sentiment(review: str) -> Literal["positive", "negative"]:
    """Classify the review."""


def colour(text: str) -> Colour:
    """Name the colour."""


def is_question(text: str) -> Annotated[bool, "a yes/no label"]:
    """Whether the text is a question."""


def summary(text: str) -> str:
    """Summarize."""


def test_label_options_of_literal_enum_and_bool_and_none_otherwise() -> None:
    assert [o.text for o in label_options(signature_from_function(sentiment)) or ()] == [
        "positive",
        "negative",
    ]
    assert [(o.value, o.text) for o in label_options(signature_from_function(colour)) or ()] == [
        (Colour.RED, "red"),
        (Colour.BLUE, "blue"),
    ]
    assert [(o.value, o.text) for o in label_options(signature_from_function(is_question)) or ()] == [
        (True, "yes"),
        (False, "no"),
    ]
    assert label_options(signature_from_function(summary)) is None


def test_forced_grammar_round_trips_hostile_text() -> None:
    for text in ["billing", ' a"b\\c\nd\t', "x\x01y", "é ü"]:
        assert forced_text(forced_grammar(text)) == text
    assert forced_text('root ::= ("a" | "b")\n') is None


def test_sequence_logprob_sums_the_spelling_tokens_and_ignores_the_end_token() -> None:
    tokens = [
        {"token": " pos", "logprob": -0.5},
        {"token": "itive", "logprob": -0.25},
        {"token": "", "logprob": -3.0},
    ]
    assert sequence_logprob(tokens, " positive") == pytest.approx(-0.75)
    with pytest.raises(ValueError, match="spell ' pos', not ' positive'"):
        sequence_logprob(tokens[:1], " positive")
    with pytest.raises(ValueError, match="not 'negative'"):
        sequence_logprob(tokens, "negative")


def test_first_token_scores_match_token_prefixes_and_floor_the_rest() -> None:
    options = [LabelOption("a", "billing"), LabelOption("b", "bug"), LabelOption("c", "feature")]
    logprobs = [
        {
            "token": "bill",
            "logprob": -0.2,
            "top_logprobs": [{"token": " Bug", "logprob": -1.5}, {"token": "b", "logprob": -2.0}],
        }
    ]
    scores = first_token_scores(logprobs, options)
    assert scores["billing"] == -0.2
    assert scores["bug"] == -1.5  # " Bug" beats "b" (case and spaces do not matter)
    assert scores["feature"] == pytest.approx(-2.0 - math.log(10))


def test_calibration_divides_out_the_content_free_prior() -> None:
    scores = {"positive": math.log(0.7), "negative": math.log(0.3)}
    assert probabilities(scores) == pytest.approx({"positive": 0.7, "negative": 0.3})
    prior = calibration_prior(
        [{"positive": math.log(0.9), "negative": math.log(0.1)}, {"positive": 0.0, "negative": 0.0}]
    )
    assert prior == pytest.approx({"positive": 0.7, "negative": 0.3})  # the mean of 0.9/0.1 and 0.5/0.5
    fixed = calibrated({"positive": math.log(0.6), "negative": math.log(0.4)}, prior)
    assert fixed["negative"] == pytest.approx(math.log(0.4 / 0.3))
    assert fixed["positive"] == pytest.approx(math.log(0.6 / 0.7))
    options = [LabelOption("p", "positive"), LabelOption("n", "negative")]
    assert best_label(fixed, options).text == "negative"
    assert best_label({"positive": 1.0, "negative": 1.0}, options).text == "positive"  # ties: first


BIAS = {"positive": 2.0, "negative": 0.0}


def biased(messages: Messages, text: str) -> float:
    """A model that prefers "positive" by 2 nats, and reads the word "awful" as negative by 1."""
    last = messages[-1]["content"].rsplit("---", 1)[-1]
    label = text.strip()
    return BIAS[label] + (1.0 if label == "negative" and "awful" in last else 0.0) - 5.0


@pytest.mark.parametrize("layout", ["chat", "transcript", "completion"])
def test_score_sends_one_request_for_all_options_and_records_the_scores(layout: str) -> None:
    fn = make(sentiment, decode="score", layout=layout, demos=({"review": "ok", "output": "positive"},))
    lm = ScriptedLM([], constraint="grammar", logprobs=biased, takes_prompt=True)
    with lmprog.context(lm=lm), trace() as t:
        assert fn("awful film") == "positive"  # the bias wins without calibration
    lead = " " if layout == "completion" else ""
    [call] = lm.calls
    assert choice_texts(call.params["grammar"]) == (lead + "positive", lead + "negative")
    assert call.params["max_tokens"] == 1 and call.params["top_logprobs"] == GRAMMAR_TOP_LOGPROBS
    assert call.params["logprobs"] is True and call.params["temperature"] == 0.0
    assert call.messages == fn.messages("awful film")
    [span] = t.spans
    assert span.scores == {"positive": -3.0, "negative": -4.0}
    assert span.raw == "positive" and span.output == "positive" and span.requests == 1


def test_calibrated_decoding_corrects_the_label_bias() -> None:
    lm = ScriptedLM([], constraint="grammar", logprobs=biased)
    scoring = State(decode="score")
    fn = make(sentiment)
    with lmprog.context(lm=lm):
        prior = calibration_prior(content_free_scores(fn, scoring))
        assert prior["positive"] == pytest.approx(1 / (1 + math.exp(-2)), abs=1e-6)
        fn.state = State(decode="calibrated", calibration=prior)
        with trace() as t:
            assert fn("awful film") == "negative"
            assert fn("fine film") == "positive"  # ties after calibration: the first option
    assert t.spans[0].scores is not None and t.spans[0].scores["negative"] > t.spans[0].scores["positive"]
    assert len(lm.calls) == 3 + 2  # three content-free inputs, then two calls, one request each


def test_content_free_inputs_fill_every_input_field() -> None:
    seen: list[str] = []

    def record(messages: Messages, text: str) -> float:
        seen.append(messages[-1]["content"])
        return -1.0

    lm = ScriptedLM([], constraint="grammar", logprobs=record)
    with lmprog.context(lm=lm):
        content_free_scores(make(sentiment), State(decode="score"))
    assert sorted(set(seen)) == sorted({"review: N/A", "review:", "review: [MASK]"})


def test_enum_and_bool_outputs_are_returned_as_their_values() -> None:
    lm = ScriptedLM(
        [], constraint="grammar", logprobs=lambda m, text: {"blue": -0.1, "no": -0.2}.get(text, -2.0)
    )
    with lmprog.context(lm=lm):
        assert make(colour, decode="score")("sky") is Colour.BLUE
        assert make(is_question, decode="score")("hello") is False


def test_an_lm_without_a_grammar_scores_from_the_first_tokens_top_alternatives() -> None:
    reply = Completion(
        "neg",
        logprobs=[
            {"token": "neg", "logprob": -0.3, "top_logprobs": [{"token": "positive", "logprob": -1.2}]}
        ],
    )
    lm = ScriptedLM([reply], logprobs=True)
    with lmprog.context(lm=lm), trace() as t:
        assert make(sentiment, decode="score")("x") == "negative"
    [call] = lm.calls
    assert (
        call.params["max_tokens"] == 1 and call.params["top_logprobs"] == 20 and "grammar" not in call.params
    )
    assert t.spans[0].scores == {"positive": -1.2, "negative": -0.3}


def test_an_lm_without_logprobs_samples_instead_and_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    fn = make(sentiment, decode="score")
    lm = ScriptedLM(["negative", "positive"], model="no-logprobs")
    with lmprog.context(lm=lm), caplog.at_level(logging.WARNING, logger="lmprog.function"):
        assert fn("a") == "negative"
        assert fn("b") == "positive"
    assert all("logprobs" not in c.params for c in lm.calls)
    assert len([r for r in caplog.records if "needs token logprobs" in r.getMessage()]) == 1


def test_a_scoring_reply_without_logprobs_is_a_clear_error() -> None:
    lm = ScriptedLM(["positive"], constraint="grammar", logprobs=True)
    with lmprog.context(lm=lm), pytest.raises(LMError, match="returned no logprobs for a scoring request"):
        make(sentiment, decode="score")("x")


def test_scoring_a_non_categorical_output_or_with_reasoning_is_a_usage_error() -> None:
    lm = ScriptedLM([], constraint="grammar", logprobs=biased)
    with lmprog.context(lm=lm), pytest.raises(UsageError, match="single Literal, Enum or bool output"):
        make(summary, decode="score")("x")
    func = lm_function(reasoning=True)(sentiment)
    func.state = State(decode="score")
    with lmprog.context(lm=lm), pytest.raises(UsageError, match="cannot be combined with reasoning=True"):
        func("x")


def test_an_async_function_scores_too() -> None:
    async def asentiment(review: str) -> Literal["positive", "negative"]:
        """Classify the review."""

    fn = make(asentiment, decode="score")
    lm = ScriptedLM([], constraint="grammar", logprobs=biased)
    with lmprog.context(lm=lm):
        assert asyncio.run(fn("x")) == "positive"
    assert len(lm.calls) == 1
