"""After an optimizer: try the prompt layouts and label decodings on validation data, keep the best.

Whatever an optimizer chose (instructions, demos, a demo pool), the same content can reach the
model in another layout (``chat``, ``transcript``, ``completion``; :mod:`lmprog.format._layout`)
and a categorical output can be chosen by scoring every option, with or without contextual
calibration (``sample``, ``score``, ``calibrated``; :mod:`lmprog.format._labels`). A 135M model
answers the same demos very differently across these, so ``optimize()`` runs
:func:`choose_variant` after the optimizer (``optimize(..., variants=False)`` opts out):

1. the variants: sampling in each layout the program's LMs can take (``completion`` only when
   every function's LM continues plain text), then ``score`` and ``calibrated`` in the layout
   that ranked best so far (only when some function has a single categorical output and an LM
   that returns logprobs; a function without one keeps ``sample``): at most 4 evaluations beyond
   the optimizer's choice. ``variants="all"`` scores options in every layout (up to 8). The same
   variant applies to every function, except that a function with tools or a ``History`` input
   keeps the chat layout (a layout no other function takes is not tried), and one with tools or
   ``reasoning=True`` (a text field or the model's native reasoning) keeps ``sample``.
2. each is evaluated on the validation data, cheapest first (sampling before scoring), and only
   when its estimated requests fit what is left of ``Budget(max_calls=...)``; a budget refusal
   ends the step and keeps what was measured. ``calibrated`` first scores the options on the
   content-free inputs (3 inputs x options requests per function) and stores the prior.
3. the optimizer's own choice stays unless a variant ranks higher under
   :func:`~lmprog.optimize.balance.rank_key`: a variant whose predictions collapse to one label
   (while the validation labels do not) never replaces one that does not, whatever its score.

What was tried, with scores, label counts and why a variant was skipped, is recorded in
``result.details["variants"]`` (and in the prompt files' provenance); every evaluated variant is
also a :class:`~lmprog.optimize.Candidate`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from typing import Any

from lmprog.errors import BudgetExceededError, EvaluationError, LMError
from lmprog.format import LAYOUTS, Decode, Layout, calibration_prior, label_options
from lmprog.function import LMFunction, State, can_score, content_free_scores, score_requests
from lmprog.lm import resolve_lm
from lmprog.optimize._base import Candidate, OptimizationResult, Task
from lmprog.optimize.balance import LabelCounts, is_collapsed, label_counts, rank_key

logger = logging.getLogger("lmprog.optimize")

DECODE_ORDER: tuple[Decode, ...] = ("sample", "score", "calibrated")


@dataclasses.dataclass
class _Tried:
    layout: Layout
    decode: Decode
    score: float | None = None
    collapsed: bool = False
    counts: LabelCounts = dataclasses.field(default_factory=dict)
    skipped: str | None = None

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"layout": self.layout, "decode": self.decode}
        if self.skipped is not None:
            out["skipped"] = self.skipped
            return out
        out["score"] = None if self.score is None else round(self.score, 2)
        out["collapsed"] = self.collapsed
        out["label_counts"] = self.counts
        return out


def choose_variant(
    task: Task, result: OptimizationResult, used: Callable[[], int], *, grid: bool = False
) -> None:
    """Try the layout x decoding variants of ``result.states`` on ``task.valset`` and keep the
    best in ``result`` (states, score, label counts); ``used()`` is the requests spent so far.
    ``grid``: score options in every layout, not only in the best one found by sampling."""
    if not task.valset or not result.states:
        return
    functions = [fn for fn in task.functions if fn in result.states]
    scorable = [fn for fn in functions if _scorable(fn)]
    free = [fn for fn in functions if not _chat_only(fn)]  # the functions a layout applies to
    layouts = [
        lay
        for lay in LAYOUTS
        if lay == "chat" or (free and (lay != "completion" or all(_lm(fn).takes_prompt() for fn in free)))
    ]
    decodes = DECODE_ORDER if scorable else DECODE_ORDER[:1]
    first = next(iter(result.states.values()))
    base = _Tried(first.layout, first.decode, result.score)
    base_counts = dict(result.label_counts)
    tried = [base]
    best, best_states = base, dict(result.states)
    base_checked = False

    def combos() -> Iterator[tuple[Layout, Decode]]:
        yield from ((lay, decodes[0]) for lay in layouts)
        scoring = layouts if grid else [best.layout]  # the best so far, once sampling is measured
        yield from ((lay, dec) for dec in decodes[1:] for lay in scoring)

    for layout, decode in combos():
        if (layout, decode) == (base.layout, base.decode):
            continue
        variant = _Tried(layout, decode)
        tried.append(variant)
        cost = _estimate(task, functions, scorable, decode)
        left = None if task.budget.max_calls is None else task.budget.max_calls - used()
        if left is not None and cost > left:
            variant.skipped = f"budget: about {cost} requests needed, {left} left"
            continue
        try:
            states = {
                fn: _variant_state(fn, result.states[fn], layout, decode, fn in scorable) for fn in functions
            }
            evaluation = task.evaluate(task.valset, states)
        except BudgetExceededError as e:
            variant.skipped = f"budget: {e.what} reached"
            break
        except (EvaluationError, LMError) as e:
            variant.skipped = f"failed: {str(e).splitlines()[0]}"
            logger.warning("variant layout=%s decode=%s failed: %s", layout, decode, e)
            continue
        predicted, expected = label_counts(functions, evaluation)
        if not base_checked:  # the validation labels are known from the first evaluation
            base.collapsed, base_checked = is_collapsed(base_counts, expected), True
        variant.score, variant.counts = evaluation.score, predicted
        variant.collapsed = is_collapsed(predicted, expected)
        result.candidates.append(
            Candidate(
                states,
                variant.score,
                label=f"layout={layout} decode={decode}",
                evaluated_on=len(task.valset),
                label_counts=predicted,
                collapsed=variant.collapsed,
            )
        )
        if rank_key(variant.score, variant.collapsed) > rank_key(best.score, best.collapsed):
            best, best_states = variant, states
    base.counts = base_counts
    result.details["variants"] = [t.record() for t in tried]
    if best is not base:
        logger.info("variants: layout=%s decode=%s scored %.1f", best.layout, best.decode, best.score or 0.0)
        result.states, result.score, result.label_counts = best_states, best.score, best.counts


def _lm(fn: LMFunction[..., Any]) -> Any:
    return resolve_lm(fn.lm)


def _chat_only(fn: LMFunction[..., Any]) -> bool:
    """Tools and a History input need chat turns: such a function keeps the chat layout."""
    return bool(fn.tools) or fn.signature.history is not None


def _scorable(fn: LMFunction[..., Any]) -> bool:
    """Scoring chooses an option without a reply: not with reasoning (a text field or native)
    nor with tools (their calls come before the answer)."""
    return (
        not fn.reasoning and not fn.tools and label_options(fn.signature) is not None and can_score(_lm(fn))
    )


def _variant_state(
    fn: LMFunction[..., Any], state: State, layout: Layout, decode: Decode, scorable: bool
) -> State:
    if _chat_only(fn):
        layout = "chat"
    if not scorable or decode == "sample":
        return dataclasses.replace(state, layout=layout, decode="sample", calibration=None)
    scoring = dataclasses.replace(state, layout=layout, decode="score", calibration=None)
    if decode == "score":
        return scoring
    prior = calibration_prior(content_free_scores(fn, scoring))
    return dataclasses.replace(scoring, decode="calibrated", calibration=prior)


def _estimate(
    task: Task, functions: list[LMFunction[..., Any]], scorable: list[LMFunction[..., Any]], decode: Decode
) -> int:
    """Requests one variant needs (before cache hits): one per example and function, or what one
    scored call sends (:func:`~lmprog.function.score_requests`), plus calibration's content-free
    inputs."""
    per_example = 0
    calibration = 0
    for fn in functions:
        if decode != "sample" and fn in scorable:
            n = score_requests(fn, _lm(fn))
            per_example += n
            calibration += 3 * n if decode == "calibrated" else 0
        else:
            per_example += 1
    return per_example * len(task.valset) + calibration
