"""Many threads and several processes on one response cache and one optuna study: no write is lost,
and no "database is locked" reaches the user (nor the logs)."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from lmprog import settings
from lmprog.cache import CACHE_FILENAME, ResponseCache, get_cache
from lmprog.lm import Messages
from lmprog.testing import ScriptedLM

THREADS = 16


def hammer(work: object, threads: int = THREADS) -> list[BaseException]:
    """Run ``work(t)`` in ``threads`` threads released at once; return what they raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def run(t: int) -> None:
        start.wait()
        try:
            work(t)  # type: ignore[operator]
        except BaseException as e:
            errors.append(e)

    pool = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return errors


def test_threads_share_one_cache_through_an_lm_without_losing_a_write(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="lmprog.cache")

    def answer(messages: Messages) -> str:
        return "answer to " + messages[-1]["content"]

    lm = ScriptedLM(answer, cache=True)
    prompts = [f"question {i}" for i in range(60)]

    def work(t: int) -> None:
        for i in range(40):  # threads overlap: each prompt is asked by about 10 threads
            prompt = prompts[(t * 7 + i) % len(prompts)]
            text = lm.complete([{"role": "user", "content": prompt}]).text
            assert text == "answer to " + prompt

    assert hammer(work) == []  # plain threads: the process-wide settings (a fresh cache_dir)
    assert len(get_cache(settings.current().cache_dir)) == len(prompts)
    usage = lm.usage
    assert usage.calls == THREADS * 40 == usage.requests + usage.cache_hits
    assert usage.requests == len(lm.calls) >= len(prompts)  # a race may ask twice, never lose
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_threads_writing_and_reading_one_cache_directly(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / CACHE_FILENAME)

    def work(t: int) -> None:
        for i in range(50):
            cache.set(f"{t}-{i}", {"text": f"value {t} {i}"})
            assert cache.get(f"{t}-{i}") == {"text": f"value {t} {i}"}
            other = cache.get(f"{(t + 1) % THREADS}-{i}")
            assert other is None or other == {"text": f"value {(t + 1) % THREADS} {i}"}

    assert hammer(work) == []
    assert len(cache) == THREADS * 50 and cache.usable
    cache.close()


CHILD = textwrap.dedent(
    """
    import json, logging, sys, threading
    import optuna
    from lmprog.cache import ResponseCache
    from lmprog.optimize.search import open_storage

    folder, tag, threads, entries, trials = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
    warnings = []

    class Keep(logging.Handler):
        def emit(self, record):
            warnings.append(record.getMessage())

    logging.getLogger().addHandler(Keep(level=logging.WARNING))
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    cache = ResponseCache(folder + "/responses.sqlite")
    study = optuna.create_study(
        study_name="shared",
        storage=open_storage(folder + "/study.db"),
        sampler=optuna.samplers.RandomSampler(),
        load_if_exists=True,
    )
    start = threading.Barrier(threads)
    errors = []

    def work(t):
        start.wait()
        try:
            for i in range(max(entries, trials)):
                if i < entries:
                    cache.set(f"{tag}-{t}-{i}", {"text": f"{tag} {t} {i}"})
                if i < trials:
                    trial = study.ask()
                    trial.set_user_attr("who", f"{tag}-{t}-{i}")
                    study.tell(trial, trial.suggest_float("x", 0, 1))
        except Exception as e:
            errors.append(f"{type(e).__name__}: {e}")

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    print(json.dumps({"errors": errors, "warnings": warnings}))
    """
)


def test_processes_and_threads_hammer_one_cache_and_one_study(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    entries, trials, processes = 40, 3, ("a", "b")
    children = [
        subprocess.Popen(
            [sys.executable, str(script), str(tmp_path), tag, str(THREADS), str(entries), str(trials)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in processes
    ]
    for child in children:
        out, err = child.communicate(timeout=240)
        assert child.returncode == 0, err
        report = json.loads(out.strip().splitlines()[-1])
        assert report == {"errors": [], "warnings": []}, report
        assert "locked" not in err

    cache = ResponseCache(tmp_path / CACHE_FILENAME)
    expected = {f"{p}-{t}-{i}" for p in processes for t in range(THREADS) for i in range(entries)}
    assert len(cache) == len(expected)
    assert all(cache.get(k) == {"text": k.replace("-", " ")} for k in sorted(expected)[::37])
    cache.close()
    with sqlite3.connect(tmp_path / "study.db") as conn:
        states = conn.execute("SELECT state, COUNT(*) FROM trials GROUP BY state").fetchall()
        who = [json.loads(v) for (v,) in conn.execute("SELECT value_json FROM trial_user_attributes")]
    assert states == [("COMPLETE", len(processes) * THREADS * trials)]
    assert sorted(who) == sorted(
        f"{p}-{t}-{i}" for p in processes for t in range(THREADS) for i in range(trials)
    )


def test_two_processes_on_one_study_share_its_trial_quota(tmp_path: Path) -> None:
    # two `lmprog optimize` workers on one study (same storage, same settings): num_trials=16 is
    # their total, not each one's; both end with the same result
    program = Path(__file__).parent / "programs" / "slow_app.py"
    (tmp_path / "app.py").write_text(program.read_text())
    labels = {"billing": "money", "bug": "broken", "feature": "wish"}
    rows = [
        json.dumps({"ticket": f"{word} problem number {i}", "label": label})
        for i in range(8)
        for label, word in labels.items()
    ]
    (tmp_path / "train.jsonl").write_text("\n".join(rows) + "\n")
    env = {
        **os.environ,
        "SLOW_APP_LOG": str(tmp_path / "requests.log"),
        "SLOW_APP_DELAY": "0.01",
        "LMPROG_CACHE_DIR": str(tmp_path / "cache"),
        "COLUMNS": "200",
    }
    command = [sys.executable, "-m", "lmprog.cli", "optimize", "app.py:triage", "--train", "train.jsonl"]
    command += ["--metric", "metric", "--optimizer", "mipro", "--threads", "2", "--no-save"]
    workers = [
        subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(2)
    ]
    outputs = []
    for worker in workers:
        out, _ = worker.communicate(timeout=600)
        outputs.append(out.decode())
        assert worker.returncode == 0, outputs[-1]
    with sqlite3.connect(tmp_path / ".lmprog" / "optuna.db") as conn:
        rows_ = conn.execute(
            "SELECT s.study_name, t.state, COUNT(*) FROM trials t JOIN studies s ON s.study_id = t.study_id "
            "GROUP BY s.study_name, t.state"
        ).fetchall()
    complete = {name: n for name, state, n in rows_ if state == "COMPLETE"}
    assert sum(complete.values()) == 16, rows_  # the quota, shared: not 16 per worker
    assert sorted(complete.values()) == [8, 8]  # 8 per round
    assert not [r for r in rows_ if r[1] in ("RUNNING", "WAITING")], rows_
    scores = [out.split("optimized score")[1].split()[0] for out in outputs]
    assert scores[0] == scores[1], outputs
