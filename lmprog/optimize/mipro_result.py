"""What a MIPRO run returns, read from its stored studies: the fully evaluated candidates, the best
configuration, the trial history, every instruction candidate and (cost-aware) the Pareto front."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lmprog.function import State
from lmprog.optimize._base import Candidate, OptimizationResult
from lmprog.optimize.search import config_from_attrs

if TYPE_CHECKING:
    from lmprog.optimize.mipro import _Run

BASELINE = -1  # the round number under which the original program's full evaluation is stored


def build_result(run: _Run, stopped: str | None, estimate: int, key: str) -> OptimizationResult:
    """The result of a MIPRO run: the best configuration by full evaluation (the baseline
    included), every fully evaluated candidate, and what the search did."""
    evals = run.full_evals
    candidates: list[Candidate] = []
    best: Candidate | None = None
    baseline = None
    for entry in evals.values():
        r = int(entry["round"])
        space = run.spaces.get(r)
        if space is None:
            continue
        config = config_from_attrs(entry["config"])
        label = "baseline" if r == BASELINE else f"round {r}"
        cand = Candidate(space.states(config), float(entry["score"]), label, len(run.task.valset))
        cand.prompt_tokens = entry.get("prompt_tokens")
        candidates.append(cand)
        if r == BASELINE:
            baseline = cand.score
        if best is None or _better(cand, best):
            best = cand
    states = best.states if best is not None else {fn: State() for fn in run.task.functions}
    details: dict[str, Any] = {
        "study": key,
        "estimated_calls": estimate,
        "trials": run.total_trials(),
        "rejected_proposals": list(run.proposer.rejections) if run.proposer else [],
        "instructions": _all_instructions(run),
        "trial_history": _trial_history(run),
    }
    if run.opt.cost_aware:
        details["pareto"] = _pareto(run)
    warnings: list[str] = []
    if run.opt.num_demo_sets > 0 and run.demo_sets:  # the demo sets were made (not cut by a cap)
        counts = {
            fn: len(run.demo_sets.get(fid, [[]])) - 1
            for fn, fid in zip(run.task.functions, run.ids, strict=True)
        }
        warnings = run.opt.bootstrapper.demo_warnings(run.task, counts, None, "mipro", stopped)
    return OptimizationResult(
        "mipro",
        states,
        score=best.score if best else None,
        baseline_score=baseline,
        candidates=candidates,
        seed=run.task.seed,
        stopped_by=stopped,
        details=details,
        warnings=warnings,
    )


def _trial_history(run: _Run) -> list[dict[str, Any]]:
    """Every finished minibatch trial, in order: round, score, configuration key."""
    import optuna

    history: list[dict[str, Any]] = []
    for r in sorted(k for k in run.spaces if k != BASELINE):
        for t in run.study_of(r).get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            if t.values:
                history.append(
                    {
                        "number": len(history),
                        "round": r,
                        "score": float(t.values[0]),
                        "config_key": t.user_attrs.get("config_key"),
                    }
                )
    return history


def _all_instructions(run: _Run) -> dict[str, list[str]]:
    """Every instruction candidate per function over all rounds, in order of appearance."""
    out: dict[str, list[str]] = {fid: [] for fid in run.ids}
    for r in sorted(run.spaces):
        for fid in run.ids:
            out[fid].extend(t for t in run.spaces[r].instructions[fid] if t not in out[fid])
    return out


def _pareto(run: _Run) -> list[dict[str, Any]]:
    front = []
    for r in sorted(run.spaces):
        if r == BASELINE:
            continue
        for t in run.study_of(r).best_trials:
            front.append(
                {
                    "round": r,
                    "config_key": t.user_attrs.get("config_key"),
                    "score": t.values[0],
                    "prompt_tokens": t.values[1],
                }
            )
    return sorted(front, key=lambda p: (-p["score"], p["prompt_tokens"]))


def _better(a: Candidate, b: Candidate) -> bool:
    if (a.score or 0) != (b.score or 0):
        return (a.score or 0) > (b.score or 0)
    return (a.prompt_tokens or 0) < (b.prompt_tokens or 0)
