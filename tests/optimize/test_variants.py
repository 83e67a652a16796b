"""The step after an optimizer that tries prompt layouts and label decodings on validation data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml

import lmprog
from lmprog import Budget, lm_function, optimize, settings
from lmprog.lm import PROMPT_ROLE, Messages
from lmprog.testing import ScriptedLM


@lm_function
def sentiment(review: str) -> Literal["positive", "negative"]:
    """Classify the review."""


TRAIN = [
    {"review": "loved it", "output": "positive"},
    {"review": "awful plot", "output": "negative"},
    {"review": "great cast", "output": "positive"},
    {"review": "awful acting", "output": "negative"},
]
VAL = [
    {"review": "great fun", "output": "positive"},
    {"review": "awful mess", "output": "negative"},
    {"review": "great score", "output": "positive"},
    {"review": "awful ending", "output": "negative"},
]


def metric(example: Any, prediction: Any, trace: Any = None) -> bool:
    return bool(example["output"] == prediction)


@pytest.fixture(autouse=True)
def prompt_dir(tmp_path: Path) -> Iterator[Path]:
    with settings.context(prompt_dir=tmp_path / "prompts", cache=False, load_prompts=False):
        yield tmp_path / "prompts"


def question(messages: Messages) -> str:
    """The review the request asks about (the last one in any layout)."""
    return messages[-1]["content"].rsplit("review:", 1)[-1]


def layout_of(messages: Messages) -> str:
    if messages[0]["role"] == PROMPT_ROLE:
        return "completion"
    return "chat" if len(messages) > 2 else "transcript"


def sampled(messages: Messages) -> str:
    """Sampling: the chat layout always answers "positive" (collapsed), the transcript reads the
    review, the completion layout always answers "negative"."""
    kind = layout_of(messages)
    if kind == "transcript":
        return "negative" if "awful" in question(messages) else "positive"
    return "positive" if kind == "chat" else " negative"


def scored(messages: Messages, text: str) -> float:
    """Scoring: "positive" is 2 nats likelier everywhere; "awful" adds 1 nat to "negative"."""
    label = text.strip()
    bonus = 1.0 if label == "negative" and "awful" in question(messages) else 0.0
    return (2.0 if label == "positive" else 0.0) + bonus - 5.0


def run(lm: ScriptedLM, **kwargs: Any) -> lmprog.OptimizationResult:
    kwargs.setdefault("save", False)
    with lmprog.context(lm=lm):
        return optimize(
            sentiment, TRAIN, metric, valset=VAL, optimizer="labeled", apply=False, progress=False, **kwargs
        )


def test_with_all_every_layout_and_decoding_is_tried_and_the_best_kept() -> None:
    lm = ScriptedLM(sampled, constraint="grammar", logprobs=scored, takes_prompt=True)
    result = run(lm, variants="all")
    tried = {(v["layout"], v["decode"]): v for v in result.details["variants"]}
    assert len(tried) == 9 and not any("skipped" in v for v in tried.values())
    assert tried["chat", "sample"]["score"] == 50.0 and tried["chat", "sample"]["collapsed"]
    assert tried["transcript", "sample"]["score"] == 100.0 and not tried["transcript", "sample"]["collapsed"]
    assert tried["completion", "sample"]["collapsed"]
    assert tried["chat", "score"]["score"] == 50.0 and tried["chat", "score"]["collapsed"]
    assert tried["chat", "calibrated"]["score"] == 100.0
    state = result.states[sentiment]
    assert (state.layout, state.decode) == ("chat", "calibrated")  # the first of the best (100)
    assert result.score == 100.0
    assert result.label_counts == {sentiment.signature.qualname: {"negative": 2, "positive": 2}}
    labels = [c.label for c in result.candidates if c.label.startswith("layout=")]
    assert labels[:4] == [
        "layout=chat decode=score",
        "layout=chat decode=calibrated",
        "layout=transcript decode=sample",
        "layout=completion decode=sample",
    ]


def test_by_default_labels_are_scored_in_the_optimizers_layout_then_in_the_best_other() -> None:
    lm = ScriptedLM(sampled, constraint="grammar", logprobs=scored, takes_prompt=True)
    result = run(lm)
    tried = [(v["layout"], v["decode"], v.get("prior")) for v in result.details["variants"]]
    assert tried == [
        ("chat", "sample", None),  # the optimizer's choice
        ("chat", "score", None),
        ("chat", "calibrated", None),
        ("transcript", "sample", None),
        ("completion", "sample", None),
        ("transcript", "score", None),  # the best other sampled layout, not the collapsed completion
        ("transcript", "calibrated", None),
        # calibrated on the validation inputs' prior: scoring again costs a pass without a
        # response cache, so these come after the planned order
        ("chat", "calibrated", "inputs"),
        ("transcript", "calibrated", "inputs"),
    ]
    assert result.details["variants"][1]["collapsed"]  # the label bias: "positive" for everything
    # regression: calibration, which corrects that bias, comes before retrieved demos (tried
    # first, the rescue took the calls calibration needed on ScoNe); nothing collapses after it
    assert not any(v.get("demos") == "retrieved" for v in result.details["variants"])
    state = result.states[sentiment]
    assert (state.layout, state.decode) == ("chat", "calibrated") and result.score == 100.0


def test_calibration_is_chosen_and_stored_when_it_is_what_works() -> None:
    def chat_only(messages: Messages) -> str:
        return "positive"

    lm = ScriptedLM(chat_only, constraint="grammar", logprobs=scored)
    result = run(lm)
    state = result.states[sentiment]
    assert (state.layout, state.decode) == ("chat", "calibrated") and result.score == 100.0
    assert state.calibration is not None and state.calibration["positive"] > 0.8
    assert {v["layout"] for v in result.details["variants"]} == {"chat", "transcript"}  # no plain text


def test_a_collapsed_variant_never_replaces_one_that_is_not_whatever_its_score() -> None:
    val = [
        *VAL,
        {"review": "great again", "output": "positive"},
        {"review": "great twice", "output": "positive"},
    ]

    def respond(messages: Messages) -> str:
        if layout_of(messages) == "transcript":
            return "positive"  # 4 of 6 right, but one label only
        return "positive" if "great fun" in question(messages) else "negative"  # 3 of 6, both labels

    with lmprog.context(lm=ScriptedLM(respond)):
        result = optimize(
            sentiment, TRAIN, metric, valset=val, optimizer="labeled", save=False, apply=False, progress=False
        )
    [base, transcript] = result.details["variants"]
    assert transcript["score"] > base["score"] and transcript["collapsed"] and not base["collapsed"]
    assert result.states[sentiment].layout == "chat" and result.score == base["score"]


def test_variants_that_do_not_fit_the_budget_left_are_skipped_and_the_cap_holds() -> None:
    lm = ScriptedLM(sampled, constraint="grammar", logprobs=scored, takes_prompt=True)
    result = run(lm, budget=Budget(max_calls=18))
    assert result.usage.requests <= 18
    skipped = [v for v in result.details["variants"] if "skipped" in v]
    assert skipped and all(v["skipped"].startswith("budget: ") for v in skipped)
    # in the order of value, each when it fits what is left: the evaluation 4, chat score 4 (one
    # request scores both options), chat calibrated 7 (no cache: 4 + 3 content-free); sampling
    # in another layout (4) does not fit the 3 left
    variants = result.details["variants"][1:]
    evaluated = [(v["layout"], v["decode"], v["requests"]) for v in variants if "score" in v]
    assert evaluated == [("chat", "score", 4), ("chat", "calibrated", 7)]
    assert result.usage.requests == 15


def test_variants_false_keeps_the_optimizers_choice() -> None:
    lm = ScriptedLM(sampled, constraint="grammar", logprobs=scored, takes_prompt=True)
    result = run(lm, variants=False)
    assert "variants" not in result.details
    assert result.states[sentiment].layout == "chat" and result.states[sentiment].decode == "sample"


def test_the_prompt_file_records_the_choice_and_what_was_tried(prompt_dir: Path) -> None:
    lm = ScriptedLM(sampled, constraint="grammar", logprobs=scored, takes_prompt=True)
    result = run(lm, save=True)
    [path] = result.files
    doc = yaml.safe_load(path.read_text())
    assert doc["decode"] == "calibrated" and "layout" not in doc  # chat is the default layout
    assert len(doc["provenance"]["variants"]) == 9
    assert {"layout": "chat", "decode": "sample", "score": 50.0} == {
        k: doc["provenance"]["variants"][0][k] for k in ("layout", "decode", "score")
    }


def test_the_summary_names_the_chosen_layout_and_decoding() -> None:
    lm = ScriptedLM(sampled, constraint="grammar", logprobs=scored, takes_prompt=True)
    summary = run(lm).summary()
    assert "layout: chat, decode: calibrated (best of 9 variants tried on validation data)" in summary


def leaning(messages: Messages, text: str) -> float:
    """Scoring with a bias the content-free inputs do not show: on every real review "negative"
    is 2 nats likelier, and the review's own label 1 nat more; on a content-free input both
    labels score the same. The model says "negative" to every review, calibrated or not."""
    label, review = text.strip(), question(messages)
    if "awful" not in review and "great" not in review:
        return -5.0
    right = ("awful" in review) == (label == "negative")
    return (2.0 if label == "negative" else 0.0) + (1.0 if right else 0.0) - 5.0


def test_calibration_on_the_inputs_prior_uncollapses_a_bias_the_content_free_inputs_miss() -> None:
    # regression: on ScoNe the embedded model said "no" to all 40 validation inputs scored and
    # calibrated on the content-free inputs alike, and the result predicted "no" for every test input
    lm = ScriptedLM(lambda m: "negative", constraint="grammar", logprobs=leaning, cache=True)
    result = run(lm)
    tried = {(v["layout"], v["decode"], v.get("prior")): v for v in result.details["variants"]}
    assert tried["chat", "score", None]["collapsed"] and tried["chat", "calibrated", None]["collapsed"]
    assert tried["chat", "calibrated", None]["label_counts"] == {"sentiment": {"negative": 4}}
    on_inputs = tried["chat", "calibrated", "inputs"]
    # right after calibrated in the same layout, scoring again is served by the response cache
    assert on_inputs["requests"] == 0 and not on_inputs["collapsed"] and on_inputs["score"] == 100.0
    # after score, calibrated and the rescue (retrieved demos: still "negative" for all)
    order = [(v["decode"], v.get("demos"), v.get("prior")) for v in result.details["variants"]]
    assert order[1:5] == [
        ("score", None, None),
        ("calibrated", None, None),
        ("sample", "retrieved", None),
        ("calibrated", None, "inputs"),
    ]
    state = result.states[sentiment]
    assert (state.layout, state.decode) == ("chat", "calibrated") and result.score == 100.0
    # the mean "negative" probability over the 4 validation inputs: e^3/(1+e^3) on the 2 "awful"
    # ones, e/(1+e) on the 2 "great" ones
    assert state.calibration is not None
    assert state.calibration["negative"] == pytest.approx((0.95257 + 0.73106) / 2, abs=1e-4)
    assert result.label_counts == {"sentiment": {"negative": 2, "positive": 2}}
    labels = [c.label for c in result.candidates]
    assert "layout=chat decode=calibrated prior=inputs" in labels


def test_the_retrieved_demos_vote_is_chosen_where_the_model_alone_leans_to_one_label() -> None:
    # the model scores "positive" 1 nat likelier whatever the review, so scoring, calibration and
    # sampling all say "positive"; the 2 nearest training reviews share the review's word
    def flat(messages: Messages, text: str) -> float:
        return -1.0 if text.strip() == "positive" else -2.0

    lm = ScriptedLM(lambda m: "positive", constraint="grammar", logprobs=flat, cache=True)
    with lmprog.context(lm=lm):
        result = optimize(
            sentiment, TRAIN, metric, valset=VAL, optimizer="knn", k=2, apply=False, progress=False
        )
    tried = [(v["decode"], v.get("prior"), v.get("vote"), v.get("score")) for v in result.details["variants"]]
    assert tried[:6] == [
        ("sample", None, None, 50.0),
        ("score", None, None, 50.0),
        ("calibrated", None, None, 50.0),
        ("calibrated", "inputs", None, 50.0),
        ("score", None, 0.5, 100.0),
        ("score", None, 0.75, 100.0),
    ]
    # with a response cache the votes cost no request: they rescore the "score" variant's calls
    assert [v.get("requests") for v in result.details["variants"][4:6]] == [0, 0]
    state = result.states[sentiment]
    assert (state.decode, state.vote) == ("score", 0.5) and result.score == 100.0
    assert "layout=chat decode=score vote=0.5" in [c.label for c in result.candidates]


def test_without_a_pool_no_vote_is_tried() -> None:
    lm = ScriptedLM(sampled, constraint="grammar", logprobs=scored, takes_prompt=True)
    result = run(lm)
    assert not any("vote" in v for v in result.details["variants"])
