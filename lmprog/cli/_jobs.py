"""Optimizations that other machines join: ``lmprog optimize --storage URL --study NAME`` publishes
its arguments in the storage, ``lmprog worker --storage URL --study NAME`` reads them back and runs
the same optimization on the same study.

The job lives in the optuna study ``{NAME}-job`` as one user attribute holding the command's
arguments. Paths in it (program, data, report) are as typed on the first machine: a worker runs
in a checkout of the same project, from the same folder. Workers never write prompt files or
reports: the ``optimize`` command that published the job does.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from lmprog.cli._loading import CLIError
from lmprog.cli._running import OptimizeArgs
from lmprog.optimize.search import open_storage

JOB_ATTR = "lmprog_cli_job"


def job_study(study: str) -> str:
    return f"{study}-job"


def publish_job(args: OptimizeArgs) -> None:
    """Store ``args`` for workers (the first publisher wins: a job never changes under its workers)."""
    import optuna

    assert args.storage is not None and args.study is not None
    holder = optuna.create_study(
        study_name=job_study(args.study), storage=open_storage(args.storage), load_if_exists=True
    )
    stored = holder.user_attrs.get(JOB_ATTR)
    mine = _jsonable(args)
    if stored is None:
        holder.set_user_attr(JOB_ATTR, mine)
        return
    differ = sorted(k for k in mine if k not in ("save", "report") and stored.get(k) != mine[k])
    if differ:
        raise CLIError(
            f"study {args.study!r} in {args.storage} already runs another optimization (it differs in "
            f"{', '.join(differ)}); pick another --study, or join it with `lmprog worker`"
        )


def load_job(storage: str, study: str, threads: int | None) -> OptimizeArgs:
    """The arguments of the optimization published as ``study`` in ``storage``, for a worker."""
    import optuna

    try:
        holder = optuna.load_study(study_name=job_study(study), storage=open_storage(storage))
    except KeyError as e:
        raise CLIError(
            f"no optimization named {study!r} in {storage}: start one with `lmprog optimize ... "
            f"--storage {storage} --study {study}`"
        ) from e
    raw = dict(holder.user_attrs.get(JOB_ATTR) or {})
    if not raw:
        raise CLIError(f"study {study!r} in {storage} holds no lmprog optimize job")
    raw["report"] = None
    raw["save"] = False  # the publishing command writes the prompt files
    if threads is not None:
        raw["threads"] = threads
    return OptimizeArgs(**raw)


def _jsonable(args: OptimizeArgs) -> dict[str, Any]:
    out = dataclasses.asdict(args)
    out["report"] = str(args.report) if isinstance(args.report, Path) else None
    return out
