"""The stored state of a reflective run: its candidates and its iterations, as typed records.

A reflective run (:mod:`lmprog.optimize.reflect`) is a sequence of iterations, each decided by the
seed and the records before it. Every record is written as soon as its step is complete (a
candidate with its validation scores, then the iteration that made it), so a run killed at any
point resumes at the first iteration it had not finished; with the response cache the repeated
part of that iteration costs no request, and the run ends with the prompts of an uninterrupted one.

The records live in one JSON file (``storage=``), one entry per study key (:func:`reflect_key`),
replaced atomically at each write; without a storage they live in memory for the run only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lmprog.errors import UsageError
from lmprog.format import to_jsonable
from lmprog.promptfile import atomic_write_text

__all__ = [
    "START_KEY",
    "STORE_FORMAT",
    "CandidateRecord",
    "IterationRecord",
    "ReflectStore",
    "StudyRecords",
    "candidate_key",
    "iteration_key",
]

#: the layout of the records; bump when it changes (a study in another layout is refused)
STORE_FORMAT = 2  # 2: candidates carry their label counts and collapse


@dataclass(frozen=True)
class CandidateRecord:
    """A configuration evaluated on the whole validation set.

    ``index`` is its place in the run (0: the seed program), ``instructions`` its instruction per
    function id, ``parents`` the candidates it came from (one for an edit, two for a merge),
    ``iteration`` the iteration that made it (-1 for the seed), ``function`` the function id an
    edit changed (None for the seed and merges) and ``values`` its metric value (0-1) on each
    validation example, in the order of the data. ``label_counts`` are its validation predictions
    per label of each categorical function, and ``collapsed`` whether they collapse
    (:func:`~lmprog.optimize.balance.is_collapsed`; a record stored without them reads as not).
    """

    index: int
    instructions: dict[str, str]
    parents: tuple[int, ...]
    iteration: int
    function: str | None
    values: tuple[float, ...]
    label_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    collapsed: bool = False

    @property
    def score(self) -> float:
        """The validation score, 0-100."""
        return 100.0 * sum(self.values) / len(self.values) if self.values else 0.0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "parents": list(self.parents), "values": list(self.values)}

    @classmethod
    def from_json(cls, raw: Any) -> CandidateRecord:
        return cls(
            index=int(raw["index"]),
            instructions={str(k): str(v) for k, v in dict(raw["instructions"]).items()},
            parents=tuple(int(p) for p in raw["parents"]),
            iteration=int(raw["iteration"]),
            function=None if raw["function"] is None else str(raw["function"]),
            values=tuple(float(v) for v in raw["values"]),
            label_counts={
                str(q): {str(label): int(n) for label, n in dict(c).items()}
                for q, c in dict(raw.get("label_counts") or {}).items()
            },
            collapsed=bool(raw.get("collapsed", False)),
        )


@dataclass(frozen=True)
class IterationRecord:
    """One iteration of a reflective run.

    ``kind`` is ``"reflect"`` (an edit of ``function``'s instruction in ``parent``) or ``"merge"``
    (``parent`` and ``other_parent`` combined). ``minibatch`` holds the training-example indices
    run; ``parent_minibatch``/``child_minibatch`` their mean scores (0-100) before and after the
    edit; ``instruction`` the proposed instruction; ``accepted`` whether the gate passed it (then
    ``candidate`` is the new candidate's index and ``val_score``/``parent_val_score`` the
    validation scores of child and parent); ``note`` why an edit was not tried or not accepted;
    ``gate`` the gate's test (``"improve"`` or ``"paired"``; its size is the minibatch's) and
    ``feedback`` the metric's feedback texts on the parent's minibatch runs (what the reflection
    read).
    """

    iteration: int
    kind: str
    parent: int
    function: str | None = None
    other_parent: int | None = None
    minibatch: tuple[int, ...] = ()
    parent_minibatch: float | None = None
    child_minibatch: float | None = None
    instruction: str | None = None
    accepted: bool = False
    candidate: int | None = None
    val_score: float | None = None
    parent_val_score: float | None = None
    note: str | None = None
    gate: str | None = None
    feedback: tuple[str, ...] = ()

    @property
    def false_accept(self) -> bool:
        """An edit the minibatch gate accepted that then did not beat its parent on validation."""
        return (
            self.kind == "reflect"
            and self.accepted
            and self.val_score is not None
            and self.parent_val_score is not None
            and self.val_score <= self.parent_val_score
        )

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "minibatch": list(self.minibatch), "feedback": list(self.feedback)}

    @classmethod
    def from_json(cls, raw: Any) -> IterationRecord:
        data = dict(raw)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["minibatch"] = tuple(int(i) for i in known.get("minibatch", ()))
        known["feedback"] = tuple(str(t) for t in known.get("feedback", ()))
        return cls(**known)


#: the record keys of a study kept record by record (an optuna study's user attributes)
START_KEY = "reflect:start"


def candidate_key(index: int, value: Any) -> tuple[str, Any]:
    return f"reflect:candidate:{index:06d}", value


def iteration_key(iteration: int, value: Any) -> tuple[str, Any]:
    return f"reflect:iteration:{iteration:06d}", value


@dataclass
class StudyRecords:
    demos: dict[str, list[dict[str, Any]]] | None = None
    pools: dict[str, dict[str, Any]] = field(default_factory=dict)
    candidates: list[CandidateRecord] = field(default_factory=list)
    iterations: list[IterationRecord] = field(default_factory=list)


class ReflectStore:
    """Typed get/put of one run's records under ``key``, in the JSON file ``path`` (or in memory
    when ``path`` is None). A malformed file or a study in another layout raises UsageError
    naming the file; nothing is overwritten then."""

    def __init__(self, path: str | Path | None, key: str) -> None:
        self.path = None if path is None else Path(path)
        self.key = key
        self._study = self._load()

    # -- reads ----------------------------------------------------------------------------------------
    def demos(self) -> dict[str, list[dict[str, Any]]] | None:
        """The demos the run starts from, per function id (None: not made yet)."""
        return self._study.demos

    def pools(self) -> dict[str, dict[str, Any]]:
        """The retrieved-demo pools the run starts from (``init="knn"``), per function id, as the
        ``knn:`` sections of prompt files."""
        return dict(self._study.pools)

    def candidates(self) -> list[CandidateRecord]:
        return list(self._study.candidates)

    def iterations(self) -> list[IterationRecord]:
        return list(self._study.iterations)

    # -- writes ---------------------------------------------------------------------------------------
    def put_demos(
        self,
        demos: Mapping[str, Sequence[Mapping[str, Any]]],
        pools: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        """Store the starting demos (and retrieved-demo pools) in one write."""
        self._study.demos = {fid: [to_jsonable(dict(d)) for d in rows] for fid, rows in demos.items()}
        self._study.pools = {fid: to_jsonable(dict(doc)) for fid, doc in (pools or {}).items()}
        self._save([(START_KEY, {"demos": self._study.demos, "pools": self._study.pools})])

    def put_candidate(self, record: CandidateRecord) -> None:
        """Store the seed candidate (the others come with their iteration: :meth:`put_step`)."""
        self._append_candidate(record)
        self._save([candidate_key(record.index, record.to_json())])

    def put_iteration(self, record: IterationRecord) -> None:
        """Store an iteration that made no candidate."""
        self._append_iteration(record)
        self._save([iteration_key(record.iteration, record.to_json())])

    def put_step(self, candidate: CandidateRecord, iteration: IterationRecord) -> None:
        """Store an iteration and the candidate it made in one write: a kill leaves both or neither
        (in an optuna study, two writes: a candidate whose iteration is missing is not read)."""
        self._append_candidate(candidate)
        self._append_iteration(iteration)
        self._save(
            [
                candidate_key(candidate.index, candidate.to_json()),
                iteration_key(iteration.iteration, iteration.to_json()),
            ]
        )

    def _append_candidate(self, record: CandidateRecord) -> None:
        if record.index != len(self._study.candidates):
            raise AssertionError(f"candidate {record.index} stored out of order")
        self._study.candidates.append(record)

    def _append_iteration(self, record: IterationRecord) -> None:
        if record.iteration != len(self._study.iterations):
            raise AssertionError(f"iteration {record.iteration} stored out of order")
        self._study.iterations.append(record)

    # -- the file -------------------------------------------------------------------------------------
    def _all(self) -> dict[str, Any]:
        if self.path is None or not self.path.exists():
            return {"format": STORE_FORMAT, "studies": {}}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise UsageError(f"the reflect storage {self.path} is unreadable ({e}); move it away") from e
        if not isinstance(data, dict) or data.get("format") != STORE_FORMAT:
            found = data.get("format") if isinstance(data, dict) else None
            raise UsageError(
                f"the reflect storage {self.path} has store format {found!r}, and this lmprog reads "
                f"format {STORE_FORMAT} only; pass another storage= path or delete the file"
            )
        return data

    def _load(self) -> StudyRecords:
        raw = self._all()["studies"].get(self.key)
        if raw is None:
            return StudyRecords()
        try:
            demos = raw.get("demos")
            return StudyRecords(
                demos=None
                if demos is None
                else {str(k): [dict(d) for d in v] for k, v in dict(demos).items()},
                pools={str(k): dict(v) for k, v in dict(raw.get("pools") or {}).items()},
                candidates=[CandidateRecord.from_json(c) for c in raw["candidates"]],
                iterations=[IterationRecord.from_json(i) for i in raw["iterations"]],
            )
        except (KeyError, TypeError, ValueError) as e:
            raise UsageError(
                f"the reflect storage {self.path} holds a malformed study {self.key!r} "
                f"({type(e).__name__}: {e}); delete it (or pass another storage=) to start over"
            ) from e

    def _save(self, written: Sequence[tuple[str, Any]] = ()) -> None:
        """Persist the records (``written``: the keys and values just added, for stores that
        write record by record; the file is rewritten whole)."""
        if self.path is None:
            return
        data = self._all()
        study = self._study
        data["studies"][self.key] = {
            "demos": study.demos,
            "pools": study.pools,
            "candidates": [c.to_json() for c in study.candidates],
            "iterations": [i.to_json() for i in study.iterations],
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(data, ensure_ascii=False, indent=1))
