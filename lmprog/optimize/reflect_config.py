"""The settings of a reflective run (:class:`ReflectConfig`) and what follows from them before it
starts: its call estimate, the key of its records and where they are stored. The acceptance gate
(and the paired sign test it may use) lives in :mod:`lmprog.optimize.reflect_gate`."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from lmprog.errors import UsageError
from lmprog.optimize._base import Task
from lmprog.optimize.identity import data_fingerprint, digest, models_identity, score_context
from lmprog.optimize.reflect_gate import max_size, sign_test
from lmprog.optimize.reflect_store import STORE_FORMAT
from lmprog.optimize.search import DEFAULT_STORAGE_DIR
from lmprog.promptfile import function_id

__all__ = ["ReflectConfig", "estimate_calls", "sign_test", "start_calls", "storage_path", "study_key"]


@dataclass(frozen=True)
class ReflectConfig:
    """The settings of a reflective run.

    ``num_iterations`` caps the iterations (reflections and merges); ``minibatch_size`` training
    examples are run per iteration (at first, with ``gate="auto"``); ``gate`` is ``"auto"`` (start
    with ``"improve"`` on ``minibatch_size`` examples and, when more than
    ``max_false_accept_rate`` of the accepted edits lose on validation, switch to the paired test
    on minibatches doubled up to ``max_minibatch_size``, default 4 x ``minibatch_size``, within the
    budget), ``"improve"`` or ``"paired"`` (sign test at ``gate_alpha``): see
    :mod:`~lmprog.optimize.reflect_gate`; ``select`` picks the function to edit (``"round_robin"`` or
    ``"blame"``); ``merge``/``max_merges`` enable merges; ``reflection_lm`` writes the
    edits (None: the task LM); ``init`` is ``"none"``, ``"bootstrap"`` (start from bootstrapped
    demos, at most ``max_demos`` per function) or ``"knn"`` (start from a pool of labeled training
    examples, ``max_demos`` retrieved per call); ``storage`` is a JSON file holding the run's
    records (default ``.lmprog/reflect.json``; ``":memory:"`` keeps them for this run only), or
    an optuna database as MIPRO's (``postgresql://...``, ``sqlite:///runs.db``, a ``.db`` file:
    see :mod:`~lmprog.optimize.reflect_study`), under
    ``study_name`` (default: a digest of everything the run depends on); ``listing_tokens`` caps
    the program listing; ``testset`` (rows or a file) is scored at the end to report the
    validation -> test gap.
    """

    num_iterations: int = 20
    minibatch_size: int = 3
    gate: Literal["auto", "improve", "paired"] = "auto"
    gate_alpha: float = 0.25
    max_minibatch_size: int | None = None
    max_false_accept_rate: float = 0.25
    select: Literal["round_robin", "blame"] = "round_robin"
    merge: bool = True
    max_merges: int = 5
    reflection_lm: Any = None
    init: Literal["none", "bootstrap", "knn"] = "none"
    max_demos: int = 3
    storage: str | Path | None = None
    study_name: str | None = None
    listing_tokens: int = 1200
    testset: Any = None

    def __post_init__(self) -> None:
        if self.num_iterations < 0 or self.minibatch_size < 1 or self.max_merges < 0:
            raise UsageError("reflect: num_iterations and max_merges must be >= 0, minibatch_size >= 1")
        if self.gate not in ("auto", "improve", "paired"):
            raise UsageError(f"reflect: gate must be 'auto', 'improve' or 'paired', got {self.gate!r}")
        if self.max_minibatch_size is not None and self.max_minibatch_size < 1:
            raise UsageError(f"reflect: max_minibatch_size must be >= 1, got {self.max_minibatch_size}")
        if not 0.0 <= self.max_false_accept_rate < 1.0:
            raise UsageError(
                f"reflect: max_false_accept_rate must be in [0, 1), got {self.max_false_accept_rate}"
            )
        if not 0.0 < self.gate_alpha <= 1.0:
            raise UsageError(f"reflect: gate_alpha must be in (0, 1], got {self.gate_alpha}")
        if self.select not in ("round_robin", "blame"):
            raise UsageError(f"reflect: select must be 'round_robin' or 'blame', got {self.select!r}")
        if self.init not in ("none", "bootstrap", "knn"):
            raise UsageError(f"reflect: init must be 'none', 'bootstrap' or 'knn', got {self.init!r}")


def storage_path(storage: str | Path | None) -> Path | None:
    """The JSON file of a run's records: ``.lmprog/reflect.json`` by default, None (in memory, no
    resume) for ``":memory:"``."""
    if storage is None:
        return DEFAULT_STORAGE_DIR / "reflect.json"
    return None if str(storage) == ":memory:" else Path(storage)


def estimate_calls(config: ReflectConfig, task: Task, test_size: int = 0) -> int:
    """An upper estimate of the LM calls of a fresh run: the bootstrap (``init="bootstrap"``), the
    seed's validation, per iteration a reflection, two minibatch runs (at the largest size the
    gate may use) and a validation, and the test set scored twice (cache hits make the real count
    lower)."""
    per_example = max(1, len(task.functions))
    val = len(task.valset) * per_example
    batch = max_size(config, len(task.trainset)) * per_example
    return (
        start_calls(config, task)
        + config.num_iterations * (1 + 2 * batch + val)
        + (2 * test_size * per_example)
    )


def start_calls(config: ReflectConfig, task: Task) -> int:
    """The calls before the first iteration (an upper estimate): the bootstrap
    (``init="bootstrap"``) and the seed's validation."""
    per_example = max(1, len(task.functions))
    boot = 0
    if config.init == "bootstrap":
        boot = min(len(task.trainset), 2 * max(task.threads, 8)) * per_example
    return boot + len(task.valset) * per_example


def study_key(config: ReflectConfig, task: Task) -> str:
    """The key of a run's records: ``study_name`` when given, else a digest of everything the
    records depend on (the score context, functions, data, seed, settings, reflection LM). The
    storage path and the test set are not part of it: they change no record."""
    if config.study_name:
        return config.study_name
    skip = ("storage", "study_name", "testset", "reflection_lm")
    settings = {f.name: getattr(config, f.name) for f in fields(config) if f.name not in skip}
    settings["reflection_lm"] = models_identity([], {"r": config.reflection_lm})["r"]
    ident = {
        "store": STORE_FORMAT,
        "context": score_context(task),
        "functions": [function_id(f) + ":" + f.signature_hash for f in task.functions],
        "train": data_fingerprint(task.trainset),
        "val": data_fingerprint(task.valset),
        "seed": task.seed,
        "config": settings,
    }
    return "reflect-" + digest(ident)
