"""Label scoring calls: an lm_function with ``decode="score"`` or ``"calibrated"`` asks for the
likelihood of every option of its categorical output and returns the best one (see
:mod:`lmprog.format._labels` for the scoring and the calibration).

:class:`ScoreRun` has the interface of ``_run._Run`` (``lm``, ``params``, ``span``,
``next_messages``, ``feed``, ``result``), so one driver loop serves both. A call's span records the
option scores (``span.scores``: option text -> score, calibrated and voted when the call was) and the
chosen option's text as its ``raw`` reply.

What an LM must offer: token logprobs (``BaseLM.returns_logprobs``). With a grammar too (the
embedded model), one request of one token allowing exactly the options reads the first token's
alternatives when the options' first words differ (:func:`~lmprog.format.first_words_differ`);
when they do not, or when that reply cannot tell the options apart (an option's first token
missing from the alternatives, or shared with another option), the options' token tree is walked
(:mod:`lmprog.format._trie`): from that reply when its token is one option's alone, else from a
request of every option running to the end of one, then a request for each group of options the
replies left without a score. Options of which one is a prefix of another are one request each,
forcing each option's text. Why more than one request was needed is logged at debug level and
kept in ``ScoreRun.fallback``. Without a grammar, one request reads the first token's top
alternatives. :func:`score_requests` says how many requests
one call sends. An LM without logprobs cannot score: the call samples a reply
instead (``decode="sample"``), logged once per function and model, so that a prompt file made on
the embedded model still works on a chat model. :func:`content_free_scores` scores the options on
the content-free inputs calibration divides out.
"""

from __future__ import annotations

import logging
import math
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
    Walk,
    best_label,
    branchings,
    calibrated,
    choice_grammar,
    demo_labels,
    first_token_scores,
    first_words_differ,
    forced_grammar,
    label_options,
    nested_pair,
    next_groups,
    owners_of,
    render_messages,
    sequence_logprob,
    voted,
    walk_reply,
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
    params: dict[str, Any]
    option: LabelOption | None = None  # a forced request: this option's text
    group: tuple[int, ...] | None = None  # a request of the token tree's walk: these options
    # neither: the one request of first-token scoring


def can_score(lm: BaseLM) -> bool:
    """Whether ``lm`` can score options (it returns token logprobs)."""
    return lm.returns_logprobs()


def score_requests(func: Any, lm: BaseLM) -> int:
    """The requests one scoring call of ``func`` on ``lm`` sends at most for typical inputs,
    before cache hits; 1 when the call samples instead (no logprobs, no options) or on an LM
    without a grammar.

    On a grammar LM, ``1 + branchings(texts)`` (:func:`~lmprog.format.branchings`: the points
    where the options' characters branch beyond the first), at most one per option: the walk of
    the token tree sends one request per group of options below such a point, when every
    option's tokens are among the alternatives. So options whose first characters differ count 1
    (the first-token request); ``versicolor``/``virginica`` (``v``) count 2. An option whose token
    falls outside the alternatives costs one request more, which the count leaves out. Options
    of which one is a prefix of another: one per option.

    Measured on SmolLM2-135M, 20 test inputs and 3 content-free ones a setting
    (``benchmarks/results/2026-12-02-score-trie.md``), requests per call mean / max against the
    count: Iris 1.0 / 2 (count 2); Banking77 with 10 intents 1.45 / 2 with 4 demos, 3.95 / 6
    zero-shot (count 4: 6 of 23 zero-shot calls sent more); all 77 intents 20 / 24 with demos,
    31.4 / 37 zero-shot (count 40). Zero-shot, the options' own tokens often rank below the 1000
    alternatives, hence the extra requests.
    """
    options = label_options(func.signature)
    if options is None or not can_score(lm) or lm.constraint_kind() != "grammar":
        return 1
    texts = [o.text for o in options]
    if nested_pair(texts) is not None:
        return len(options)
    return min(len(options), 1 + branchings(texts))


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
    """One scoring call: one request, a walk of the options' token tree, or a request per option;
    then the best option (no tool calls: a function with tools cannot score)."""

    def __init__(
        self, func: Any, inputs: Mapping[str, Any], *, state: State | None = None, one_request: bool = True
    ) -> None:
        """``one_request=False`` sends one request per option on a grammar LM even when fewer
        could score them all (for comparisons)."""
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
        self._texts = [lead + o.text for o in options]
        self._pending: list[tuple[int, ...]] = []  # groups of the walk still to request
        #: why one request could not score the options (then more requests followed)
        self.fallback: str | None = None
        #: two options of which one begins the other: no token tells them apart (None: none)
        self._nested = nested = nested_pair(self._texts)
        if not self._grammar:
            one = {**_BASE, "max_tokens": 1, "top_logprobs": TOP_LOGPROBS}
            self._requests = [_Request(one)]
        elif one_request and first_words_differ(self._texts):
            one = {**_BASE, "max_tokens": 1, "top_logprobs": GRAMMAR_TOP_LOGPROBS}
            one["grammar"] = choice_grammar(self._texts)
            one["alternatives_for"] = self._texts  # the options' first tokens, not a thousand others
            self._requests = [_Request(one)]
        elif one_request and nested is None:
            self._requests = [self._walk_request(tuple(range(len(options))))]
        else:
            if one_request and nested is not None:
                self.fallback = f"{nested[0]!r} begins {nested[1]!r}: no token tells them apart"
            self._requests = self._forced_requests()
        self._next = 0
        self.params: dict[str, Any] = {}
        self.span: Span | None = None
        self.scores: dict[str, float] = {}
        self._all_cached = True
        self.chosen_text = ""  # the chosen option's text, once result() is read

    def _forced_requests(self) -> list[_Request]:
        return [
            _Request(
                # the option's own tokens are read, no alternative (the runtime sends 20 a token)
                {
                    **_BASE,
                    "max_tokens": SCORE_MAX_TOKENS,
                    "grammar": forced_grammar(self._lead + o.text),
                    "alternatives_for": (),
                },
                option=o,
            )
            for o in self.options
        ]

    def _walk_request(self, group: tuple[int, ...]) -> _Request:
        """A request of the token tree's walk: the options of ``group`` to the end of one of them,
        with the alternatives that spell any option (see :mod:`lmprog.format._trie`)."""
        params = {**_BASE, "max_tokens": SCORE_MAX_TOKENS, "top_logprobs": GRAMMAR_TOP_LOGPROBS}
        params["grammar"] = choice_grammar([self._texts[k] for k in group])
        params["alternatives_for"] = self._texts
        return _Request(params, group=group)

    def complete(self) -> int:
        """Send this call's requests one after the other on its LM, synchronously and without
        a span (content-free inputs, comparisons); returns how many were sent. A call of the
        lm_function goes through its driver loop instead."""
        sent = 0
        while (messages := self.next_messages()) is not None:
            self.feed(self.lm.complete(messages, **self.params))
            sent += 1
        return sent

    def next_messages(self) -> list[dict[str, str]] | None:
        while self._next >= len(self._requests) and self._pending:
            group = tuple(k for k in self._pending.pop(0) if self.options[k].text not in self.scores)
            if group:
                self._requests.append(self._walk_request(group))
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
            if request.group is not None:
                self._walked(completion.logprobs, request.group)
            elif request.option is None and self._grammar:
                self._first_token(completion.logprobs)
            elif request.option is None:
                self.scores = first_token_scores(completion.logprobs, self.options)
            else:
                text = self._lead + request.option.text
                self.scores[request.option.text] = sequence_logprob(completion.logprobs, text)
        except ValueError as e:
            raise LMError(f"{self.lm.model}: cannot score the options: {e}", model=self.lm.model) from None

    def _first_token(self, logprobs: list[dict[str, Any]]) -> None:
        """Read the one request's reply; when it cannot tell the options apart, walk the token
        tree: from this reply when its token is one option's alone (a longer reply would stop
        there too), else from a request of every option (this reply's path was cut)."""
        try:
            self.scores = first_token_scores(logprobs, self.options, lead=self._lead)
            return
        except ValueError as e:
            why = str(e)
            logger.debug("%s: the first token cannot score the options (%s)", self.lm.model, e)
        every = tuple(range(len(self.options)))
        if self._nested is not None:
            self.fallback = why
            self._requests.extend(self._forced_requests())
        elif len(owners_of(self._texts, str(logprobs[0].get("token", "")))) == 1:
            self._walked(logprobs, every)  # sets the fallback if more requests are needed
        else:
            self.fallback = why
            self._pending.append(every)

    def _walked(self, logprobs: list[dict[str, Any]], group: tuple[int, ...]) -> None:
        """Take the candidate scores of one reply of the walk and queue the groups it leaves."""
        walk = walk_reply(logprobs, self._texts)
        new = 0
        for k, score in walk.candidates.items():
            text = self.options[k].text
            new += text not in self.scores
            self.scores[text] = max(score, self.scores.get(text, -math.inf))
        if not new:  # each request must score an option more, or the walk could loop
            names = ", ".join(repr(self.options[k].text) for k in group)
            raise ValueError(f"a reply spelling {walk.path!r} scores none of {names} anew")
        scored = {k for k, o in enumerate(self.options) if o.text in self.scores}
        groups = next_groups(walk, scored, self._pending, len(self.options))
        if groups and self.fallback is None:
            self.fallback = _why(walk, groups, self.options)
            logger.debug(
                "%s: the walk needs %d more request(s) (%s)", self.lm.model, len(groups), self.fallback
            )
        self._pending.extend(groups)

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


def _why(walk: Walk, groups: list[tuple[int, ...]], options: tuple[LabelOption, ...]) -> str:
    """Why the walk needs the requests of ``groups`` after ``walk`` (for ``ScoreRun.fallback``)."""
    for branch in walk.branches:
        if any(set(branch.owners) & set(g) for g in groups):
            names = ", ".join(repr(options[k].text) for k in branch.owners)
            return f"{names} share {branch.prefix!r}, a token the reply did not follow"
    names = ", ".join(repr(options[k].text) for k in groups[-1])
    return f"no token of {names} among the alternatives"


def content_free_scores(func: Any, state: State) -> list[dict[str, float]]:
    """The raw option scores of ``func`` under ``state`` on each content-free input (every input
    field set to one of :data:`~lmprog.format.CONTENT_FREE`), for calibration."""
    out = []
    for value in CONTENT_FREE:
        inputs = {name: value for name in func.signature.input_names}
        run = ScoreRun(func, inputs, state=state)
        run.complete()
        out.append(dict(run.scores))
    return out
