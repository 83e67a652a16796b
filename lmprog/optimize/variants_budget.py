"""The variants step's budget: the requests it is expected to send, and the share of
``Budget(max_calls=N)`` set aside for it before the optimizer runs (see :mod:`.variants` for the
step itself).

With ``Budget(max_calls=N)`` and a validation set, ``optimize()`` plans the step into the budget
before the optimizer starts (:func:`plan_reserve`): it sets aside the requests of the steps of the
order (see :mod:`.variants`) that fit, in order, in at most :data:`RESERVE_SHARE` of ``N`` (whole
steps only, a step that does not fit is left out: the evaluation of a result the optimizer leaves
unmeasured, which labeled, bootstrap and knn do, without which nothing is set aside; then
``score`` + ``calibrated`` in the optimizer's layout; then sampling in each other layout; then
scoring in one other layout, or in all of them for ``"all"``), and runs the optimizer under ``N``
minus that reserve: the optimizer sees the smaller ``max_calls`` and plans for it. The reserve
never leaves the optimizer less than it accepts (:meth:`Optimizer.min_calls`: MIPRO's smallest
plan); it shrinks by whole steps, down to none, instead. An optimizer that spends its share stops
as on any cap (``result.stopped_by == "max_calls"``), and the step still runs; after the optimizer
it spends what is left of ``N``, reserve or not. Half, not less: on the embedded model scoring
plus calibration without a response cache costs two passes over the validation set, and a third of
a budget that MIPRO's smallest plan fits into rarely holds two. ``max_cost`` and ``max_trials``
reserve nothing: the price of a request is unknown before the first one, and a run the optimizer
ends on either cap skips the step, as before.

:func:`estimate` counts a variant's requests before cache hits: one per validation example and
function, or what one scored call sends (:func:`~lmprog.function.score_requests`), plus
calibration's content-free inputs. The helpers below say which layouts the step tries and which
functions it may score; :mod:`.variants` uses the same ones, so the plan and the step agree.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from lmprog.format import LAYOUTS, Decode, Layout, label_options
from lmprog.function import LMFunction, can_score, score_requests
from lmprog.lm import resolve_lm
from lmprog.optimize._base import Task

#: the largest share of ``Budget.max_calls`` set aside for the step (see the module docstring)
RESERVE_SHARE = 0.5


@dataclasses.dataclass(frozen=True)
class Reserve:
    """The requests of ``Budget(max_calls=...)`` set aside for the step before the optimizer
    runs (:func:`plan_reserve`), and the steps of the order they cover."""

    calls: int = 0
    covers: tuple[str, ...] = ()
    #: what every step would need
    wanted: int = 0
    #: the ``max_calls`` the optimizer runs under (None: no call cap)
    optimizer_max_calls: int | None = None

    def record(self) -> dict[str, Any]:
        return {
            "reserve": self.calls,
            "covers": list(self.covers),
            "wanted": self.wanted,
            "optimizer_max_calls": self.optimizer_max_calls,
        }


def plan_reserve(task: Task, *, measure: bool, least: int = 0, grid: bool = False) -> Reserve:
    """The reserve of ``task``'s call budget for the step: the whole steps of the order, in
    order, that fit in :data:`RESERVE_SHARE` of ``max_calls`` and leave the optimizer at least
    ``least`` calls (a step that does not fit is left out, the next ones may fit). ``measure``:
    the first step evaluates the optimizer's result; when that does not fit, nothing is set aside
    (an unmeasured result is not compared with variants)."""
    cap = task.budget.max_calls
    if cap is None or not task.valset:
        return Reserve(optimizer_max_calls=cap)
    steps = _steps(task, measure=measure, grid=grid)
    room = min(int(cap * RESERVE_SHARE), cap - least)
    calls, covers = 0, []
    for i, (name, cost) in enumerate(steps):
        if calls + cost <= room:
            calls += cost
            covers.append(name)
        elif i == 0 and measure:
            break
    return Reserve(calls, tuple(covers), sum(cost for _, cost in steps), cap - calls)


def _steps(task: Task, *, measure: bool, grid: bool) -> list[tuple[str, int]]:
    """The steps of the order with their estimated requests, before the optimizer ran."""
    functions = task.functions
    scorable = [fn for fn in functions if is_scorable(fn)]
    sample = estimate(task, functions, scorable, "sample")
    scoring = estimate(task, functions, scorable, "score") + estimate(
        task, functions, scorable, "calibrated", repeat=True
    )
    others = len(step_layouts(functions)) - 1
    steps = [("evaluation", sample)] if measure else []
    if scorable:
        steps.append(("score and calibrated in the optimizer's layout", scoring))
    steps.extend((f"sample in other layout {k} of {others}", sample) for k in range(1, others + 1))
    if scorable and others:
        n = others if grid else 1
        steps.append((f"score and calibrated in {n} other layout(s)", n * scoring))
    return steps


def step_layouts(functions: list[LMFunction[..., Any]]) -> list[Layout]:
    """The layouts the step tries: chat, and the others when some function can take them
    (``completion`` only when every such function's LM continues plain text)."""
    free = [fn for fn in functions if not chat_only(fn)]  # the functions a layout applies to
    return [
        lay
        for lay in LAYOUTS
        if lay == "chat" or (free and (lay != "completion" or all(lm_of(fn).takes_prompt() for fn in free)))
    ]


def lm_of(fn: LMFunction[..., Any]) -> Any:
    return resolve_lm(fn.lm)


def chat_only(fn: LMFunction[..., Any]) -> bool:
    """Tools and a History input need chat turns: such a function keeps the chat layout."""
    return bool(fn.tools) or fn.signature.history is not None


def is_scorable(fn: LMFunction[..., Any]) -> bool:
    """Scoring chooses an option without a reply: not with reasoning (a text field or native)
    nor with tools (their calls come before the answer)."""
    return (
        not fn.reasoning and not fn.tools and label_options(fn.signature) is not None and can_score(lm_of(fn))
    )


def estimate(
    task: Task,
    functions: list[LMFunction[..., Any]],
    scorable: list[LMFunction[..., Any]],
    decode: Decode,
    *,
    repeat: bool = False,
) -> int:
    """Requests one variant needs (before cache hits): one per example and function, or what one
    scored call sends (:func:`~lmprog.function.score_requests`), plus calibration's content-free
    inputs. ``repeat``: the layout's scoring requests were sent already."""
    if repeat and decode != "sample" and len(functions) == 1:
        # after "score" in the same layout: the same scoring requests again, served by the
        # response cache of an LM that keeps one (in a pipeline, a changed label changes the
        # next function's requests: counted in full, as without a cache)
        cached = [fn for fn in scorable if lm_of(fn).caches()]
        return estimate(task, functions, scorable, decode) - estimate(task, cached, cached, "score")
    per_example = 0
    calibration = 0
    for fn in functions:
        if decode != "sample" and fn in scorable:
            n = score_requests(fn, lm_of(fn))
            per_example += n
            calibration += 3 * n if decode == "calibrated" else 0
        else:
            per_example += 1
    return per_example * len(task.valset) + calibration
