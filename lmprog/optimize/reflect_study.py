"""A reflective run's records in an optuna storage (the one MIPRO uses: a SQLite file or a shared
PostgreSQL database), and the choice between that and a JSON file.

``storage=`` names a database when it holds ``://`` (``postgresql://user:pw@host/db``,
``sqlite:///runs.db``) or ends in ``.db``, ``.sqlite`` or ``.sqlite3``; the run's records are then
the user attributes of the optuna study named after the run's key, one attribute per record
(``reflect:start``, ``reflect:candidate:000003``, ``reflect:iteration:000004``) beside a format
mark. An iteration and the candidate it made are two writes, the candidate first: a candidate
whose iteration is not stored is not read, so a kill between them repeats that iteration. Any
other ``storage=`` is a JSON file (:class:`~lmprog.optimize.reflect_store.ReflectStore`). One run
at a time writes a study.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from lmprog.errors import UsageError
from lmprog.optimize.reflect_store import (
    START_KEY,
    STORE_FORMAT,
    CandidateRecord,
    IterationRecord,
    ReflectStore,
    StudyRecords,
)
from lmprog.optimize.search import open_storage

if TYPE_CHECKING:
    import optuna

__all__ = ["ReflectStudyStore", "is_database", "open_reflect_store"]

T = TypeVar("T")

_FORMAT_KEY = "lmprog_reflect_store_format"
_CANDIDATE = "reflect:candidate:"
_ITERATION = "reflect:iteration:"
_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def is_database(storage: str | Path | None) -> bool:
    """Whether ``storage`` names an optuna database rather than a JSON file."""
    text = "" if storage is None else str(storage)
    return "://" in text or text.lower().endswith(_SUFFIXES)


def open_reflect_store(path: Path | None, storage: str | Path | None, key: str) -> ReflectStore:
    """The store of study ``key``: in the database ``storage`` names, else the JSON file ``path``
    (None: in memory)."""
    if not is_database(storage):
        return ReflectStore(path, key)
    import optuna

    study = optuna.create_study(study_name=key, storage=open_storage(storage), load_if_exists=True)
    return ReflectStudyStore(study)


class ReflectStudyStore(ReflectStore):
    """A :class:`ReflectStore` whose records are the user attributes of an optuna study. A study
    of another layout (or not written by a reflective run) raises UsageError; nothing is
    overwritten then."""

    def __init__(self, study: optuna.Study) -> None:
        self.study = study
        attrs = study.user_attrs
        found = attrs.get(_FORMAT_KEY)
        if found is None and attrs:
            raise self._refuse("another optimizer (it has no reflect records)")
        if found is not None and found != STORE_FORMAT:
            raise self._refuse(f"store format {found!r}")
        if found is None:
            study.set_user_attr(_FORMAT_KEY, STORE_FORMAT)
        super().__init__(None, study.study_name)

    def _load(self) -> StudyRecords:
        attrs = self.study.user_attrs
        start = attrs.get(START_KEY)
        iterations: list[IterationRecord] = []
        for key in sorted(k for k in attrs if k.startswith(_ITERATION)):
            it = self._read(key, attrs[key], IterationRecord.from_json)
            if it.iteration != len(iterations):
                break  # only the unbroken run of iterations from the first counts
            iterations.append(it)
        candidates: list[CandidateRecord] = []
        for key in sorted(k for k in attrs if k.startswith(_CANDIDATE)):
            cand = self._read(key, attrs[key], CandidateRecord.from_json)
            if cand.index != len(candidates) or cand.iteration >= len(iterations):
                break  # a candidate whose iteration was not stored is made again
            candidates.append(cand)
        if start is None:
            return StudyRecords(candidates=candidates, iterations=iterations)
        demos, pools = self._read(START_KEY, start, _start_from_json)
        return StudyRecords(demos=demos, pools=pools, candidates=candidates, iterations=iterations)

    def _save(self, written: Sequence[tuple[str, Any]] = ()) -> None:
        for key, value in written:
            self.study.set_user_attr(key, value)

    def _read(self, key: str, raw: Any, parse: Callable[[Any], T]) -> T:
        try:
            return parse(raw)
        except (KeyError, TypeError, ValueError) as e:
            raise UsageError(
                f"the reflect study {self.study.study_name!r} holds a malformed record {key!r} "
                f"({type(e).__name__}: {e}); delete the study (or pass another study_name) to start over"
            ) from e

    def _refuse(self, written_by: str) -> UsageError:
        return UsageError(
            f"the optuna study {self.study.study_name!r} was written by {written_by}, and this lmprog "
            f"reads reflect store format {STORE_FORMAT} only; delete the study from its storage, or "
            "pass another study_name"
        )


def _start_from_json(
    raw: Any,
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, Any]]]:
    data: Mapping[str, Any] = dict(raw)
    demos = {str(k): [dict(d) for d in v] for k, v in dict(data["demos"]).items()}
    pools = {str(k): dict(v) for k, v in dict(data.get("pools") or {}).items()}
    return demos, pools
