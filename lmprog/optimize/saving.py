"""When an optimization may write prompt files: only over committed files it beats.

Prompt files are reviewed and committed like code, and a run that measured nothing, or measured
less, must never replace them. Before ``optimize()`` saves, :func:`save_verdict` compares the
result with the *committed configuration*: the state of every lm_function from its prompt file (a
function without a usable file runs on its docstring).

- No committed file (or only stale/corrupt ones, which no longer fit their functions): the result
  is written, unless it was not measured because the budget ran out.
- Committed files exist: the result is written only when its validation score is strictly higher
  than the committed configuration's score on the same validation data. That score is the one
  recorded in the files' provenance when they all carry this run's validation key (same data,
  metric, models, program and lmprog format, see :func:`identity.validation_key`); otherwise the
  committed configuration is re-measured on this run's validation set (free when the response
  cache has it; it counts against the budget).
- An unmeasured result (no validation set, or the budget ran out first) never replaces committed
  files.
"""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lmprog import promptfile
from lmprog._version import __version__
from lmprog.errors import BudgetExceededError, PromptFileError
from lmprog.function import LMFunction, State
from lmprog.lm import configured_model
from lmprog.optimize._base import OptimizationResult, Task
from lmprog.optimize.identity import validation_key

logger = logging.getLogger("lmprog.optimize")


def committed(functions: list[LMFunction[..., Any]]) -> dict[LMFunction[..., Any], dict[str, Any]]:
    """The usable committed prompt file of each function that has one: its parsed document."""
    found: dict[LMFunction[..., Any], dict[str, Any]] = {}
    for fn in functions:
        path = promptfile.prompt_path(fn)
        if not path.exists():
            continue
        try:
            doc = promptfile.read(path)
        except PromptFileError as e:
            logger.warning("%s is unreadable (%s): the optimizer may replace it", path, e)
            continue
        if doc["function"] != promptfile.function_id(fn) or doc["signature_hash"] != fn.signature_hash:
            logger.info("%s no longer fits %s: the optimizer may replace it", path, fn.signature.qualname)
            continue
        found[fn] = doc
    return found


def recorded_score(
    docs: Mapping[LMFunction[..., Any], Mapping[str, Any]], functions: list[LMFunction[..., Any]], key: str
) -> float | None:
    """The committed configuration's recorded validation score, when every function has a file
    written by one run measured under ``key``; else None (not comparable)."""
    scores = set()
    for fn in functions:
        doc = docs.get(fn)
        prov = (doc or {}).get("provenance") or {}
        validation = prov.get("validation") or {}
        if doc is None or validation.get("key") != key or prov.get("score") is None:
            return None
        scores.add(float(prov["score"]))
    return scores.pop() if len(scores) == 1 else None


def save_verdict(task: Task, result: OptimizationResult) -> str | None:
    """Why ``result`` must not be written (the committed files are kept), or None to write it.
    May evaluate the committed configuration on ``task.valset``."""
    if result.score is None and result.stopped_by is not None:
        return f"not measured: the budget ({result.stopped_by}) ran out before any validation score"
    docs = committed(task.functions)
    if not docs:
        return None
    if result.score is None:
        return (
            "not measured (no validation set), and committed prompt files exist; pass a validation "
            "set to compare with them, or delete them to start over"
        )
    states = {fn: State() for fn in task.functions}
    for fn in docs:
        loaded = promptfile.load_state(fn)
        if loaded is not None:
            states[fn] = loaded
    if all(result.states.get(fn, State()) == states[fn] for fn in task.functions):
        return None  # the committed prompts are the result: rewriting them loses nothing
    key = validation_key(task)
    baseline = recorded_score(docs, task.functions, key)
    how = "recorded"
    if baseline is None:
        how = "re-measured"
        known = [c.score for c in result.candidates if c.score is not None and c.states == states]
        if known:
            baseline = known[0]
        else:
            try:
                baseline = task.evaluate(task.valset, states).score
            except BudgetExceededError as e:
                result.stopped_by = result.stopped_by or e.what
                return (
                    f"the budget ({e.what}) ran out while measuring the committed prompt files on "
                    "the validation data, so the result cannot be shown to beat them"
                )
    result.details["committed_score"] = baseline
    if result.score > baseline:
        return None
    return (
        f"the optimized score {result.score:.1f} does not beat the committed prompt files' "
        f"{baseline:.1f} ({how}) on the same validation data; they are kept"
    )


def validation_provenance(task: Task) -> dict[str, Any] | None:
    """What the provenance records about the validation score: its comparability key and size."""
    if not task.valset:
        return None
    return {"key": validation_key(task), "examples": len(task.valset)}


def save_result(result: OptimizationResult) -> list[Path]:
    """Write the prompt file of every function an optimization chose a state for."""
    prov_common: dict[str, Any] = {
        "optimizer": result.optimizer,
        "score": None if result.score is None else round(result.score, 2),
        "baseline_score": None if result.baseline_score is None else round(result.baseline_score, 2),
        "seed": result.seed,
        "model": configured_model(),
        "lm_calls": result.usage.calls,
        "lm_requests": result.usage.requests,
        "cost": round(result.usage.cost, 6),
        "lmprog_version": __version__,
        "date": _dt.date.today().isoformat(),
    }
    if result.details.get("validation"):  # what makes the recorded score comparable (saving.py)
        prov_common["validation"] = dict(result.details["validation"])
    if result.details.get("variants"):  # the layouts and decodings tried (variants.py)
        prov_common["variants"] = list(result.details["variants"])
    return [promptfile.write(fn, state, prov_common) for fn, state in result.states.items()]
