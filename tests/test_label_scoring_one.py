"""Scoring every option with one request on an LM with a grammar, and when more follow (options
sharing a first word; a reply that cannot tell them apart: a walk of the options' token tree)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import pytest
from label_functions import make

import lmprog
from lmprog.cache import CACHE_FILENAME
from lmprog.format import (
    LabelOption,
    choice_grammar,
    choice_texts,
    first_token_scores,
    first_words_differ,
)
from lmprog.function import score_requests
from lmprog.function._score import ScoreRun
from lmprog.lm import Completion
from lmprog.optimize.variants_budget import estimate
from lmprog.testing import ScriptedLM
from lmprog.trace import trace


def intent(query: str) -> Literal["card_arrival", "card_linking", "refund"]:
    """Name the intent."""


def topic(question: str) -> Literal["human", "humor", "place"]:
    """Name the topic."""


def sentiment(review: str) -> Literal["positive", "negative"]:
    """Classify the review."""


def species(length: float) -> Literal["setosa", "versicolor", "virginica"]:
    """Name the species."""


def reply(token: str, logprob: float, *alternatives: tuple[str, float]) -> Completion:
    """A one-token reply with its top alternatives, as llama.cpp returns it."""
    top = [{"token": t, "logprob": lp} for t, lp in alternatives]
    return Completion(token, logprobs=[{"token": token, "logprob": logprob, "top_logprobs": top}])


def spelled(*tokens: tuple[str, float]) -> Completion:
    """A forced option's reply: the tokens that spell it."""
    return Completion(
        "".join(t for t, _ in tokens),
        logprobs=[{"token": t, "logprob": lp, "top_logprobs": []} for t, lp in tokens],
    )


OPTIONS = [LabelOption("y", "yes"), LabelOption("n", "no"), LabelOption("m", "maybe")]


def test_choice_grammar_round_trips_hostile_texts() -> None:
    texts = ('say "hi"', "a | b", "back\\slash", " lead")
    assert choice_texts(choice_grammar(texts)) == texts
    assert choice_texts(choice_grammar(["one"])) == ("one",)
    assert choice_texts('root ::= "a" | b\n') is None
    assert choice_texts('root ::= ("a" | "b")\n') is None


def test_first_words_differ_only_when_no_two_texts_begin_with_the_same_word() -> None:
    assert first_words_differ(["positive", "negative"])
    assert first_words_differ([" human", " humor", " place"])  # the reply decides these
    assert not first_words_differ(["card_arrival", "card_linking", "refund"])
    assert not first_words_differ(["no", "no way"])
    assert not first_words_differ(["42", "4 or 5"])  # digits are words of one digit
    assert not first_words_differ(["", "x"])


def test_strict_first_token_scores_read_each_options_own_tokens() -> None:
    logprobs = reply("no", -1.0, ("no", -1.0), ("Yes", -0.5), ("m", -3.0), ("maybe", -6.0), ("yes", -2.0))
    scores = first_token_scores(logprobs.logprobs or [], OPTIONS, lead="")
    assert scores == {"yes": -2.0, "no": -1.0, "maybe": -3.0}  # "Yes" is not "yes"; "m" beats "maybe"


def test_strict_first_token_scores_skip_the_lead_every_option_begins_with() -> None:
    logprobs = reply(" ", -0.5, (" ", -0.5), (" no", -2.0), (" yes", -1.0), (" maybe", -4.0))
    scores = first_token_scores(logprobs.logprobs or [], OPTIONS, lead=" ")
    assert scores == {"yes": -1.0, "no": -2.0, "maybe": -4.0}


def test_strict_first_token_scores_refuse_a_missing_option() -> None:
    logprobs = reply("no", -1.0, ("yes", -2.0))
    with pytest.raises(ValueError, match="no first token of 'maybe' among the 2 alternatives"):
        first_token_scores(logprobs.logprobs or [], OPTIONS, lead="")


def test_strict_first_token_scores_refuse_a_shared_token_likelier_than_an_options_own() -> None:
    options = [LabelOption(1, "human"), LabelOption(2, "humor"), LabelOption(3, "place")]
    logprobs = reply("hum", -0.5, ("human", -3.0), ("humor", -4.0), ("place", -2.0))
    with pytest.raises(ValueError, match="likeliest first token of 'human', 'humor' begins another"):
        first_token_scores(logprobs.logprobs or [], options, lead="")
    clear = reply("human", -0.5, ("humor", -4.0), ("hum", -5.0), ("place", -2.0))
    assert first_token_scores(clear.logprobs or [], options, lead="") == {
        "human": -0.5,
        "humor": -4.0,
        "place": -2.0,
    }


def test_options_sharing_a_first_word_are_scored_by_a_walk_of_their_token_tree() -> None:
    fn = make(intent, decode="score")
    lm = ScriptedLM([], constraint="grammar", logprobs=lambda m, text: -len(text) / 4)
    with lmprog.context(lm=lm), trace() as t:
        assert fn("where is my card?") == "refund"
    # this model's tokens are whole options: one request tells them apart (was one per option)
    assert [choice_texts(c.params["grammar"]) for c in lm.calls] == [
        ("card_arrival", "card_linking", "refund")
    ]
    assert t.spans[0].requests == 1 and score_requests(fn, lm) == 2
    assert t.spans[0].scores == {"card_arrival": -3.0, "card_linking": -3.0, "refund": -1.5}


@pytest.mark.parametrize(
    ("first", "then", "human"),
    [
        # "place" is missing: the walk reads this reply ("human" is one option's token) and
        # asks for "place" alone
        (reply("human", -3.0, ("humor", -0.7), ("human", -3.0)), [spelled(("place", -4.0))], -3.0),
        # "hum" begins two options: the walk starts over with a reply long enough to pass it
        (
            reply("hum", -0.2, ("hum", -0.2), ("human", -3.5), ("humor", -2.5), ("place", -4.0)),
            [
                Completion(
                    "humor",
                    logprobs=[
                        {
                            "token": "hum",
                            "logprob": -0.2,
                            "top_logprobs": [{"token": "place", "logprob": -4.0}],
                        },
                        {
                            "token": "or",
                            "logprob": -0.5,
                            "top_logprobs": [
                                {"token": "an", "logprob": -3.0},
                                {"token": "or", "logprob": -0.5},
                            ],
                        },
                    ],
                )
            ],
            -3.2,  # "hum" then "an", likelier than "human" (-3.5)
        ),
    ],
    ids=["missing-option", "shared-first-token"],
)
def test_a_reply_that_cannot_tell_the_options_apart_is_followed_by_a_walk_of_the_token_tree(
    first: Completion, then: list[Completion], human: float
) -> None:
    lm = ScriptedLM([first, *then], constraint="grammar", logprobs=True)
    fn = make(topic, decode="score")
    with lmprog.context(lm=lm), trace() as t:
        assert fn("who wrote Hamlet?") == "humor"
    assert choice_texts(lm.calls[0].params["grammar"]) == ("human", "humor", "place")
    assert lm.calls[0].params["max_tokens"] == 1
    assert t.spans[0].requests == 2  # was 1 + 3, one per option
    assert t.spans[0].scores == pytest.approx({"human": human, "humor": -0.7, "place": -4.0})


def test_the_fallback_says_why() -> None:
    first = reply("human", -1.0, ("humor", -2.0))
    lm = ScriptedLM([first, spelled(("place", -3.0))], constraint="grammar", logprobs=True)
    with lmprog.context(lm=lm):
        run = ScoreRun(make(topic, decode="score"), {"question": "x"})
        run.complete()
    assert run.fallback is not None and "'place'" in run.fallback
    assert run.result() == "human"


def test_score_requests_counts_what_one_scored_call_sends() -> None:
    grammar = ScriptedLM([], constraint="grammar", logprobs=True)
    hosted = ScriptedLM([], logprobs=True)
    sampling = ScriptedLM([], constraint="grammar")
    assert score_requests(make(sentiment), grammar) == 1
    # human/humor share "h": a reply whose "hum" is likelier than "human" is walked further, 1 + 1
    assert score_requests(make(topic), grammar) == 2
    assert score_requests(make(species), grammar) == 2  # regression: counted 1, sent 4 on Iris
    assert score_requests(make(intent), grammar) == 2  # the walk: 1 + the branching of "card_"
    assert score_requests(make(intent), hosted) == 1  # no grammar: always the first token's list
    assert score_requests(make(intent), sampling) == 1  # no logprobs: it samples one reply


def test_the_variants_budget_estimate_counts_the_requests_a_scored_call_sends() -> None:
    task: Any = SimpleNamespace(valset=[{}] * 10)
    one, each = make(sentiment), make(intent)
    with lmprog.context(lm=ScriptedLM([], constraint="grammar", logprobs=True)):
        assert estimate(task, [one], [one], "score") == 10  # was 30: one request per option
        assert estimate(task, [one], [one], "calibrated") == 10 + 3
        assert estimate(task, [each], [each], "score") == 20  # was 30: one request per option
        assert estimate(task, [one, each], [one, each], "calibrated") == 30 + 3 * 3
        shared = make(topic)  # options sharing a first character: the first token, then a walk
        assert estimate(task, [shared], [shared], "score") == 20
        assert estimate(task, [one], [], "sample") == 10


def test_a_one_request_score_is_cached_though_cut_at_its_one_token(tmp_path: Any) -> None:
    # the reply is cut at max_tokens=1 (finish_reason "length"): no answer for a sampled call,
    # but all a scoring call needs; calibrated decoding after score re-reads the same requests
    fn = make(sentiment, decode="score")
    lm = ScriptedLM([], constraint="grammar", logprobs=lambda m, text: -len(text) / 4, cache=True)
    with lmprog.context(lm=lm, cache=True, cache_dir=tmp_path / "cache"), trace() as t:
        assert fn("fine") == fn("fine") == "positive"
    assert len(lm.calls) == 1 and [s.cache_hit for s in t.spans] == [False, True]
    assert lm.calls[0].params["max_tokens"] == 1


def test_a_scoring_reply_keeps_only_the_options_first_tokens_in_the_cache(
    tmp_path: Path,
) -> None:
    noise = [(f"w{i}", -6.0 - i / 100) for i in range(1000)]
    first = reply("human", -1.0, *noise, ("humor", -2.0), ("pl", -2.5), ("hum", -7.0))
    lm = ScriptedLM([first], constraint="grammar", logprobs=True, cache=True)
    fn = make(topic, decode="score")
    with lmprog.context(lm=lm, cache_dir=tmp_path), trace() as t:
        assert fn("who wrote Hamlet?") == "human"
        assert fn("who wrote Hamlet?") == "human"  # from the cache: the same scores
    assert len(lm.calls) == 1
    assert t.spans[0].scores == t.spans[1].scores == {"human": -1.0, "humor": -2.0, "place": -2.5}
    with sqlite3.connect(tmp_path / CACHE_FILENAME) as conn:
        (value,) = [json.loads(row[0]) for row in conn.execute("SELECT value FROM responses")]
    kept = [t["token"] for t in value["logprobs"][0]["top_logprobs"]]
    assert kept == ["humor", "pl", "hum"]  # of 1003 alternatives: the ones that begin an option
