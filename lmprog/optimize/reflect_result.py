"""What a reflective run returns, built from its records: the best candidate by validation score,
every candidate, and :class:`ReflectDetails` (the candidate tree, the front, the iterations with
the best score after each, the accepted edits as diffs, the gate's false-accept rate and, given a
test set, the validation -> test gap). Every score is 0-100.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from lmprog.errors import UsageError
from lmprog.function import LMFunction, State
from lmprog.optimize._base import Candidate, OptimizationResult
from lmprog.optimize.balance import rank_key
from lmprog.optimize.reflect_front import pareto_front
from lmprog.optimize.reflect_store import CandidateRecord, IterationRecord
from lmprog.promptfile import DemoPool

__all__ = ["Edit", "ReflectDetails", "best_candidate", "build_result", "instruction_diff"]


@dataclass(frozen=True)
class Edit:
    """An accepted change of one function's instruction: the iteration, the function id, the
    parent and child candidates, and the unified diff of the instruction."""

    iteration: int
    function: str
    parent: int
    candidate: int
    diff: str


@dataclass
class ReflectDetails(MutableMapping[str, Any]):
    """``OptimizationResult.details`` of a reflective run; read it by attribute.

    ``study`` is the key of the stored run, ``estimated_calls`` the upper estimate shown before
    it, ``candidates`` every validated candidate (the tree: each names its ``parents``), ``front``
    the indices of the Pareto front, ``iterations`` every iteration record, ``best_scores`` the
    best validation score after each iteration, ``edits`` the accepted edits as diffs.
    ``accepted`` counts edits the minibatch gate accepted and ``false_accepts`` those that then did
    not beat their parent on validation; ``false_accept_rate`` is their ratio (None before any
    acceptance). ``test_score``/``baseline_test_score`` are the chosen and the seed program's scores
    on the test set when one was given, and ``val_test_gap`` the chosen one's validation score
    minus its test score. ``gates`` is the gate of each reflection iteration (``"3 improve"``: its
    minibatch size and test) and ``gate_changes`` the iterations where it changed (with
    ``gate="auto"``: after false accepts; see :mod:`~lmprog.optimize.reflect_gate`). ``extra``
    holds what ``optimize()`` adds (``"validation"``...).
    """

    study: str
    estimated_calls: int
    candidates: list[CandidateRecord]
    front: list[int]
    iterations: list[IterationRecord]
    best_scores: list[float]
    edits: list[Edit]
    accepted: int
    false_accepts: int
    test_score: float | None = None
    baseline_test_score: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def false_accept_rate(self) -> float | None:
        return None if not self.accepted else self.false_accepts / self.accepted

    @property
    def gates(self) -> dict[int, str]:
        """The gate of each reflection iteration that ran one, by iteration: ``"<size> <test>"``."""
        return {
            it.iteration: f"{len(it.minibatch)} {it.gate}"
            for it in self.iterations
            if it.kind == "reflect" and it.gate is not None
        }

    @property
    def gate_changes(self) -> list[tuple[int, str]]:
        """(iteration, gate) where the gate differs from the previous reflection's; the first
        reflection's gate comes first."""
        out: list[tuple[int, str]] = []
        for i, gate in self.gates.items():
            if not out or out[-1][1] != gate:
                out.append((i, gate))
        return out

    @property
    def val_test_gap(self) -> float | None:
        best = best_candidate(self.candidates)
        if self.test_score is None or best is None:
            return None
        return best.score - self.test_score

    @classmethod
    def of(cls, result: OptimizationResult) -> ReflectDetails:
        """The details of ``result``, typed; a UsageError when another optimizer made it."""
        if not isinstance(result.details, cls):
            raise UsageError(f"the result of optimizer {result.optimizer!r} has no reflect details")
        return result.details

    def to_dict(self) -> dict[str, Any]:
        """The details as plain data (for JSON)."""
        return {
            "study": self.study,
            "estimated_calls": self.estimated_calls,
            "candidates": [c.to_json() for c in self.candidates],
            "front": list(self.front),
            "iterations": [i.to_json() for i in self.iterations],
            "best_scores": list(self.best_scores),
            "edits": [asdict(e) for e in self.edits],
            "accepted": self.accepted,
            "false_accepts": self.false_accepts,
            "false_accept_rate": self.false_accept_rate,
            "gates": {str(i): g for i, g in self.gates.items()},
            "gate_changes": [list(c) for c in self.gate_changes],
            "test_score": self.test_score,
            "baseline_test_score": self.baseline_test_score,
            "val_test_gap": self.val_test_gap,
            **self.extra,
        }

    # -- the mapping holds only what optimize() adds ----------------------------------------------
    def __getitem__(self, key: str) -> Any:
        return self.extra[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.extra[key] = value

    def __delitem__(self, key: str) -> None:
        del self.extra[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.extra)

    def __len__(self) -> int:
        return len(self.extra)


def instruction_diff(before: str, after: str, name: str) -> str:
    """A unified diff of two instructions (split at sentence ends so a diff shows what changed)."""

    def lines(text: str) -> list[str]:
        return [s.strip() + "\n" for s in text.replace(". ", ".\n").splitlines() if s.strip()]

    return "".join(difflib.unified_diff(lines(before), lines(after), f"{name} (before)", f"{name} (after)"))


def best_candidate(candidates: Sequence[CandidateRecord]) -> CandidateRecord | None:
    """The highest validation score among those that do not collapse (any, when all do;
    :func:`~lmprog.optimize.balance.rank_key`); the earliest among equals."""
    best: CandidateRecord | None = None
    for c in candidates:
        if best is None or rank_key(c.score, c.collapsed) > rank_key(best.score, best.collapsed):
            best = c
    return best


def states_of(
    record: CandidateRecord,
    functions: Sequence[LMFunction[..., Any]],
    ids: Sequence[str],
    demos: Mapping[str, Sequence[Mapping[str, Any]]],
    pools: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[LMFunction[..., Any], State]:
    """The lm_function states of a candidate: its instructions (None where it is the docstring,
    so prompt files keep the docstring), the run's demos and its retrieved-demo pools (``knn:``
    sections, as stored)."""
    out: dict[LMFunction[..., Any], State] = {}
    for fn, fid in zip(functions, ids, strict=True):
        text = record.instructions[fid]
        doc = (pools or {}).get(fid)
        out[fn] = State(
            instruction=None if text == fn.signature.instruction else text,
            demos=tuple(dict(d) for d in demos.get(fid, ())),
            pool=None if doc is None else pool_of(doc),
        )
    return out


def pool_of(doc: Mapping[str, Any]) -> DemoPool:
    """The pool a stored ``knn:`` section describes."""
    return DemoPool(
        k=int(doc["k"]),
        demos=tuple(dict(d) for d in doc["pool"]),
        fields=tuple(str(f) for f in doc["fields"]),
        embedder=doc.get("embedder"),
    )


def build_result(
    *,
    functions: Sequence[LMFunction[..., Any]],
    ids: Sequence[str],
    demos: Mapping[str, Sequence[Mapping[str, Any]]],
    pools: Mapping[str, Mapping[str, Any]] | None = None,
    candidates: Sequence[CandidateRecord],
    iterations: Sequence[IterationRecord],
    study: str,
    estimated_calls: int,
    seed: int,
    stopped: str | None,
) -> OptimizationResult:
    by_index = {c.index: c for c in candidates}
    best_scores: list[float] = []
    edits: list[Edit] = []
    for it in iterations:
        known = [c for c in candidates if c.iteration <= it.iteration]
        top = best_candidate(known)
        best_scores.append(top.score if top else 0.0)
        if it.kind == "reflect" and it.candidate is not None and it.function is not None:
            before = by_index[it.parent].instructions[it.function]
            after = by_index[it.candidate].instructions[it.function]
            edits.append(
                Edit(
                    it.iteration,
                    it.function,
                    it.parent,
                    it.candidate,
                    instruction_diff(before, after, it.function),
                )
            )
    accepted = [it for it in iterations if it.kind == "reflect" and it.accepted]
    details = ReflectDetails(
        study=study,
        estimated_calls=estimated_calls,
        candidates=list(candidates),
        front=list(pareto_front(candidates)),
        iterations=list(iterations),
        best_scores=best_scores,
        edits=edits,
        accepted=len(accepted),
        false_accepts=sum(it.false_accept for it in accepted),
    )
    best = best_candidate(candidates)
    label = {0: "seed"}
    scored = [
        Candidate(
            states_of(c, functions, ids, demos, pools),
            c.score,
            label.get(c.index, f"candidate {c.index}"),
            len(c.values),
            label_counts=c.label_counts,
            collapsed=c.collapsed,
        )
        for c in candidates
    ]
    return OptimizationResult(
        "reflect",
        scored[best.index].states if best is not None else {fn: State() for fn in functions},
        score=best.score if best is not None else None,
        label_counts=dict(best.label_counts) if best is not None else {},
        baseline_score=candidates[0].score if candidates else None,
        candidates=scored,
        seed=seed,
        stopped_by=stopped,
        details=details,
    )
