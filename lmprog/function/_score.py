"""Label scoring calls: an lm_function with ``decode="score"`` or ``"calibrated"`` asks for the
likelihood of every option of its categorical output and returns the best one (see
:mod:`lmprog.format._labels` for the scoring and the calibration).

:class:`ScoreRun` has the interface of ``_run._Run`` (``lm``, ``params``, ``span``,
``next_messages``, ``feed``, ``result``), so one driver loop serves both. A call's span records the
option scores (``span.scores``: option text -> score, calibrated and voted when the call was) and the
chosen option's text as its ``raw`` reply.

What an LM must offer: token logprobs (``BaseLM.returns_logprobs``). With a grammar too (the
embedded model), one request allowing exactly the options reads the first token's alternatives
when the options' first words differ (:func:`~lmprog.format.first_words_differ`); when they do not,
or when that reply cannot tell the options apart (an option's first token missing from the
alternatives, or shared with another option), each option is one request forcing its text (the
fallback is logged at debug level and counted in ``ScoreRun.fallback``). Without a grammar, one
request reads the first token's top alternatives. :func:`score_requests` says how many requests
one call sends. An LM without logprobs cannot score: the call samples a reply
instead (``decode="sample"``), logged once per function and model, so that a prompt file made on
the embedded model still works on a chat model. :func:`content_free_scores` scores the options on
the content-free inputs calibration divides out.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lmprog.errors import LMError, UsageError
from lmprog.format import (
    CONTENT_FREE,
    GRAMMAR_TOP_LOGPROBS,
    TOP_LOGPROBS,
    LabelOption,
    best_label,
    calibrated,
    choice_grammar,
    demo_labels,
    first_token_scores,
    first_words_differ,
    forced_grammar,
    label_options,
    render_messages,
    sequence_logprob,
    voted,
)
from lmprog.function._run import _Run, layout_for, wire_demos
from lmprog.lm import BaseLM, Completion, resolve_lm
from lmprog.promptfile import State
from lmprog.trace import Span

logger = logging.getLogger("lmprog.function")

#: the token budget of one scoring request (the grammar ends it after the option's text)
SCORE_MAX_TOKENS = 64
_BASE: dict[str, Any] = {"temperature": 0.0, "logprobs": True}
_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


@dataclass(frozen=True)
class _Request:
    option: LabelOption | None  # None: the one request of first-token scoring
    params: dict[str, Any]


def can_score(lm: BaseLM) -> bool:
    """Whether ``lm`` can score options (it returns token logprobs)."""
    return lm.returns_logprobs()


def score_requests(func: Any, lm: BaseLM) -> int:
    """The requests one scoring call of ``func`` on ``lm`` sends at most, before cache hits: 1
    with one request for all options, else one per option; 1 when the call samples instead (no
    logprobs, no options). A one-request reply that cannot tell the options apart adds one per
    option, which only options beginning with the same character can cause (a token they share,
    ``v`` for ``versicolor``/``virginica``, likelier than their own): those count ``1 + options``.
    It depends on the input: on Iris the embedded model's reply fell back on every call."""
    options = label_options(func.signature)
    if options is None or not can_score(lm) or lm.constraint_kind() != "grammar":
        return 1
    texts = [o.text for o in options]
    if not first_words_differ(texts):
        return len(options)
    firsts = [t[:1] for t in texts]
    return 1 if len(set(firsts)) == len(firsts) else 1 + len(options)


def wants_scoring(func: Any, lm: BaseLM) -> bool:
    """Whether a call of ``func`` under its state scores options (else it samples; an LM without
    logprobs is logged once per function and model)."""
    state: State = func.state
    if state.decode == "sample":
        return False
    if func.reasoning or getattr(func, "tools", ()):
        what = "reasoning=True" if func.reasoning else "tools"
        raise UsageError(
            f"decode={state.decode!r} chooses an option without a reply, so it cannot be combined "
            f"with {what} (use decode: sample)",
            function=func.signature.qualname,
        )
    if can_score(lm):
        return True
    key = (func.signature.qualname, lm.model)
    with _warned_lock:
        first = key not in _warned
        _warned.add(key)
    if first:
        logger.warning(
            "%s: decode=%r needs token logprobs, which %s does not return; sampling a reply instead",
            func.signature.qualname,
            state.decode,
            lm.model,
        )
    return False


def start_run(func: Any, inputs: dict[str, Any]) -> _Run | ScoreRun:
    """The run of one call: scoring the options when the state's ``decode`` says so and the LM
    returns logprobs, else sampling a reply."""
    return ScoreRun(func, inputs) if wants_scoring(func, resolve_lm(func.lm)) else _Run(func, inputs)


class ScoreRun:
    """One scoring call: a request per option (or one request), then the best option (no tool
    calls: a function with tools cannot score)."""

    def __init__(
        self, func: Any, inputs: Mapping[str, Any], *, state: State | None = None, one_request: bool = True
    ) -> None:
        """``one_request=False`` sends one request per option on a grammar LM even when one
        request could score them all (for comparisons)."""
        self.func = func
        self.lm = resolve_lm(func.lm)
        self.state: State = state if state is not None else func.state
        options = label_options(func.signature)
        if options is None:
            raise UsageError(
                f"decode={self.state.decode!r} scores the options of a single Literal, Enum or bool "
                "output; this function has none (use decode: sample)",
                function=func.signature.qualname,
            )
        self.options = options
        layout = layout_for(func, self.lm, self.state.layout)
        demos = self.state.demos_for(inputs)
        #: the option texts the call's retrieved demos vote for (read with ``state.vote``)
        self.votes = demo_labels(demos, func.signature.outputs[0].name, options) if self.state.vote else []
        self.messages = render_messages(
            func.wire_signature,
            inputs,
            instruction=self.state.instruction,
            demos=wire_demos(func.signature, demos),
            layout=layout,
        )
        lead = " " if layout == "completion" else ""
        self._lead = lead
        self._grammar = self.lm.constraint_kind() == "grammar"
        texts = [lead + o.text for o in options]
        if not self._grammar:
            one = {**_BASE, "max_tokens": 1, "top_logprobs": TOP_LOGPROBS}
            self._requests = [_Request(None, one)]
        elif one_request and first_words_differ(texts):
            one = {**_BASE, "max_tokens": 1, "top_logprobs": GRAMMAR_TOP_LOGPROBS}
            one["grammar"] = choice_grammar(texts)
            one["alternatives_for"] = texts  # the options' first tokens, not a thousand others
            self._requests = [_Request(None, one)]
        else:
            self._requests = self._forced_requests()
        self._next = 0
        self.params: dict[str, Any] = {}
        self.span: Span | None = None
        self.scores: dict[str, float] = {}
        #: why the one request could not tell the options apart (then one request per option followed)
        self.fallback: str | None = None
        self._all_cached = True
        self.chosen_text = ""  # the chosen option's text, once result() is read

    def _forced_requests(self) -> list[_Request]:
        return [
            _Request(
                o,
                # the option's own tokens are read, no alternative (the runtime sends 20 a token)
                {
                    **_BASE,
                    "max_tokens": SCORE_MAX_TOKENS,
                    "grammar": forced_grammar(self._lead + o.text),
                    "alternatives_for": (),
                },
            )
            for o in self.options
        ]

    def next_messages(self) -> list[dict[str, str]] | None:
        if self._next >= len(self._requests):
            return None
        self.params = dict(self._requests[self._next].params)
        return self.messages

    def feed(self, completion: Completion) -> None:
        request = self._requests[self._next]
        self._next += 1
        self._all_cached = self._all_cached and completion.cache_hit
        if self.span is not None:
            self.span.model = completion.model
            self.span.messages = self.messages
            self.span.cache_hit = self._all_cached
        if not completion.logprobs:
            raise LMError(f"{self.lm.model} returned no logprobs for a scoring request", model=self.lm.model)
        try:
            if request.option is None and self._grammar:
                try:
                    self.scores = first_token_scores(completion.logprobs, self.options, lead=self._lead)
                except ValueError as e:
                    self.fallback = str(e)
                    logger.debug("%s: one request cannot score the options (%s)", self.lm.model, e)
                    self._requests.extend(self._forced_requests())
            elif request.option is None:
                self.scores = first_token_scores(completion.logprobs, self.options)
            else:
                text = self._lead + request.option.text
                self.scores[request.option.text] = sequence_logprob(completion.logprobs, text)
        except ValueError as e:
            raise LMError(f"{self.lm.model}: cannot score the options: {e}", model=self.lm.model) from None

    def final_scores(self) -> dict[str, float]:
        """The option scores a choice is made on: calibrated when the state says so, then mixed
        with the retrieved demos' labels when it has a ``vote`` (:mod:`lmprog.format._vote`)."""
        scores = dict(self.scores)
        if self.state.decode == "calibrated" and self.state.calibration:
            scores = calibrated(scores, self.state.calibration)
        if self.state.vote:
            scores = voted(scores, self.votes, self.state.vote)
        return scores

    def result(self) -> Any:
        scores = self.final_scores()
        chosen = best_label(scores, self.options)
        self.chosen_text = chosen.text
        if self.span is not None:
            self.span.scores = {k: round(v, 4) for k, v in scores.items()}
            self.span.raw = chosen.text
            self.span.output = chosen.value
        return chosen.value


def content_free_scores(func: Any, state: State) -> list[dict[str, float]]:
    """The raw option scores of ``func`` under ``state`` on each content-free input (every input
    field set to one of :data:`~lmprog.format.CONTENT_FREE`), for calibration."""
    out = []
    for value in CONTENT_FREE:
        inputs = {name: value for name in func.signature.input_names}
        run = ScoreRun(func, inputs, state=state)
        while (messages := run.next_messages()) is not None:
            run.feed(run.lm.complete(messages, **run.params))
        out.append(dict(run.scores))
    return out
