"""MIPRO studies shared on a real PostgreSQL server (started by the ``postgres_server`` fixture):
a ``postgresql://`` URL opens with the psycopg driver; two ``lmprog optimize`` processes, or
``optimize`` and ``lmprog worker``, share one study and its trial quota; a killed worker's trials
are re-run by the next."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from lmprog.optimize.search import open_storage, storage_url

pytestmark = pytest.mark.timeout(600)

PROGRAM = Path(__file__).parent / "reliability" / "programs" / "slow_app.py"
LABELS = {"billing": "money", "bug": "broken", "feature": "wish"}


def test_a_postgresql_url_gets_the_psycopg_driver() -> None:
    assert storage_url("postgresql://u:p@db.example/x") == "postgresql+psycopg://u:p@db.example/x"
    assert storage_url("postgres://u@h/x") == "postgresql+psycopg://u@h/x"
    assert storage_url("postgresql+psycopg2://u@h/x") == "postgresql+psycopg2://u@h/x"  # chosen: kept


def test_without_the_driver_a_postgresql_url_names_the_extra() -> None:
    # a fresh interpreter where psycopg cannot be imported (None in sys.modules blocks the import)
    code = (
        "import sys; sys.modules['psycopg'] = None\n"
        "from lmprog.errors import MissingDependencyError\n"
        "from lmprog.optimize.search import storage_url\n"
        "try:\n    storage_url('postgresql://u@h/x')\n"
        "except MissingDependencyError as e:\n    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert 'pip install "lmprog[postgres]"' in done.stdout


def test_an_optuna_study_lives_on_the_server(postgres_url: str) -> None:
    import optuna

    study = optuna.create_study(study_name="s", storage=open_storage(postgres_url))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    again = optuna.load_study(study_name="s", storage=open_storage(postgres_url))
    assert [t.params for t in again.trials] == [t.params for t in study.trials]


def project(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "app.py").write_text(PROGRAM.read_text())
    rows = [
        json.dumps({"ticket": f"{word} problem number {i}", "label": label})
        for i in range(8)
        for label, word in LABELS.items()
    ]
    (tmp_path / "train.jsonl").write_text("\n".join(rows) + "\n")
    return {
        **os.environ,
        "SLOW_APP_LOG": str(tmp_path / "requests.log"),
        "SLOW_APP_DELAY": "0.01",
        "LMPROG_CACHE_DIR": str(tmp_path / "cache"),
        "COLUMNS": "200",
    }


def optimize_command(url: str) -> list[str]:
    command = [sys.executable, "-m", "lmprog.cli", "optimize", "app.py:triage", "--train", "train.jsonl"]
    command += ["--metric", "metric", "--optimizer", "mipro", "--threads", "2", "--no-save"]
    return [*command, "--storage", url, "--study", "tickets", "--trials", "16"]


def worker_command(url: str) -> list[str]:
    return [sys.executable, "-m", "lmprog.cli", "worker", "--storage", url, "--study", "tickets"]


def start(command: list[str], tmp_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finish(worker: subprocess.Popen[bytes]) -> str:
    out, _ = worker.communicate(timeout=500)
    assert worker.returncode == 0, out.decode()
    return out.decode()


def trial_states(url: str) -> dict[str, Counter[str]]:
    import optuna

    storage = open_storage(url)
    out: dict[str, Counter[str]] = {}
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        out[summary.study_name] = Counter(t.state.name for t in study.trials)
    return out


def check_shared_study(url: str, tmp_path: Path) -> None:
    import optuna

    from lmprog.optimize.mipro_store import MiproStore

    states = trial_states(url)
    rounds = {name: c for name, c in states.items() if name.startswith("tickets-r")}
    assert sorted(rounds) == ["tickets-r0", "tickets-r1"], states
    assert sum(c["COMPLETE"] for c in rounds.values()) == 16, states  # the quota is the total
    assert not any(c["RUNNING"] or c["WAITING"] for c in rounds.values()), states
    store = MiproStore(optuna.load_study(study_name="tickets", storage=open_storage(url)))
    keys = [e.key for e in store.full_evaluations()]
    assert keys and len(keys) == len(set(keys))  # one record per full evaluation
    # the trials beyond the quota that a worker asked for were dropped unevaluated, and marked so
    for name in rounds:
        study = optuna.load_study(study_name=name, storage=open_storage(url))
        failed = [t for t in study.trials if t.state.name == "FAIL"]
        assert all("lmprog_skipped" in t.user_attrs for t in failed)
        numbers = [t.number for t in study.trials if t.state.name == "COMPLETE"]
        assert len(numbers) == len(set(numbers))


def test_two_optimize_processes_share_one_study_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    env = project(tmp_path)
    workers = [start(optimize_command(postgres_url), tmp_path, env) for _ in range(2)]
    outputs = [finish(w) for w in workers]
    check_shared_study(postgres_url, tmp_path)
    scores = [out.split("optimized score")[1].split()[0] for out in outputs]
    assert scores[0] == scores[1], outputs


def test_a_worker_joins_the_optimization_and_reruns_the_trials_of_a_killed_one(
    postgres_url: str, tmp_path: Path
) -> None:
    env = {**project(tmp_path), "SLOW_APP_DELAY": "0.05"}
    first = start(optimize_command(postgres_url), tmp_path, env)
    # kill it while a trial of round 0 is under way: frozen (SIGSTOP) while we look, so that the
    # trial cannot finish between the look and the kill
    deadline = time.monotonic() + 300
    killed = False
    while time.monotonic() < deadline and first.poll() is None and not killed:
        if trial_states(postgres_url).get("tickets-r0", Counter())["RUNNING"]:
            first.send_signal(signal.SIGSTOP)
            if trial_states(postgres_url)["tickets-r0"]["RUNNING"]:
                first.send_signal(signal.SIGKILL)
                killed = True
            else:
                first.send_signal(signal.SIGCONT)
        time.sleep(0.05)
    assert killed, "the first worker ended before its search started"
    first.wait(timeout=60)
    assert trial_states(postgres_url)["tickets-r0"]["RUNNING"] >= 1
    joined = finish(start(worker_command(postgres_url), tmp_path, env))
    assert "optimized score" in joined
    check_shared_study(postgres_url, tmp_path)
    # the killed worker's trials were re-run under their numbers, not dropped from the quota
    assert "nothing optimized" not in joined


def test_a_worker_for_an_unknown_study_says_how_to_start_one(postgres_url: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [*worker_command(postgres_url)[:-1], "nope"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "no optimization named 'nope'" in done.stderr and "lmprog optimize" in done.stderr
