"""Scoring options that share their first token or word on an LM with a grammar: a walk of the
options' token tree (``lmprog.format._trie``) instead of one request per option."""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from label_functions import make

import lmprog
from lmprog.errors import LMError
from lmprog.format import (
    GRAMMAR_TOP_LOGPROBS,
    branchings,
    choice_grammar,
    choice_texts,
    forced_text,
    nested_pair,
    next_groups,
    owners_of,
    walk_reply,
)
from lmprog.function import LMFunction, score_requests
from lmprog.function._score import SCORE_MAX_TOKENS, ScoreRun
from lmprog.lm import BaseLM, Completion, Messages
from lmprog.testing import ScriptedLM
from lmprog.trace import trace

Position = tuple[str, float, dict[str, float]]


def intent(
    query: str,
) -> Literal["card_arrival", "card_linking", "cash_withdrawal", "exchange_rate", "exchange_via_app"]:
    """Name the intent."""


def small(query: str) -> Literal["card_arrival", "card_linking", "refund"]:
    """Name the intent."""


def species(length: float) -> Literal["setosa", "versicolor", "virginica"]:
    """Name the species."""


def nested(query: str) -> Literal["card", "card_linking", "cash"]:
    """Name the intent."""


def triple(query: str) -> Literal["a_x", "a_y", "a_z"]:
    """Name it."""


def reply(*positions: Position) -> Completion:
    """A reply as llama.cpp returns it: each generated token, its logprob and its top
    alternatives (the generated token among them, as llama.cpp lists it)."""
    logprobs = [
        {"token": t, "logprob": lp, "top_logprobs": [{"token": a, "logprob": alp} for a, alp in top.items()]}
        for t, lp, top in positions
    ]
    return Completion("".join(t for t, _, _ in positions), logprobs=logprobs)


def scored(fn: LMFunction, lm: BaseLM, **inputs: Any) -> ScoreRun:
    """A scoring call of ``fn`` on ``lm``, its requests sent one after the other."""
    with lmprog.context(lm=lm):
        scoring = ScoreRun(fn, inputs or {fn.signature.input_names[0]: "where is my card?"})
        scoring.complete()
    return scoring


# the first request of the five intents: card_arrival generated; cash_withdrawal scored at the
# root, card_linking at "card_", the two exchange_* left behind their shared token "exchange"
FIRST = reply(
    ("card", -0.5, {"card": -0.5, "exchange": -1.5, "cash": -2.0, "c": -3.0, "ex": -4.0, "cat": -0.1}),
    ("_", -0.1, {"_": -0.1, "s": -1.0}),
    ("arr", -0.3, {"arr": -0.3, "link": -1.2, "a": -2.5}),
    ("ival", -0.01, {"ival": -0.01}),
    ("", -0.5, {}),
)
EXCHANGE = reply(
    ("exchange", -1.5, {"card": -0.5, "exchange": -1.5, "cash": -2.0}),
    ("_", -0.2, {"_": -0.2}),
    ("rate", -0.4, {"rate": -0.4, "via": -2.5, "r": -1.0}),
    ("", -0.3, {}),
)


def test_options_sharing_first_words_are_scored_by_a_walk_of_their_token_tree() -> None:
    fn = make(intent, decode="score")
    lm = ScriptedLM([FIRST, EXCHANGE], constraint="grammar", logprobs=True)
    with lmprog.context(lm=lm), trace() as t:
        assert fn("where is my card?") == "card_arrival"
    [span] = t.spans
    assert span.requests == 2 < 5  # was one per option
    assert choice_texts(lm.calls[0].params["grammar"]) == (
        "card_arrival",
        "card_linking",
        "cash_withdrawal",
        "exchange_rate",
        "exchange_via_app",
    )
    assert choice_texts(lm.calls[1].params["grammar"]) == ("exchange_rate", "exchange_via_app")
    for call in lm.calls:
        assert call.params["max_tokens"] == SCORE_MAX_TOKENS
        assert call.params["top_logprobs"] == GRAMMAR_TOP_LOGPROBS
        assert call.params["logprobs"] is True and call.params["temperature"] == 0.0
        assert "alternatives_for" not in call.params  # never sent: the LM cuts the reply with it
    # each score: the logprob of the path up to the token that tells the option apart
    assert span.scores == pytest.approx(
        {
            "card_arrival": -0.5 - 0.1 - 0.3,
            "card_linking": -0.5 - 0.1 - 1.2,
            "cash_withdrawal": -2.0,
            "exchange_rate": -1.5 - 0.2 - 0.4,
            "exchange_via_app": -1.5 - 0.2 - 2.5,
        }
    )


def test_the_walk_reads_the_options_with_the_layouts_lead() -> None:
    fn = make(small, decode="score", layout="completion")
    lm = ScriptedLM([], constraint="grammar", logprobs=lambda m, text: -len(text) / 4, takes_prompt=True)
    with lmprog.context(lm=lm), trace() as t:
        assert fn("where is my card?") == "refund"
    [call] = lm.calls  # this model's tokens are whole options: one reply tells them apart
    assert choice_texts(call.params["grammar"]) == (" card_arrival", " card_linking", " refund")
    assert call.params["max_tokens"] == SCORE_MAX_TOKENS
    assert t.spans[0].scores == {"card_arrival": -13 / 4, "card_linking": -13 / 4, "refund": -7 / 4}


def test_the_fallback_names_the_shared_token_the_first_reply_did_not_follow() -> None:
    scoring = scored(
        make(intent, decode="score"), ScriptedLM([FIRST, EXCHANGE], constraint="grammar", logprobs=True)
    )
    assert scoring.fallback == (
        "'exchange_rate', 'exchange_via_app' share 'exchange', a token the reply did not follow"
    )


def test_a_shared_first_word_told_apart_in_the_first_reply_takes_one_request() -> None:
    first = reply(
        ("card", -0.5, {"card": -0.5, "ref": -2.0, "re": -2.5}),
        ("_", -0.1, {"_": -0.1}),
        ("link", -0.3, {"link": -0.3, "arr": -0.9}),
        ("ing", -0.01, {}),
    )
    lm = ScriptedLM([first], constraint="grammar", logprobs=True)
    scoring = scored(make(small, decode="score"), lm)
    assert len(lm.calls) == 1 and scoring.fallback is None
    assert scoring.scores == pytest.approx({"card_arrival": -1.5, "card_linking": -0.9, "refund": -2.0})
    assert scoring.result() == "card_linking"


def test_an_option_missing_from_the_alternatives_gets_a_request_of_its_own() -> None:
    first = reply(
        ("card", -0.5, {"card": -0.5, "cat": -0.2}),  # no token of "refund" among them
        ("_", -0.1, {"_": -0.1}),
        ("arr", -0.3, {"arr": -0.3, "link": -1.2}),
        ("ival", -0.01, {}),
    )
    refund = reply(("ref", -4.0, {"card": -0.5, "ref": -4.0}), ("und", -0.1, {}))
    lm = ScriptedLM([first, refund], constraint="grammar", logprobs=True)
    scoring = scored(make(small, decode="score"), lm)
    assert choice_texts(lm.calls[1].params["grammar"]) == ("refund",)
    assert scoring.scores == pytest.approx({"card_arrival": -0.9, "card_linking": -1.8, "refund": -4.0})
    assert scoring.fallback == "no token of 'refund' among the alternatives"


def test_each_request_scores_a_new_option_so_there_are_never_more_than_the_options() -> None:
    # the worst case: no alternatives at all, each reply scores only the option it spells
    replies = [reply(("a", -0.1, {}), ("_", -0.1, {}), (x, -0.5, {}), ("", -0.1, {})) for x in "xyz"]
    lm = ScriptedLM(replies, constraint="grammar", logprobs=True)
    scoring = scored(make(triple, decode="score"), lm)
    assert len(lm.calls) == 3 == len(scoring.scores)
    assert [choice_texts(c.params["grammar"]) for c in lm.calls] == [
        ("a_x", "a_y", "a_z"),
        ("a_y", "a_z"),
        ("a_z",),
    ]


def test_a_reply_that_scores_no_new_option_stops_the_walk() -> None:
    again = reply(("a", -0.1, {}), ("_", -0.1, {}), ("x", -0.5, {}))
    lm = ScriptedLM([again, again], constraint="grammar", logprobs=True)
    with lmprog.context(lm=lm), pytest.raises(LMError, match="scores none of 'a_y', 'a_z' anew"):
        make(triple, decode="score")("q")
    assert len(lm.calls) == 2


def test_options_of_which_one_begins_another_are_forced_one_request_each() -> None:
    fn = make(nested, decode="score")
    lm = ScriptedLM([], constraint="grammar", logprobs=lambda m, text: -len(text) / 4)
    with lmprog.context(lm=lm), trace() as t:
        assert fn("x") == "card"
    assert [forced_text(c.params["grammar"]) for c in lm.calls] == ["card", "card_linking", "cash"]
    assert t.spans[0].requests == 3 == score_requests(fn, lm)
    with lmprog.context(lm=lm):
        assert (
            ScoreRun(fn, {"query": "x"}).fallback == "'card' begins 'card_linking': no token tells them apart"
        )
        assert ScoreRun(fn, {"query": "x"}, one_request=False).fallback is None


def test_one_request_false_still_sends_one_forced_request_per_option() -> None:
    lm = ScriptedLM([], constraint="grammar", logprobs=lambda m, text: -len(text) / 4)
    with lmprog.context(lm=lm):
        scoring = ScoreRun(make(intent, decode="score"), {"query": "x"}, one_request=False)
        scoring.complete()
    assert [forced_text(c.params["grammar"]) for c in lm.calls] == list(scoring.scores)
    assert len(lm.calls) == 5 and scoring.scores["cash_withdrawal"] == -15 / 4


# Iris: the first words differ, so one request of one token comes first, as before


def test_distinct_first_tokens_still_take_one_one_token_request_with_the_same_scores() -> None:
    gate = reply(("set", -1.0, {"set": -1.0, "vers": -2.0, "vir": -3.0, "v": -4.0}))
    lm = ScriptedLM([gate], constraint="grammar", logprobs=True)
    scoring = scored(make(species, decode="score"), lm, length=1.0)
    assert len(lm.calls) == 1 and lm.calls[0].params["max_tokens"] == 1
    assert lm.calls[0].params["grammar"] == choice_grammar(["setosa", "versicolor", "virginica"])
    assert scoring.scores == {"setosa": -1.0, "versicolor": -2.0, "virginica": -3.0}
    assert scoring.fallback is None


def test_a_blurred_first_token_is_walked_from_the_same_reply_when_its_token_is_one_options() -> None:
    # "v" begins two options and is likelier than "vir": the first-token reading refuses it, the
    # walk reads each option's own token; the reply's "set" is setosa's alone, so a longer
    # reply would have stopped there too: no request more (was 1 + 3)
    gate = reply(("set", -1.0, {"set": -1.0, "vers": -2.0, "v": -2.5, "vir": -3.0}))
    lm = ScriptedLM([gate], constraint="grammar", logprobs=True)
    scoring = scored(make(species, decode="score"), lm, length=1.0)
    assert len(lm.calls) == 1
    assert scoring.scores == {"setosa": -1.0, "versicolor": -2.0, "virginica": -3.0}


def test_a_first_token_shared_by_options_restarts_the_walk_with_a_longer_request() -> None:
    gate = reply(("v", -0.5, {"set": -1.0, "v": -0.5, "vers": -2.0, "vir": -3.0}))
    walk = reply(
        ("v", -0.5, {"set": -1.0, "v": -0.5, "vers": -2.0, "vir": -3.0}),
        ("ers", -0.2, {"ers": -0.2, "irg": -1.5, "ir": -1.6}),
        ("icolor", -0.1, {}),
    )
    lm = ScriptedLM([gate, walk], constraint="grammar", logprobs=True)
    scoring = scored(make(species, decode="score"), lm, length=1.0)
    assert [c.params["max_tokens"] for c in lm.calls] == [1, SCORE_MAX_TOKENS]
    assert choice_texts(lm.calls[1].params["grammar"]) == ("setosa", "versicolor", "virginica")
    assert scoring.scores == pytest.approx({"setosa": -1.0, "versicolor": -0.7, "virginica": -2.0})
    assert (
        scoring.fallback == "the likeliest first token of 'versicolor', 'virginica' begins another option too"
    )
    assert scoring.result() == "versicolor"


def test_score_requests_counts_the_walk() -> None:
    grammar = ScriptedLM([], constraint="grammar", logprobs=True)
    assert score_requests(make(species), grammar) == 2  # "v" branches: the first token, then a walk
    assert score_requests(make(small), grammar) == 2  # "card_" branches
    assert score_requests(make(intent), grammar) == 4  # "ca", "card_" and "exchange_"
    assert score_requests(make(nested), grammar) == 3  # one per option
    assert score_requests(make(triple), grammar) == 2


def test_the_walk_reads_each_alternative_against_the_text_generated_before_it() -> None:
    texts = ["card_arrival", "card_linking", "cash_withdrawal", "exchange_rate", "exchange_via_app"]
    walk = walk_reply(FIRST.logprobs or [], texts)
    assert walk.candidates == pytest.approx({0: -0.9, 1: -1.8, 2: -2.0})
    assert [(b.prefix, b.owners) for b in walk.branches] == [
        ("exchange", (3, 4)),
        ("c", (0, 1, 2)),
        ("ex", (3, 4)),
    ]
    assert walk.path == "card_arr"  # the walk stops at the token that tells card_arrival apart
    assert next_groups(walk, {0, 1, 2}, [], 5) == [(3, 4)]
    assert next_groups(walk, {0, 1, 2}, [(4,)], 5) == [(3,)]  # an option goes into one group


def test_branchings_and_nested_pairs() -> None:
    assert branchings(["setosa", "versicolor", "virginica"]) == 1  # "v"
    assert branchings(["positive", "negative"]) == 0
    assert (
        branchings(["card_arrival", "card_linking", "card_payment_fee", "card_payment_rate", "top_up"]) == 2
    )
    assert branchings([" card_arrival", " card_linking"]) == 1  # " " leads to one point only
    assert nested_pair(["card", "card_linking"]) == ("card", "card_linking")
    assert nested_pair(["card_linking", "card"]) == ("card", "card_linking")
    assert nested_pair(["human", "humor"]) is None


# A simulated llama.cpp: tokens are the prefixes of the options' pieces, logprobs come from a
# hash; the generated token is the likeliest the grammar allows, the alternatives the likeliest
# few of the whole vocabulary (so the options' tokens may be missing from them).


def _logprob(spelled: str, token: str) -> float:
    digest = hashlib.sha256(f"{spelled}|{token}".encode()).digest()
    return -8.0 * digest[0] / 255


class TokenModel(BaseLM):
    """Greedy under a choice grammar, ``top`` alternatives a position."""

    def __init__(self, vocab: list[str], top: int) -> None:
        super().__init__("token-model", cache=False)
        self.vocab, self.top = vocab, top
        self.replies: list[tuple[int, str]] = []  # max_tokens and the text of each reply

    def constraint_kind(self) -> Literal["grammar"]:
        return "grammar"

    def returns_logprobs(self) -> bool:
        return True

    def _request(self, messages: Messages, params: dict[str, Any]) -> Completion:
        texts = choice_texts(params["grammar"])
        assert texts is not None
        spelled, positions = "", []
        while spelled not in texts and len(positions) < params["max_tokens"]:
            allowed = [t for t in self.vocab if any(x.startswith(spelled + t) for x in texts)]
            token = max(allowed, key=lambda t: _logprob(spelled, t))
            ranked = sorted(self.vocab, key=lambda t: -_logprob(spelled, t))[: self.top]
            top = [{"token": t, "logprob": _logprob(spelled, t)} for t in ranked]
            positions.append({"token": token, "logprob": _logprob(spelled, token), "top_logprobs": top})
            spelled += token
        self.replies.append((params["max_tokens"], spelled))
        return Completion(spelled, logprobs=positions, finish_reason="stop")


PIECES = [
    "card",
    "cash",
    "c",
    "_",
    "arr",
    "ar",
    "ival",
    "link",
    "ing",
    "ex",
    "change",
    "exchange",
    "rate",
    "via",
    "app",
]
WORDS = ["card", "cash", "exchange", "arrival", "linking", "rate", "via", "app", "cat"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from(WORDS), min_size=1, max_size=3), min_size=2, max_size=7, unique_by=tuple
    ),
    st.integers(min_value=0, max_value=12) | st.just(1000),
)
def test_the_walk_scores_every_option_in_at_most_one_request_each(words: list[list[str]], top: int) -> None:
    texts = ["_".join(w) for w in words]
    if nested_pair(texts) is not None or len(set(texts)) < len(texts):
        return
    pieces = {p for t in texts for piece in t.split("_") for p in (piece, piece[:2])}
    vocab = sorted(pieces | set(PIECES) | set("".join(texts)))  # every character: any text is spelled
    lm = TokenModel(vocab, top)

    def label(query: str) -> str:
        """Name it."""

    label.__annotations__["return"] = Literal[tuple(texts)]

    scoring = scored(make(label, decode="score"), lm)
    assert set(scoring.scores) == set(texts)
    # one request per option at most, plus the one-token request when its token began several
    max_tokens, first = lm.replies[0]
    wasted = max_tokens == 1 and len(owners_of(texts, first)) > 1
    assert len(lm.replies) <= len(texts) + wasted
    assert all(score <= 0 for score in scoring.scores.values())
    if top >= len(vocab):  # every token among the alternatives: score_requests is a bound
        assert len(lm.replies) <= min(len(texts), 1 + branchings(texts)) == score_requests(make(label), lm)
