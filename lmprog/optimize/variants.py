"""After an optimizer: try the prompt layouts and label decodings on validation data, keep the best.

Whatever an optimizer chose (instructions, demos, a demo pool), the same content can reach the
model in another layout (``chat``, ``transcript``, ``completion``; :mod:`lmprog.format._layout`)
and a categorical output can be chosen by scoring every option, with or without contextual
calibration (``sample``, ``score``, ``calibrated``; :mod:`lmprog.format._labels`). A 135M model
answers the same demos very differently across these (calibrated decoding is the one that most
often lifts it, benchmarks/results/layouts.md), so ``optimize()`` runs :func:`choose_variant`
after the optimizer (``optimize(..., variants=False)`` opts out):

1. the variants, most valuable first: ``score`` then ``calibrated`` in the optimizer's own layout
   (only when some function has a single categorical output and an LM that returns logprobs; a
   function without one keeps ``sample``); if the best so far still collapses
   (:func:`~.balance.is_collapsed`), the same states with demos retrieved per call instead of
   fixed ones (:mod:`.rescue`; the variants below are then made of them when they rank higher);
   then ``calibrated`` on the validation inputs' prior (below) in the optimizer's layout, unless
   the rescue won; then, where a function retrieves its demos (a pool), ``score`` with the
   retrieved demos' labels mixed in at each weight of :data:`VOTE_WEIGHTS`
   (:mod:`lmprog.format._vote`; on TREC the embedded model beat its demos' majority label on one
   seed and lost to it on another); then sampling in each other layout the program's LMs can take
   (``completion`` only when every function's LM continues plain text), then ``score`` and both
   calibrations in the other layout whose sampling ranked best: at most 8 evaluations
   beyond the optimizer's choice. ``variants="all"`` scores options in every layout (the full
   grid, up to 11). The same variant applies to every function, except that a function with tools
   or a ``History`` input keeps the chat layout (a layout no other function takes is not tried),
   and one with tools or ``reasoning=True`` (a text field or the model's native reasoning) keeps
   ``sample``.
2. each is evaluated on the validation data in that order, and only when its estimated requests
   (:func:`~.variants_budget.estimate`) fit what is left of ``Budget(max_calls=...)``; a budget
   refusal ends the step and keeps what was measured. ``calibrated`` first scores the options on
   the content-free inputs (3 inputs x options requests per function) and stores the prior; right
   after ``score`` in the same layout its scoring requests are the same ones again, free when the
   LM's response cache is on (then only the content-free requests count). Calibration on the
   inputs' prior ("batch calibration", Zhou et al. 2023) divides out instead the mean option
   probabilities over the validation inputs, read from the ``score`` variant's calls (no label is
   used): where the content-free inputs do not show a model's bias (on ScoNe the embedded model
   said "no" to every validation input, calibrated or not), the inputs do, and the predictions no
   longer lean to one label. Scoring again is free with a response cache and one function;
   otherwise it costs a pass and is not planned into the reserve (:mod:`.variants_budget`).
3. the optimizer's own choice stays unless a variant ranks higher under
   :func:`~lmprog.optimize.balance.rank_key`: a variant whose predictions collapse to one label
   (while the validation labels do not) never replaces one that does not, whatever its score.

How ``Budget(max_calls=N)`` is shared between the optimizer and this step before the optimizer
runs is :mod:`.variants_budget`'s (``plan_reserve``).

What was tried, with scores, label counts, the requests each evaluation made and why a variant
was skipped, is recorded in ``result.details["variants"]`` (and in the prompt files'
provenance), the reserve and what it bought in ``result.details["variants_budget"]``; every
evaluated variant is also a :class:`~lmprog.optimize.Candidate`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any

from lmprog.errors import BudgetExceededError, EvaluationError, LMError
from lmprog.format import Decode, Layout, calibration_prior
from lmprog.function import LMFunction, State, content_free_scores
from lmprog.optimize._base import Candidate, OptimizationResult, Task
from lmprog.optimize.balance import LabelCounts, expected_counts, is_collapsed, predicted_counts, rank_key
from lmprog.optimize.rescue import retrieved_states
from lmprog.optimize.variants_budget import chat_only, estimate, is_scorable, step_layouts

logger = logging.getLogger("lmprog.optimize")

DECODE_ORDER: tuple[Decode, ...] = ("sample", "score", "calibrated")
#: the scored variants of a layout, in order: None is ``calibrated`` on the validation inputs'
#: prior (it needs that layout's ``score`` variant measured first)
SCORED_ORDER: tuple[Decode | None, ...] = ("score", "calibrated", None)
#: the weights of the retrieved demos' labels tried with ``score`` (:mod:`lmprog.format._vote`)
VOTE_WEIGHTS: tuple[float, ...] = (0.5, 0.75)


@dataclasses.dataclass
class _Tried:
    layout: Layout
    decode: Decode
    score: float | None = None
    collapsed: bool = False
    counts: LabelCounts = dataclasses.field(default_factory=dict)
    skipped: str | None = None
    requests: int | None = None
    #: built on retrieved demos (:mod:`.rescue`) instead of the optimizer's fixed ones
    retrieved: bool = False
    #: ``"inputs"``: calibrated on the prior of the validation inputs, not the content-free ones
    prior: str | None = None
    #: the weight of the retrieved demos' labels (``score`` with a pool)
    vote: float | None = None

    def tags(self) -> str:
        """What sets the variant apart beyond its layout and decoding, as the candidate's label
        and the log show it (`` demos=retrieved prior=inputs vote=0.5``; empty for none)."""
        return (
            (" demos=retrieved" if self.retrieved else "")
            + (f" prior={self.prior}" if self.prior is not None else "")
            + (f" vote={self.vote:g}" if self.vote is not None else "")
        )

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"layout": self.layout, "decode": self.decode}
        if self.retrieved:
            out["demos"] = "retrieved"
        if self.prior is not None:
            out["prior"] = self.prior
        if self.vote is not None:
            out["vote"] = self.vote
        if self.skipped is not None:
            out["skipped"] = self.skipped
            return out
        out["score"] = None if self.score is None else round(self.score, 2)
        out["collapsed"] = self.collapsed
        out["label_counts"] = self.counts
        if self.requests is not None:
            out["requests"] = self.requests
        return out


def choose_variant(
    task: Task, result: OptimizationResult, used: Callable[[], int], *, grid: bool = False
) -> None:
    """Try the layout x decoding variants of ``result.states`` on ``task.valset`` and keep the
    best in ``result`` (states, score, label counts); ``used()`` is the requests spent so far.
    ``grid``: score options in every layout, not only in the optimizer's and the best other."""
    if not task.valset or not result.states:
        return
    functions = [fn for fn in task.functions if fn in result.states]
    scorable = [fn for fn in functions if is_scorable(fn)]
    layouts = step_layouts(functions)
    first = next(iter(result.states.values()))
    expected = expected_counts(functions, task.valset)
    base = _Tried(first.layout, first.decode, result.score, counts=dict(result.label_counts))
    base.collapsed = is_collapsed(base.counts, expected)
    tried = [base]
    best, best_states = base, dict(result.states)
    source = dict(result.states)  # what the variants are made of: the optimizer's states, or rescued
    # the raw option scores per function of each evaluated "score" variant, by (layout, retrieved)
    option_scores: dict[tuple[Layout, bool], dict[LMFunction[..., Any], list[dict[str, float]]]] = {}

    def measure(variant: _Tried, make: Callable[[], dict[LMFunction[..., Any], State]], cost: int) -> bool:
        """Evaluate the states ``make()`` builds as ``variant`` if ``cost`` fits what is left of the
        budget; False when the budget ends the step."""
        nonlocal best, best_states
        tried.append(variant)
        before = used()
        left = None if task.budget.max_calls is None else task.budget.max_calls - before
        if left is not None and cost > left:
            variant.skipped = f"budget: about {cost} requests needed, {left} left"
            return True
        try:
            states = make()  # calibrated: the content-free requests of the prior
            evaluation = task.evaluate(task.valset, states)
        except BudgetExceededError as e:
            variant.skipped = f"budget: {e.what} reached"
            return False
        except (EvaluationError, LMError) as e:
            variant.skipped = f"failed: {str(e).splitlines()[0]}"
            logger.warning("variant layout=%s decode=%s failed: %s", variant.layout, variant.decode, e)
            return True
        variant.requests = used() - before
        if variant.decode == "score" and variant.vote is None:
            option_scores[(variant.layout, variant.retrieved)] = _option_scores(scorable, evaluation)
        variant.score, variant.counts = evaluation.score, predicted_counts(functions, evaluation)
        variant.collapsed = is_collapsed(variant.counts, expected)
        result.candidates.append(
            Candidate(
                states,
                variant.score,
                label=f"layout={variant.layout} decode={variant.decode}{variant.tags()}",
                evaluated_on=len(task.valset),
                label_counts=variant.counts,
                collapsed=variant.collapsed,
            )
        )
        if rank_key(variant.score, variant.collapsed) > rank_key(best.score, best.collapsed):
            best, best_states = variant, states
        return True

    on_retrieved = False  # the variants below are made of rescued states

    def states_of(
        made_of: dict[LMFunction[..., Any], State], layout: Layout, decode: Decode
    ) -> dict[LMFunction[..., Any], State]:
        """Every function's state of ``made_of`` in ``layout`` with ``decode`` (see
        :func:`_variant_state`)."""
        return {fn: _variant_state(fn, made_of[fn], layout, decode, fn in scorable) for fn in functions}

    def run(layout: Layout, decode: Decode) -> bool:
        """Measure the variant ``layout`` x ``decode`` of ``source``; False when the budget ends."""

        def make() -> dict[LMFunction[..., Any], State]:
            return states_of(source, layout, decode)

        cost = estimate(task, functions, scorable, decode, repeat=(layout, on_retrieved) in option_scores)
        return measure(_Tried(layout, decode, retrieved=on_retrieved), make, cost)

    deferred: list[Callable[[], bool]] = []  # calibrations on the inputs that cost requests

    def run_on_inputs(layout: Layout) -> bool:
        """Measure ``calibrated`` in ``layout`` on the prior of the validation inputs' scores (from
        that layout's measured ``score`` variant; nothing to do without one). When scoring again
        costs requests (no response cache) it is deferred to the end of the order: the reserve
        was planned for the steps after it."""
        scores = option_scores.get((layout, on_retrieved))
        if not scores:
            return True
        made_of = source

        def make() -> dict[LMFunction[..., Any], State]:
            states = states_of(made_of, layout, "score")
            for fn, sets in scores.items():
                prior = calibration_prior(sets)
                states[fn] = dataclasses.replace(states[fn], decode="calibrated", calibration=prior)
            return states

        variant = _Tried(layout, "calibrated", retrieved=on_retrieved, prior="inputs")
        cost = estimate(task, functions, scorable, "score", repeat=True)
        if cost:
            deferred.append(lambda: measure(variant, make, cost))
            return True
        return measure(variant, make, cost)

    def run_votes(layout: Layout) -> bool:
        """Measure ``score`` in ``layout`` with each of :data:`VOTE_WEIGHTS` on the scorable
        functions whose states retrieve demos (nothing to do without one). The scoring requests
        are those of the layout's ``score`` variant again: free with a response cache and one
        function, else deferred like the calibration on the inputs."""
        voting = [fn for fn in scorable if source[fn].pool is not None]
        if not voting:
            return True
        made_of = source
        cost = estimate(task, functions, scorable, "score", repeat=(layout, on_retrieved) in option_scores)
        for weight in VOTE_WEIGHTS:

            def make(weight: float = weight) -> dict[LMFunction[..., Any], State]:
                states = states_of(made_of, layout, "score")
                for fn in voting:
                    states[fn] = dataclasses.replace(states[fn], vote=weight)
                return states

            variant = _Tried(layout, "score", retrieved=on_retrieved, vote=weight)
            if cost:
                deferred.append(functools.partial(measure, variant, make, cost))
            elif not measure(variant, make, cost):
                return False
        return True

    def run_any(layout: Layout, decode: Decode | None) -> bool:
        return run_on_inputs(layout) if decode is None else run(layout, decode)

    # the most valuable first: scoring, then calibrated, in the optimizer's layout (calibration is
    # what corrects a label bias, and both are planned into the reserve)
    for decode in DECODE_ORDER[1:] if scorable else ():
        if not run(base.layout, decode):
            _finish(result, tried, best, best_states, base)
            return
    if best.collapsed:  # still collapsed: the same states with retrieved demos (see .rescue)
        rescued = retrieved_states(task, source, expected)
        if rescued is not None:
            rescue = _Tried(base.layout, base.decode, retrieved=True)
            going = measure(rescue, lambda: rescued, estimate(task, functions, scorable, base.decode))
            if best is rescue:
                source, on_retrieved = rescued, True
            if not going:
                _finish(result, tried, best, best_states, base)
                return
    # calibrated on the validation inputs' prior, after the rescue (where retrieved demos work, on
    # Iris, they beat any calibration of fixed ones); not when the rescue won (its layout was
    # not scored with retrieved demos)
    if scorable and not run_on_inputs(base.layout):
        _finish(result, tried, best, best_states, base)
        return
    # the retrieved demos' labels mixed into the scores (a pool: knn, or demos retrieved by mipro,
    # reflect or the rescue)
    if scorable and not run_votes(base.layout):
        _finish(result, tried, best, best_states, base)
        return

    others = [lay for lay in layouts if lay != base.layout]

    def combos() -> Iterator[tuple[Layout, Decode | None]]:
        yield from ((lay, DECODE_ORDER[0]) for lay in others)
        if scorable:  # then in the other layout whose sampling ranked best (once it is measured)
            sampled = [
                t
                for t in tried
                if t.layout in others
                and t.decode == "sample"
                and t.skipped is None
                and t.retrieved == on_retrieved
            ]
            ranked = sorted(sampled, key=lambda t: rank_key(t.score, t.collapsed), reverse=True)
            scoring = others if grid else [t.layout for t in ranked[:1]]
            yield from ((lay, dec) for lay in scoring for dec in SCORED_ORDER)

    for layout, step in combos():
        if not run_any(layout, step):
            break
    else:
        for later in deferred:
            if not later():
                break
    _finish(result, tried, best, best_states, base)


def _finish(
    result: OptimizationResult,
    tried: list[_Tried],
    best: _Tried,
    best_states: dict[LMFunction[..., Any], State],
    base: _Tried,
) -> None:
    """Record what was tried in ``result.details["variants"]`` and keep the best in ``result``."""
    result.details["variants"] = [t.record() for t in tried]
    if best is not base:
        logger.info(
            "variants: layout=%s decode=%s%s scored %.1f",
            best.layout,
            best.decode,
            best.tags(),
            best.score or 0.0,
        )
        result.states, result.score, result.label_counts = best_states, best.score, best.counts


def _variant_state(
    fn: LMFunction[..., Any], state: State, layout: Layout, decode: Decode, scorable: bool
) -> State:
    if chat_only(fn):
        layout = "chat"
    if not scorable or decode == "sample":
        return dataclasses.replace(state, layout=layout, decode="sample", calibration=None, vote=None)
    scoring = dataclasses.replace(state, layout=layout, decode="score", calibration=None, vote=None)
    if decode == "score":
        return scoring
    prior = calibration_prior(content_free_scores(fn, scoring))
    return dataclasses.replace(scoring, decode="calibrated", calibration=prior)


def _option_scores(
    scorable: list[LMFunction[..., Any]], evaluation: Any
) -> dict[LMFunction[..., Any], list[dict[str, float]]]:
    """The raw option scores of each scorable function's calls in ``evaluation`` (a ``score``
    variant's: its spans record them uncalibrated)."""
    out: dict[LMFunction[..., Any], list[dict[str, float]]] = {}
    for fn in scorable:
        sets = [
            dict(span.scores)
            for res in evaluation.results
            for span in (res.trace.spans if res.trace is not None else [])
            if span.obj is fn and span.kind == "lm" and span.error is None and span.scores
        ]
        if sets:
            out[fn] = sets
    return out
