"""The search over instruction x demo-set combinations: optuna studies, configurations, storage.

A configuration picks, for every lm_function, one instruction candidate and one demo set. Trials
score configurations on random minibatches of the validation set; the best configurations by mean
minibatch score get full validation evaluations. Studies live in optuna storage (a SQLite file
under ``.lmprog/`` by default, or any optuna RDB URL), so an interrupted search resumes where it
stopped, and several machines can work on one study.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmprog.errors import MissingDependencyError
from lmprog.function import LMFunction, State
from lmprog.optimize.storage_lock import safe_url, schema_lock
from lmprog.promptfile import DemoPool

if TYPE_CHECKING:
    import optuna

logger = logging.getLogger("lmprog.optimize.search")

DEFAULT_STORAGE_DIR = Path(".lmprog")


def storage_url(storage: str | Path | None) -> str:
    """An optuna storage URL: ``None`` = ``sqlite:///.lmprog/optuna.db``; a path = a SQLite file;
    ``postgresql://user:password@host/db`` = PostgreSQL through psycopg (``lmprog[postgres]``)."""
    if storage is None:
        DEFAULT_STORAGE_DIR.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{DEFAULT_STORAGE_DIR / 'optuna.db'}"
    text = str(storage)
    if "://" in text:
        return _with_driver(text)
    Path(text).parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{text}"


def _with_driver(url: str) -> str:
    """A PostgreSQL URL without a driver gets psycopg (3), the driver of the ``postgres`` extra
    (SQLAlchemy would pick psycopg2); a missing driver is an error naming the extra."""
    scheme, rest = url.split("://", 1)
    if scheme in ("postgresql", "postgres"):
        scheme = "postgresql+psycopg"
    if scheme == "postgresql+psycopg":
        try:
            import psycopg  # noqa: F401
        except ImportError as e:
            raise MissingDependencyError(
                f'storage {scheme}://...: PostgreSQL needs its driver: pip install "lmprog[postgres]"'
            ) from e
    return f"{scheme}://{rest}"


def open_storage(
    storage: str | Path | None, *, lock_wait: float | None = None
) -> optuna.storages.BaseStorage:
    """Open (creating) the storage; SQLite gets a generous lock timeout for parallel writers.

    On PostgreSQL one process at a time opens it, under the database's schema lock
    (:func:`~lmprog.optimize.storage_lock.schema_lock`): optuna creates the schema as it opens,
    by checking for each table and type and then creating it, and processes opening a new
    database at once otherwise fail on what another created between their check and their create.
    ``lock_wait``: the longest wait for that lock in seconds (None:
    :data:`~lmprog.optimize.storage_lock.LOCK_WAIT_SECONDS`).
    """
    import optuna
    import sqlalchemy.exc

    url = storage_url(storage)
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": 60}}
    for attempt in range(_OPEN_ATTEMPTS):
        try:
            with schema_lock(url, wait=lock_wait):
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError) as e:
            # SQLite: processes opening a new storage at once race to create its schema: the
            # losers fail on what the winner created, and find it all in place when they try again
            # (on PostgreSQL the schema lock rules that race out: what is left is a failed connection)
            if attempt == _OPEN_ATTEMPTS - 1:
                raise
            logger.debug("opening %s failed (%s); retrying", safe_url(url), e)
            time.sleep(0.05 * 2**attempt)
    raise AssertionError("unreachable")


_OPEN_ATTEMPTS = 6


@dataclass(frozen=True)
class Space:
    """The candidates of one search round: per function (by id), instructions and demo sets.

    A function with a pool in ``pools`` has one more demo set after its ``demo_sets``: retrieved
    demos (each call's nearest pooled examples, see :class:`~lmprog.promptfile.DemoPool`).
    """

    functions: tuple[LMFunction[..., Any], ...]
    ids: tuple[str, ...]
    instructions: Mapping[str, Sequence[str]]
    demo_sets: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]]
    pools: Mapping[str, DemoPool] = field(default_factory=dict)

    def demo_choices(self, fid: str) -> int:
        """How many demo sets function ``fid`` can pick from (the retrieved one included)."""
        return len(self.demo_sets[fid]) + (fid in self.pools)

    def is_retrieved(self, fid: str, di: int) -> bool:
        """Whether demo-set index ``di`` of function ``fid`` is its retrieved demos."""
        return fid in self.pools and di == len(self.demo_sets[fid])

    def suggest(self, trial: optuna.trial.Trial) -> dict[str, tuple[int, int]]:
        """Draw one configuration: (instruction index, demo-set index) per function id."""
        config = {}
        for i, fid in enumerate(self.ids):
            n_i = len(self.instructions[fid])
            n_d = self.demo_choices(fid)
            ii = trial.suggest_categorical(f"f{i}_instruction", list(range(n_i))) if n_i > 1 else 0
            di = trial.suggest_categorical(f"f{i}_demos", list(range(n_d))) if n_d > 1 else 0
            config[fid] = (int(ii), int(di))
        return config

    def states(self, config: Mapping[str, tuple[int, int]]) -> dict[LMFunction[..., Any], State]:
        out = {}
        for fn, fid in zip(self.functions, self.ids, strict=True):
            ii, di = config[fid]
            text = self.instructions[fid][ii]
            instruction = None if ii == 0 else text  # index 0 is always the original instruction
            if self.is_retrieved(fid, di):
                out[fn] = State(instruction=instruction, pool=self.pools[fid])
            else:
                out[fn] = State(
                    instruction=instruction, demos=tuple(dict(d) for d in self.demo_sets[fid][di])
                )
        return out

    def key(self, config: Mapping[str, tuple[int, int]]) -> str:
        """A stable identity of a configuration across rounds (by instruction text, demo-set index)."""
        ident = {fid: [self.instructions[fid][ii], di] for fid, (ii, di) in sorted(config.items())}
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def minibatch_means(
    study: optuna.Study, objective: int = 0, upto: int | None = None
) -> dict[str, tuple[float, int]]:
    """Mean minibatch score and trial count per configuration key over the study's finished trials
    (the first ``upto`` of them by trial number, when given)."""
    import optuna

    sums: dict[str, list[float]] = defaultdict(list)
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    done = sorted(done, key=lambda t: t.number)[:upto]
    for t in done:
        key = t.user_attrs.get("config_key")
        if key is None or t.values is None:
            continue
        sums[key].append(float(t.values[objective]))
    return {k: (sum(v) / len(v), len(v)) for k, v in sums.items()}


def instruction_scores(study: optuna.Study, space: Space) -> dict[str, dict[str, float]]:
    """Per function id, the mean minibatch score of each instruction over the trials that used it."""
    import optuna

    acc: dict[str, dict[str, list[float]]] = {fid: defaultdict(list) for fid in space.ids}
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        config = t.user_attrs.get("config")
        if not config or t.values is None:
            continue
        for fid, (ii, _di) in config.items():
            if fid in acc and ii < len(space.instructions[fid]):
                acc[fid][space.instructions[fid][ii]].append(float(t.values[0]))
    return {fid: {text: sum(v) / len(v) for text, v in d.items()} for fid, d in acc.items()}


def config_from_attrs(raw: Mapping[str, Sequence[int]]) -> dict[str, tuple[int, int]]:
    return {fid: (int(v[0]), int(v[1])) for fid, v in raw.items()}


# -- workers ---------------------------------------------------------------------------------------
# Several processes (or machines) may work on one study, and a process may be killed mid-trial. Every
# trial records its owner (host, process id, run token); a RUNNING trial whose owner is gone (its
# process died on this host, an earlier run in this process left it, or it has run longer than
# ``stale_after`` seconds) is an orphan: the next run re-runs it under its own number, so a resumed
# search evaluates what the uninterrupted one would have.

OWNER_ATTR = "lmprog_owner"
_OWNERLESS_GRACE = 60.0  # seconds after which a RUNNING trial that never recorded its owner is orphaned


def new_owner() -> dict[str, Any]:
    """The identity of one optimization run in this process."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "run": uuid.uuid4().hex}


def is_orphan(trial: optuna.trial.FrozenTrial, me: Mapping[str, Any], stale_after: float) -> bool:
    """Whether a RUNNING trial was left by a run that will never finish it."""
    owner = trial.user_attrs.get(OWNER_ATTR)
    if owner is not None and owner.get("run") == me["run"]:
        return False
    started = trial.datetime_start.timestamp() if trial.datetime_start is not None else time.time()
    if time.time() - started > stale_after:
        return True
    if owner is None:  # a worker records itself right after asking: this one was killed between
        return time.time() - started > _OWNERLESS_GRACE
    if owner.get("host") != me["host"]:
        return False  # a worker on another machine: not stale yet
    pid = int(owner.get("pid", -1))
    return pid == me["pid"] or not _alive(pid)  # an earlier run of this process, or a dead process


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def rank_among_live(study: optuna.Study, number: int) -> int:
    """The place of trial ``number`` among the study's started trials (COMPLETE or RUNNING), in
    trial-number order: workers sharing a trial quota keep the first ones and drop the rest.

    Trial numbers follow the order in which trials reached the storage, so a worker that counts
    right after its trial was inserted sees every trial numbered before it. Start times would
    not do: a worker stamps its trial with its own clock before it waits for the write lock, so
    a trial stamped earlier can arrive after a later one already counted itself inside the
    quota (both then ran: one trial too many). A popped enqueued trial keeps its number (why
    PostgreSQL workers count under a lock instead: :mod:`lmprog.optimize.quota`)."""
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING)
    live = study.get_trials(deepcopy=False, states=states)
    return sorted(t.number for t in live).index(number)


def live_count(study: optuna.Study) -> int:
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING)
    return len(study.get_trials(deepcopy=False, states=states))


def tell_once(study: optuna.Study, trial: optuna.trial.Trial, values: Any) -> bool:
    """Record ``trial``'s result, unless another worker already finished it; False then.

    Optuna's SQLite storage cannot lock a row, so two workers asking at the same moment may both
    pop the same enqueued (WAITING) trial. Both then evaluate the same configuration on the same
    seeded minibatch, so the second result equals the first: it is dropped instead of failing the
    run with "Cannot tell a COMPLETE trial" (PostgreSQL locks the row and never gets here)."""
    import optuna

    try:
        study.tell(trial, values)
    except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
        if not finished_elsewhere(study, trial):
            raise
        logger.info("trial %d was finished by another worker; its result is kept", trial.number)
        return False
    return True


def finished_elsewhere(study: optuna.Study, trial: optuna.trial.Trial) -> bool:
    """Whether ``trial`` is already finished in the storage (by another worker)."""
    frozen = [t for t in study.get_trials(deepcopy=False) if t.number == trial.number]
    return bool(frozen) and frozen[0].state.is_finished()


def optuna_state(name: str) -> optuna.trial.TrialState:
    import optuna

    return optuna.trial.TrialState[name]
