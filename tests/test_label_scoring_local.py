"""One-request label scoring on the embedded model: what llama.cpp returns for the first token
under a grammar, and the same choice as one request per option where the margin is clear."""

from __future__ import annotations

import math
from typing import Any, Literal

import pytest
from local_model import NEEDS_LOCAL

from lmprog import lm_function
from lmprog.format import choice_grammar
from lmprog.function import State, score_requests
from lmprog.function._score import ScoreRun
from lmprog.lm import resolve_lm
from lmprog.trace import trace

pytestmark = [*NEEDS_LOCAL, pytest.mark.usefixtures("local_settings")]


@lm_function
def sentiment(review: str) -> Literal["positive", "negative"]:
    """Classify the sentiment of a movie review."""


@lm_function
def answer(question: str) -> Literal["yes", "no", "maybe"]:
    """Answer the question."""


@lm_function
def intent(query: str) -> Literal["card_arrival", "card_linking", "refund"]:
    """Name the intent of the banking customer's message."""


DEMOS = (
    {"review": "A wonderful, moving film.", "output": "positive"},
    {"review": "Dull and far too long.", "output": "negative"},
)
ANSWERS = (
    {"question": "Is water wet?", "output": "yes"},
    {"question": "Is the sun cold?", "output": "no"},
    {"question": "Will it rain next year in Paris on May 3?", "output": "maybe"},
)
CLEAR = 1.0  # nats between the two best per-option scores for a case to count as clear


def _scores(func: Any, inputs: dict[str, Any], state: State, one: bool) -> tuple[dict[str, float], int]:
    run = ScoreRun(func, inputs, state=state, one_request=one)
    sent = run.complete()
    assert run.fallback is None
    return run.scores, sent


def test_the_first_tokens_alternatives_ignore_the_grammar() -> None:
    """The fact the one-request scorer is built on (see lmprog.format._labels)."""
    lm = resolve_lm("local")
    messages = [{"role": "user", "content": "Is the sky blue? Answer yes or no."}]
    grammar = choice_grammar(["yes", "no", "maybe"])
    out = lm.complete(
        messages, temperature=0.0, max_tokens=1, logprobs=True, top_logprobs=50, grammar=grammar
    )
    assert out.logprobs is not None
    first = out.logprobs[0]
    top = {t["token"]: t["logprob"] for t in first["top_logprobs"]}
    assert len(top) == 50  # the whole vocabulary's best, not only the allowed tokens
    assert any(not any(o.startswith(t) for o in ("yes", "no", "maybe")) for t in top if t)
    assert out.text in ("yes", "no", "y", "n", "m", "ye", "may", "ma")  # the generated token obeys
    assert first["logprob"] == top.get(first["token"], first["logprob"])  # its unmasked logprob
    assert sum(math.exp(lp) for lp in top.values()) < 1.0  # logprobs, not renormalised


@pytest.mark.parametrize(
    ("func", "inputs", "state"),
    [
        (sentiment, {"review": "I hated every minute of it."}, State(demos=DEMOS)),
        (sentiment, {"review": "An absolute delight, I loved it."}, State(demos=DEMOS)),
        (sentiment, {"review": "I hated every minute of it."}, State(demos=DEMOS, layout="completion")),
        (
            sentiment,
            {"review": "Brilliant acting and a great story."},
            State(demos=DEMOS, layout="transcript"),
        ),
        (answer, {"question": "Is the sky blue?"}, State(demos=ANSWERS)),
        (answer, {"question": "Do fish swim?"}, State(demos=ANSWERS)),
        (answer, {"question": "Is the sky blue?"}, State(demos=ANSWERS, layout="completion")),
    ],
)
def test_one_request_chooses_as_one_request_per_option_does(
    func: Any, inputs: dict[str, Any], state: State
) -> None:
    per_option, sent_each = _scores(func, inputs, state, one=False)
    one, sent_one = _scores(func, inputs, state, one=True)
    ranked = sorted(per_option.values(), reverse=True)
    assert ranked[0] - ranked[1] > CLEAR, f"not a clear case: {per_option}"
    assert max(one, key=lambda k: one[k]) == max(per_option, key=lambda k: per_option[k])
    assert (sent_one, sent_each) == (1, len(per_option))


def test_a_scored_call_sends_one_request_and_shared_first_words_a_walk() -> None:
    sentiment.state = State(demos=DEMOS, decode="score")
    with trace() as t:
        assert sentiment("I hated every minute of it.") in ("positive", "negative")
    assert t.spans[0].requests == 1 and score_requests(sentiment, resolve_lm("local")) == 1
    intent.state = State(decode="score")
    with trace() as t:
        assert intent("My new card has not come yet.") in ("card_arrival", "card_linking", "refund")
    assert t.spans[0].requests <= score_requests(intent, resolve_lm("local")) == 2  # was 3


@lm_function
def species(
    sepal_length: float, sepal_width: float, petal_length: float, petal_width: float
) -> Literal["setosa", "versicolor", "virginica"]:
    """Name the iris species from the flower's measurements (in centimeters)."""


@lm_function
def banking(
    query: str,
) -> Literal["card_arrival", "card_linking", "exchange_rate", "exchange_via_app", "refund"]:
    """Name the intent of the banking customer's message."""


def _flower(sl: float, sw: float, pl: float, pw: float, output: str | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"sepal_length": sl, "sepal_width": sw, "petal_length": pl, "petal_width": pw}
    return row if output is None else {**row, "output": output}


QUERIES = (
    {"query": "My card still has not been delivered.", "output": "card_arrival"},
    {"query": "How do I link my card to the app?", "output": "card_linking"},
    {"query": "What rate do you use to convert euros to dollars?", "output": "exchange_rate"},
    {"query": "Can I exchange currency in the app?", "output": "exchange_via_app"},
    {"query": "I want my money back for this purchase.", "output": "refund"},
)


@pytest.mark.parametrize(
    ("func", "inputs", "demos"),
    [
        # zero-shot, the first token's "v" (versicolor and virginica) blurs the one-request reading
        (species, _flower(5.1, 3.5, 1.4, 0.3), ()),
        (species, _flower(6.3, 3.3, 6.0, 2.5), ()),
        (banking, {"query": "When will my new card arrive?"}, QUERIES),
        (banking, {"query": "Where can I link my new card?"}, QUERIES),
        (banking, {"query": "Please refund my order."}, QUERIES),
    ],
)
def test_the_token_tree_walk_chooses_as_one_request_per_option_does_in_fewer_requests(
    func: Any, inputs: dict[str, Any], demos: tuple[dict[str, Any], ...]
) -> None:
    state = State(demos=demos)
    run = ScoreRun(func, inputs, state=state, one_request=False)
    sent_each = run.complete()
    per_option = run.scores
    walk = ScoreRun(func, inputs, state=state)
    sent = walk.complete()
    ranked = sorted(per_option.values(), reverse=True)
    assert ranked[0] - ranked[1] > CLEAR, f"not a clear case: {per_option}"
    assert max(walk.scores, key=lambda k: walk.scores[k]) == max(per_option, key=lambda k: per_option[k])
    assert sent < sent_each == len(per_option)
    assert sent <= score_requests(func, walk.lm)
