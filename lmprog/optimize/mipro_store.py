"""The stored state of a MIPRO run: typed records kept as user attributes of one optuna study.

What a run computes once and must find again after a kill (the bootstrapped demo sets, the data
summary, each round's instruction candidates, every full evaluation) is written as soon as it is
computed, each kind through its own typed ``put`` and read back through its typed getter. Every
record has a key of its own, and a full evaluation is one record per configuration, so several
workers writing to one study (one SQLite file, or any optuna RDB storage) never overwrite each
other's records: a write replaces only the record under the same key, whose content is the same
whichever worker computed it.

The records' layout is versioned (:data:`STORE_FORMAT`, part of the MIPRO study key). A study
written in another layout is refused with a message saying what to do; it is never read as if
it were this one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from lmprog.errors import UsageError
from lmprog.promptfile import DemoPool, pool_from_doc, pool_problems

if TYPE_CHECKING:
    import optuna

__all__ = ["BASELINE", "STORE_FORMAT", "DemoSets", "FullEvaluation", "MiproStore"]

T = TypeVar("T")

#: the layout of the records; bump when it changes (older studies are then refused, not misread)
STORE_FORMAT = 2
#: the round number under which the original program's full evaluation is stored
BASELINE = -1

#: per function id, its demo sets; each demo set is a list of demo rows, the first set is empty
DemoSets = dict[str, list[list[dict[str, Any]]]]

_FORMAT_KEY = "lmprog_store_format"
_DEMO_SETS = "demo_sets"
_SUMMARY = "data_summary"
_POOLS = "pools"
_INSTRUCTIONS = "instructions:r"
_FULL_EVAL = "full_eval:"
_DUE_DONE = "full_eval_due:"
# the keys of the layout before STORE_FORMAT 2 (one dict of full evaluations, rewritten whole)
_LEGACY_KEYS = ("full_evals", "full_evals_done")


@dataclass(frozen=True)
class FullEvaluation:
    """One configuration evaluated on the whole validation set.

    ``key`` identifies the configuration (:meth:`Space.key`), ``config`` holds its (instruction
    index, demo-set index) per function id in round ``round``'s candidates (``BASELINE`` for the
    original program), ``due`` names the point of the search that asked for it (``"baseline"``,
    ``"r0-4"`` after four trials of round 0, ``"r0-end"``) and ``step`` is that point's number of
    finished trials (None at the end of a round). ``score`` is 0-100; ``prompt_tokens`` the mean
    prompt tokens per example. ``label_counts`` are the predictions per label of each categorical
    function, and ``collapsed`` whether they collapsed to one label (see ``balance``); records
    stored before these existed read as not collapsed. ``cost`` and ``requests`` are what the
    evaluation spent at the provider when it was made (cache hits are free); a ``max_cost``
    plan prices calls by the baseline's (see :mod:`~lmprog.optimize.mipro_plan`).
    """

    key: str
    round: int
    config: Mapping[str, tuple[int, int]]
    score: float
    prompt_tokens: float
    due: str
    step: int | None = None
    label_counts: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    collapsed: bool = False
    cost: float = 0.0
    requests: int = 0

    def order(self) -> tuple[int, float, str]:
        """Where the record falls in the run: by round, then by the point that asked for it.
        Every worker, and a resumed run, sees the records in the order one uninterrupted run
        made them."""
        return (self.round, math.inf if self.step is None else self.step, self.key)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "round": self.round,
            "config": {fid: [ii, di] for fid, (ii, di) in self.config.items()},
            "score": self.score,
            "prompt_tokens": self.prompt_tokens,
            "due": self.due,
            "step": self.step,
            "label_counts": {q: dict(c) for q, c in self.label_counts.items()},
            "collapsed": self.collapsed,
            "cost": self.cost,
            "requests": self.requests,
        }

    @classmethod
    def from_json(cls, raw: Any) -> FullEvaluation:
        step = raw["step"]
        return cls(
            key=str(raw["key"]),
            round=int(raw["round"]),
            config={str(fid): (int(v[0]), int(v[1])) for fid, v in dict(raw["config"]).items()},
            score=float(raw["score"]),
            prompt_tokens=float(raw["prompt_tokens"]),
            due=str(raw["due"]),
            step=None if step is None else int(step),
            label_counts={
                str(q): {str(label): int(n) for label, n in dict(c).items()}
                for q, c in dict(raw.get("label_counts") or {}).items()
            },
            collapsed=bool(raw.get("collapsed", False)),
            cost=float(raw.get("cost", 0.0)),
            requests=int(raw.get("requests", 0)),
        )


class MiproStore:
    """Typed get/put of a MIPRO run's records in the user attributes of ``study``.

    Opening the store checks the study's layout: a study holding records of another layout
    raises :class:`~lmprog.errors.UsageError`; a new study is marked with :data:`STORE_FORMAT`.
    Getters return None for what was not stored yet. Every ``put`` writes one key; safe with
    several workers (processes or machines) on one study.
    """

    def __init__(self, study: optuna.Study) -> None:
        self.study = study
        attrs = study.user_attrs
        found = attrs.get(_FORMAT_KEY)
        if found is None and attrs:
            raise self._refuse("an older lmprog (before the typed store)", attrs)
        if found is not None and found != STORE_FORMAT:
            raise self._refuse(f"store format {found!r}", attrs)
        if found is None:
            study.set_user_attr(_FORMAT_KEY, STORE_FORMAT)

    @property
    def name(self) -> str:
        return self.study.study_name

    # -- demo sets and the data summary -----------------------------------------------------------
    def demo_sets(self) -> DemoSets | None:
        raw = self._get(_DEMO_SETS)
        if raw is None:
            return None
        return self._read(_DEMO_SETS, raw, _demo_sets_from_json)

    def put_demo_sets(self, sets: DemoSets) -> None:
        plain = {fid: [[dict(d) for d in demo_set] for demo_set in v] for fid, v in sets.items()}
        self.study.set_user_attr(_DEMO_SETS, plain)

    def pools(self) -> dict[str, DemoPool] | None:
        """The pools of the retrieved demo sets, per function id (those that have one)."""
        raw = self._get(_POOLS)
        return None if raw is None else self._read(_POOLS, raw, _pools_from_json)

    def put_pools(self, pools: Mapping[str, DemoPool]) -> None:
        self.study.set_user_attr(_POOLS, {fid: pool.to_doc() for fid, pool in pools.items()})

    def data_summary(self) -> str | None:
        raw = self._get(_SUMMARY)
        return None if raw is None else self._read(_SUMMARY, raw, _text)

    def put_data_summary(self, summary: str) -> None:
        self.study.set_user_attr(_SUMMARY, summary)

    # -- instruction candidates, per round -------------------------------------------------------------
    def instructions(self, round: int) -> dict[str, list[str]] | None:
        """Round ``round``'s instruction candidates per function id (the original first)."""
        key = f"{_INSTRUCTIONS}{round}"
        raw = self._get(key)
        return None if raw is None else self._read(key, raw, _instructions_from_json)

    def put_instructions(self, round: int, candidates: Mapping[str, Sequence[str]]) -> None:
        self.study.set_user_attr(f"{_INSTRUCTIONS}{round}", {fid: list(v) for fid, v in candidates.items()})

    # -- full evaluations ------------------------------------------------------------------------------
    def full_evaluations(self) -> list[FullEvaluation]:
        """Every full evaluation stored, in the order of the run (see :meth:`FullEvaluation.order`)."""
        attrs = self.study.user_attrs
        found = [
            self._read(k, v, FullEvaluation.from_json) for k, v in attrs.items() if k.startswith(_FULL_EVAL)
        ]
        return sorted(found, key=FullEvaluation.order)

    def put_full_evaluation(self, record: FullEvaluation) -> None:
        self.study.set_user_attr(_FULL_EVAL + record.key, record.to_json())

    def due_done(self) -> set[str]:
        """The points of the search whose full evaluation is done: those that stored one, and
        those marked done with nothing left to evaluate."""
        attrs = self.study.user_attrs
        marked = {k[len(_DUE_DONE) :] for k in attrs if k.startswith(_DUE_DONE)}
        return marked | {e.due for e in self.full_evaluations()}

    def mark_due_done(self, due: str) -> None:
        """Record that point ``due`` needed no full evaluation (every candidate had one)."""
        self.study.set_user_attr(_DUE_DONE + due, True)

    # -- helpers ---------------------------------------------------------------------------------------
    def _get(self, key: str) -> Any:
        return self.study.user_attrs.get(key)

    def _read(self, key: str, raw: Any, parse: Callable[[Any], T]) -> T:
        try:
            return parse(raw)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise UsageError(
                f"the MIPRO study {self.name!r} holds a malformed record {key!r} ({type(e).__name__}: "
                f"{e}); delete the study from its storage (or pass another study_name) to start over"
            ) from e

    def _refuse(self, written_by: str, attrs: Mapping[str, Any]) -> UsageError:
        legacy = sorted(k for k in attrs if k in _LEGACY_KEYS or k.startswith("instructions_r"))
        hint = f" (it holds {', '.join(legacy)})" if legacy else ""
        return UsageError(
            f"the MIPRO study {self.name!r} was written by {written_by}{hint}, and this lmprog "
            f"reads store format {STORE_FORMAT} only; delete the study from its storage, or pass "
            "another study_name (without study_name the name includes the format, so a new study "
            "is started)"
        )


def _demo_sets_from_json(raw: Any) -> DemoSets:
    return {str(fid): [[dict(d) for d in demo_set] for demo_set in v] for fid, v in dict(raw).items()}


def _pools_from_json(raw: Any) -> dict[str, DemoPool]:
    out = {}
    for fid, doc in dict(raw).items():
        problems = pool_problems(doc)
        if problems:
            raise ValueError(f"pool of {fid}: {problems[0]}")
        out[str(fid)] = pool_from_doc(doc)
    return out


def _instructions_from_json(raw: Any) -> dict[str, list[str]]:
    return {str(fid): [_text(t) for t in v] for fid, v in dict(raw).items()}


def _text(raw: Any) -> str:
    if not isinstance(raw, str):
        raise TypeError(f"expected text, got {type(raw).__name__}")
    return raw
