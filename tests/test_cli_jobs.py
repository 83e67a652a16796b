"""``lmprog optimize --storage URL --study NAME`` publishes its arguments; ``lmprog worker`` reads
them back (without saving files or reports); a study already running another job is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmprog.cli._jobs import load_job, publish_job
from lmprog.cli._loading import CLIError
from lmprog.cli._running import OptimizeArgs


def args(storage: Path, **changes: object) -> OptimizeArgs:
    base = OptimizeArgs(
        "app.py:triage",
        "train.jsonl",
        "metric",
        seed=3,
        threads=4,
        report=Path("report.html"),
        storage=str(storage),
        study="tickets",
        trials=12,
    )
    for name, value in changes.items():
        setattr(base, name, value)
    return base


def test_a_worker_reads_the_published_job_and_neither_saves_nor_reports(tmp_path: Path) -> None:
    storage = tmp_path / "study.db"
    publish_job(args(storage))
    job = load_job(str(storage), "tickets", threads=None)
    assert (job.target, job.train, job.metric, job.seed, job.trials) == (
        "app.py:triage",
        "train.jsonl",
        "metric",
        3,
        12,
    )
    assert (job.storage, job.study, job.threads) == (str(storage), "tickets", 4)
    assert job.save is False and job.report is None
    assert load_job(str(storage), "tickets", threads=2).threads == 2


def test_the_same_job_again_is_fine_another_one_on_the_study_is_refused(tmp_path: Path) -> None:
    storage = tmp_path / "study.db"
    publish_job(args(storage))
    publish_job(args(storage, save=False, report=None))  # a second `optimize` of the same job
    with pytest.raises(CLIError, match="differs in metric, seed"):
        publish_job(args(storage, metric="exact_match", seed=4))


def test_a_worker_for_a_study_nobody_started_says_how_to_start_it(tmp_path: Path) -> None:
    with pytest.raises(CLIError, match="no optimization named 'other'"):
        load_job(str(tmp_path / "study.db"), "other", threads=None)


def test_study_flags_are_for_mipro_only() -> None:
    assert args(Path("s.db")).optimizer_options() == {
        "storage": "s.db",
        "study_name": "tickets",
        "num_trials": 12,
    }
    with pytest.raises(CLIError, match="--storage, --study, --trials: only --optimizer mipro"):
        args(Path("s.db"), optimizer="bootstrap").optimizer_options()
