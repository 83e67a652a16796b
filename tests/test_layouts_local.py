"""Each prompt layout and label scoring (with calibration) on the embedded model: they run, parse,
and the scores are real log-likelihoods of the options."""

from __future__ import annotations

import math
from typing import Literal

import pytest
from local_model import NEEDS_LOCAL

from lmprog import lm_function
from lmprog.format import calibration_prior
from lmprog.function import FinalOutput, State, TextChunk, content_free_scores
from lmprog.trace import trace

pytestmark = [*NEEDS_LOCAL, pytest.mark.usefixtures("local_settings")]


@lm_function
def sentiment(review: str) -> Literal["positive", "negative"]:
    """Classify the sentiment of a movie review."""


DEMOS = (
    {"review": "A wonderful, moving film.", "output": "positive"},
    {"review": "Dull and far too long.", "output": "negative"},
)


@pytest.mark.parametrize("layout", ["chat", "transcript", "completion"])
def test_each_layout_samples_a_label_that_parses(layout: str) -> None:
    sentiment.state = State(demos=DEMOS, layout=layout)  # type: ignore[arg-type]
    with trace() as t:
        assert sentiment("I hated every minute of it.") in ("positive", "negative")
    assert t.spans[0].error is None and t.spans[0].requests == 1
    if layout == "completion":
        assert t.spans[0].messages is not None and t.spans[0].messages[0]["role"] == "prompt"


@pytest.mark.parametrize("layout", ["chat", "transcript", "completion"])
def test_scoring_gives_every_option_a_log_likelihood(layout: str) -> None:
    sentiment.state = State(demos=DEMOS, layout=layout, decode="score")  # type: ignore[arg-type]
    with trace() as t:
        label = sentiment("I hated every minute of it.")
    scores = t.spans[0].scores
    assert scores is not None and set(scores) == {"positive", "negative"}
    assert all(s < 0 and math.isfinite(s) for s in scores.values())
    assert label == max(scores, key=lambda k: scores[k])
    assert t.spans[0].requests == 1  # one request reads both options' first tokens


def test_calibration_runs_on_content_free_inputs_and_is_used() -> None:
    scoring = State(demos=DEMOS, layout="transcript", decode="score")
    prior = calibration_prior(content_free_scores(sentiment, scoring))
    assert set(prior) == {"positive", "negative"} and sum(prior.values()) == pytest.approx(1.0, abs=1e-4)
    sentiment.state = State(demos=DEMOS, layout="transcript", decode="calibrated", calibration=prior)
    with trace() as t:
        assert sentiment("What a great cast.") in ("positive", "negative")
    assert t.spans[0].scores is not None


def test_the_completion_layout_streams_as_one_chunk_of_the_plain_prompt_call() -> None:
    sentiment.state = State(demos=DEMOS, layout="completion")
    with trace() as t:
        events = list(sentiment.stream("I hated every minute of it."))
    chunks = [e for e in events if isinstance(e, TextChunk)]
    assert len(chunks) == 1 and isinstance(events[-1], FinalOutput)
    assert events[-1].value in ("positive", "negative")
    assert chunks[0].text.strip() == events[-1].value
    assert t.spans[0].messages is not None and t.spans[0].messages[0]["role"] == "prompt"
