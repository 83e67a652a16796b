"""What a MIPRO run returns, built from its stored records and studies: the fully evaluated
candidates, the best configuration, and :class:`MiproDetails` (the trial history, every
instruction candidate, the proposals the guards rejected and, cost-aware, the Pareto front).

Every score here is 0-100, like ``EvaluationResult.score``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from lmprog.errors import UsageError
from lmprog.function import LMFunction, State
from lmprog.optimize._base import Candidate, OptimizationResult
from lmprog.optimize.mipro_plan import MiproPlan
from lmprog.optimize.mipro_store import BASELINE, FullEvaluation
from lmprog.optimize.search import Space

if TYPE_CHECKING:
    import optuna

__all__ = ["MiproDetails", "ParetoPoint", "TrialRecord", "build_result"]


@dataclass(frozen=True)
class TrialRecord:
    """One finished minibatch trial: its place in the run, its round, its score (0-100) and the
    key of the configuration it tried."""

    number: int
    round: int
    score: float
    config_key: str | None


@dataclass(frozen=True)
class ParetoPoint:
    """A configuration on the score / prompt-size front of a cost-aware run."""

    round: int
    config_key: str | None
    score: float
    prompt_tokens: float


@dataclass
class MiproDetails(MutableMapping[str, Any]):
    """``OptimizationResult.details`` of a MIPRO run; read it by attribute.

    ``study`` is the optuna study holding the run, ``estimated_calls`` the upper estimate of LM
    calls shown before it, ``trials`` the finished minibatch trials, ``rejected_proposals`` the
    (proposal, reason) pairs the guards refused, ``instructions`` every instruction candidate per
    function id (the original first), ``trial_history`` every finished trial in order, ``pareto``
    the score / prompt-size front of a cost-aware run (None otherwise), ``plan`` how the run
    sized its phases to its call budget (:class:`~lmprog.optimize.mipro_plan.MiproPlan`; None
    in results made without one). ``extra`` holds the
    entries ``optimize()`` adds to every optimizer's details (``"validation"``,
    ``"committed_score"``).

    Deprecated: reading the fields by key (``details["trials"]``) still works, with a
    DeprecationWarning, and will be removed in the next release; :meth:`to_dict` gives the plain
    dict of the earlier versions.
    """

    study: str
    estimated_calls: int
    trials: int
    rejected_proposals: list[tuple[str, str]]
    instructions: dict[str, list[str]]
    trial_history: list[TrialRecord]
    pareto: list[ParetoPoint] | None = None
    plan: MiproPlan | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, result: OptimizationResult) -> MiproDetails:
        """The details of ``result``, typed; a UsageError when another optimizer made it."""
        if not isinstance(result.details, cls):
            raise UsageError(f"the result of optimizer {result.optimizer!r} has no MIPRO details")
        return result.details

    def to_dict(self) -> dict[str, Any]:
        """The details as plain data (the dict ``details`` was before it was typed)."""
        out: dict[str, Any] = {
            "study": self.study,
            "estimated_calls": self.estimated_calls,
            "trials": self.trials,
            "rejected_proposals": list(self.rejected_proposals),
            "instructions": {fid: list(v) for fid, v in self.instructions.items()},
            "trial_history": [asdict(t) for t in self.trial_history],
        }
        if self.pareto is not None:
            out["pareto"] = [asdict(p) for p in self.pareto]
        if self.plan is not None:
            out["plan"] = self.plan.to_dict()
        return {**out, **self.extra}

    # -- the deprecated dict interface ----------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        if key in self.extra:
            return self.extra[key]
        if key in _FIELDS and self._present(key):
            _deprecated(key)
            return self.to_dict()[key]
        raise KeyError(key)

    def __setitem__(self, key: str, value: Any) -> None:
        if key in _FIELDS:
            raise TypeError(f"MiproDetails.{key} is a typed field: set the attribute, not the key")
        self.extra[key] = value

    def __delitem__(self, key: str) -> None:
        if key in _FIELDS:
            raise TypeError(f"MiproDetails.{key} is a typed field and cannot be deleted")
        del self.extra[key]

    def __contains__(self, key: object) -> bool:
        return key in self.extra or (isinstance(key, str) and key in _FIELDS and self._present(key))

    def __iter__(self) -> Iterator[str]:
        yield from (k for k in _FIELDS if self._present(k))
        yield from self.extra

    def __len__(self) -> int:
        return sum(1 for k in _FIELDS if self._present(k)) + len(self.extra)

    def _present(self, key: str) -> bool:
        """Whether field ``key`` is in the dict view: the optional ones only when set."""
        return key not in _OPTIONAL or getattr(self, key) is not None


_FIELDS = tuple(f.name for f in fields(MiproDetails) if f.name != "extra")
_OPTIONAL = ("pareto", "plan")


def _deprecated(key: str) -> None:
    warnings.warn(
        f"reading MIPRO details by key (details[{key!r}]) is deprecated and will be removed in the "
        f"next release: read the attribute (details.{key}), or details.to_dict() for plain data",
        DeprecationWarning,
        stacklevel=3,
    )


def build_result(
    *,
    functions: Sequence[LMFunction[..., Any]],
    ids: Sequence[str],
    valset_size: int,
    seed: int,
    evaluations: Sequence[FullEvaluation],
    spaces: Mapping[int, Space],
    studies: Mapping[int, optuna.Study],
    study: str,
    estimated_calls: int,
    rejected_proposals: Sequence[tuple[str, str]],
    cost_aware: bool,
    stopped: str | None,
    plan: MiproPlan | None = None,
) -> OptimizationResult:
    """The result of a MIPRO run: the best configuration by full evaluation (the baseline
    included; one whose predictions collapsed to one label only when every one did), every fully
    evaluated candidate (in the order the run made them), and the details: the trial history and
    (``cost_aware``) the Pareto front, read from the rounds' ``studies``."""
    candidates: list[Candidate] = []
    best: Candidate | None = None
    baseline = None
    for entry in evaluations:
        space = spaces.get(entry.round)
        if space is None:  # a round this run did not reach (stopped early)
            continue
        label = "baseline" if entry.round == BASELINE else f"round {entry.round}"
        cand = Candidate(space.states(entry.config), entry.score, label, valset_size)
        cand.prompt_tokens = entry.prompt_tokens
        cand.label_counts = {q: dict(c) for q, c in entry.label_counts.items()}
        cand.collapsed = entry.collapsed
        candidates.append(cand)
        if entry.round == BASELINE:
            baseline = cand.score
        if best is None or _better(cand, best):
            best = cand
    states = best.states if best is not None else {fn: State() for fn in functions}
    history = trial_history(studies)
    details = MiproDetails(
        study=study,
        estimated_calls=estimated_calls,
        trials=len(history),
        rejected_proposals=list(rejected_proposals),
        instructions=all_instructions(spaces, ids),
        trial_history=history,
        pareto=pareto_front(studies) if cost_aware else None,
        plan=plan,
    )
    return OptimizationResult(
        "mipro",
        states,
        score=best.score if best else None,
        baseline_score=baseline,
        candidates=candidates,
        seed=seed,
        stopped_by=stopped,
        details=details,
        label_counts=best.label_counts if best else {},
    )


def trial_history(studies: Mapping[int, optuna.Study]) -> list[TrialRecord]:
    """Every finished minibatch trial, round by round, in trial order."""
    import optuna

    history: list[TrialRecord] = []
    for r in sorted(studies):
        for t in studies[r].get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            if t.values:
                key = t.user_attrs.get("config_key")
                history.append(TrialRecord(len(history), r, float(t.values[0]), key))
    return history


def all_instructions(spaces: Mapping[int, Space], ids: Sequence[str]) -> dict[str, list[str]]:
    """Every instruction candidate per function id over all rounds, in order of appearance."""
    out: dict[str, list[str]] = {fid: [] for fid in ids}
    for r in sorted(spaces):
        for fid in ids:
            out[fid].extend(t for t in spaces[r].instructions[fid] if t not in out[fid])
    return out


def pareto_front(studies: Mapping[int, optuna.Study]) -> list[ParetoPoint]:
    """The best trials of every round's two-objective study, best score first."""
    front = [
        ParetoPoint(r, t.user_attrs.get("config_key"), float(t.values[0]), float(t.values[1]))
        for r in sorted(studies)
        for t in studies[r].best_trials
    ]
    return sorted(front, key=lambda p: (-p.score, p.prompt_tokens))


def _better(a: Candidate, b: Candidate) -> bool:
    """Not collapsed to one label before collapsed (``balance.rank_key``), then the higher score,
    then fewer prompt tokens."""
    if a.collapsed != b.collapsed:
        return not a.collapsed
    if (a.score or 0) != (b.score or 0):
        return (a.score or 0) > (b.score or 0)
    return (a.prompt_tokens or 0) < (b.prompt_tokens or 0)
