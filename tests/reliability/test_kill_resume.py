"""Real processes killed with SIGKILL: an ``lmprog optimize`` run mid-search, a prompt-file writer
and a response-cache writer. What was finished before the kill is never lost nor redone."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import lmprog
from lmprog import Budget, promptfile
from lmprog.cache import CACHE_FILENAME, ResponseCache
from lmprog.optimize import OptimizationResult, optimize
from lmprog.testing import ScriptedLM
from lmprog.usage import track

from ._program import DATA, Model, classify, metric, reply, triage

PROGRAM = Path(__file__).parent / "programs" / "slow_app.py"
LABELS = {"billing": "money", "bug": "broken", "feature": "wish"}


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            raise AssertionError(f"the child ended early ({proc.returncode}):\n{out}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for the child")
        time.sleep(0.02)


def kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def complete_trials(db: Path) -> dict[tuple[str, int], float]:
    """The COMPLETE trials of every study in an optuna SQLite file: (study, number) -> value."""
    if not db.exists():
        return {}
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
            rows = conn.execute(
                "SELECT s.study_name, t.number, v.value FROM trials t "
                "JOIN studies s ON s.study_id = t.study_id "
                "JOIN trial_values v ON v.trial_id = t.trial_id AND v.objective = 0 "
                "WHERE t.state = 'COMPLETE'"
            ).fetchall()
    except sqlite3.OperationalError:  # the child has not created the tables yet
        return {}
    return {(name, number): value for name, number, value in rows}


def log_events(log: Path) -> list[tuple[str, str]]:
    if not log.exists():
        return []
    lines = log.read_text(encoding="utf-8").splitlines()
    return [tuple(line.split(" ", 1)) for line in lines if line.count(" ") == 1]  # type: ignore[misc]


def small_mipro(folder: Path, cut: int | None = None) -> OptimizationResult:
    """A small MIPRO run (85 provider requests when run through) with its study and cache in
    ``folder``, cut short after ``cut`` new provider requests (as a kill would cut it: a cap the
    run's plan does not know of); the model answers from the messages alone, so a resumed run
    gets the same answers."""
    limit = Budget(max_calls=cut).check if cut is not None else None
    lm = ScriptedLM(Model(), cache=True)
    with lmprog.context(lm=lm, load_prompts=False, cache_dir=folder / "cache"), track(limit=limit):
        return optimize(
            triage,
            DATA[:8],
            metric,
            valset=DATA[8:16],
            optimizer="mipro",
            storage=str(folder / "study.db"),
            save=False,
            apply=False,
            progress=False,
            num_trials=6,
            minibatch_size=4,
            num_instructions=3,
            num_demo_sets=1,
            full_eval_every=2,
            threads=2,
            variants=False,  # mipro's own requests are counted here
        )


def prompt_texts(result: OptimizationResult) -> list[str]:
    """The prompt files the result would write, without their provenance."""
    return [promptfile.render(fn, result.states[fn]) for fn in (classify, reply)]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> OptimizationResult:
    result = small_mipro(tmp_path_factory.mktemp("uninterrupted"))
    assert result.stopped_by is None and result.usage.requests == 85
    return result


# each run of a sequence is cut by a budget of that many new provider requests: in the bootstrap,
# the data summary, the baseline, the proposals, the trials (an enqueued one included) and the full
# evaluations; a cut trial is left RUNNING, as a kill would leave it
@pytest.mark.parametrize(
    "cuts", [[10], [30], [45], [60], [75], [20, 20, 20], [35, 15, 25], [5, 40, 10, 20]], ids=str
)
def test_a_resumed_run_writes_the_prompt_files_of_the_uninterrupted_run(
    tmp_path: Path, cuts: list[int], uninterrupted: OptimizationResult
) -> None:
    for cut in cuts:
        cut_short = small_mipro(tmp_path, cut)
        assert cut_short.stopped_by == "max_calls"
    resumed = small_mipro(tmp_path)
    assert resumed.stopped_by is None
    assert prompt_texts(resumed) == prompt_texts(uninterrupted)
    assert resumed.score == uninterrupted.score
    assert [(c.label, c.score) for c in resumed.candidates] == [
        (c.label, c.score) for c in uninterrupted.candidates
    ]
    assert resumed.details.trial_history == uninterrupted.details.trial_history
    with sqlite3.connect(tmp_path / "study.db") as conn:
        states = dict(conn.execute("SELECT state, COUNT(*) FROM trials GROUP BY state").fetchall())
    assert states == {"COMPLETE": 6}, "a trial was left unfinished, or run twice"


def test_optimize_killed_mid_search_resumes_without_losing_or_redoing_work(tmp_path: Path) -> None:
    kills = kill_and_resume(tmp_path, [("trials", 3)])
    assert kills == 1


def test_killed_runs_resume_to_the_prompt_file_of_the_uninterrupted_run(tmp_path: Path) -> None:
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    killed.mkdir()
    clean.mkdir()
    # killed in the middle of the bootstrap or the proposals, then in the middle of a trial
    assert kill_and_resume(killed, [("calls", 20), ("trials", 5)]) == 2
    assert kill_and_resume(clean, []) == 0

    def without_provenance(folder: Path) -> dict[str, object]:
        doc = promptfile.read(folder / "prompts" / "app.classify.yaml")
        doc.pop("provenance")
        return doc

    assert without_provenance(killed) == without_provenance(clean)


def kill_and_resume(tmp_path: Path, kill_points: list[tuple[str, int]]) -> int:
    """Run ``lmprog optimize`` on the slow program, SIGKILL it at each point (``("trials", n)``:
    once n trials are complete; ``("calls", n)``: once n LM calls returned), resume it each time,
    and finally let it finish. Check after each kill that no finished trial was lost and that the
    resumed run repeats no cached call. Returns how many kills happened."""
    shutil.copy(PROGRAM, tmp_path / "app.py")
    rows = [
        f'{{"ticket": "{word} problem number {i}", "label": "{label}"}}'
        for i in range(8)
        for label, word in LABELS.items()
    ]
    (tmp_path / "train.jsonl").write_text("\n".join(rows) + "\n")
    log = tmp_path / "requests.log"
    env = {
        **os.environ,
        "SLOW_APP_LOG": str(log),
        "SLOW_APP_DELAY": "0.03",
        "LMPROG_CACHE_DIR": str(tmp_path / "cache"),
    }
    command = [sys.executable, "-m", "lmprog.cli", "optimize", "app.py:triage", "--train", "train.jsonl"]
    command += ["--metric", "metric", "--optimizer", "mipro", "--threads", "4"]
    db = tmp_path / ".lmprog" / "optuna.db"

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )

    def returned() -> int:
        return sum(event == "done" for event, _ in log_events(log))

    kills = 0
    before: dict[tuple[str, int], float] = {}
    cached: set[str] = set()
    for what, n in kill_points:
        proc = start()
        seen = len(log_events(log))
        if what == "trials":
            wait_for(lambda n=n: len(complete_trials(db)) >= n, proc)  # type: ignore[misc]
        else:
            wait_for(lambda n=n: returned() >= n, proc)  # type: ignore[misc]
        kill(proc)
        kills += 1
        events = log_events(log)
        again = {key for event, key in events[seen:] if event == "request"}
        assert not cached.intersection(again), "a cached LM call was repeated"
        now = complete_trials(db)
        assert before.items() <= now.items(), "a finished trial was lost or changed"
        before = now
        cached |= {key for event, key in events if event == "done"}  # returned, hence cached
        with sqlite3.connect(tmp_path / "cache" / CACHE_FILENAME) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)

    seen = len(log_events(log))
    last = start()
    out, _ = last.communicate(timeout=600)
    assert last.returncode == 0, out.decode()
    after = complete_trials(db)
    assert before.items() <= after.items(), "a finished trial was lost or changed"
    studies = {name for name, _ in after}
    (meta,) = {name.rsplit("-r", 1)[0] for name in studies}
    assert studies == {f"{meta}-r0", f"{meta}-r1"}, "every run used the same study"
    assert len(after) == 16, "the resumed run completed the search, no more, no less"
    again = [key for event, key in log_events(log)[seen:] if event == "request"]
    assert again, "the resumed run had work left"
    assert not cached.intersection(again), "a cached LM call was repeated"
    written = promptfile.read(tmp_path / "prompts" / "app.classify.yaml")
    assert written["function"] == "app:classify"
    return kills


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from lmprog import lm_function, promptfile
    from lmprog.function import State

    @lm_function
    def classify(ticket: str) -> str:
        '''Classify the ticket.'''

    target, log = Path(sys.argv[1]), Path(sys.argv[2])
    i = int(sys.argv[3])
    while True:
        text = f"Instruction number {i}.\\n" + f"line {i} of a long instruction\\n" * 2000
        demos = tuple({"ticket": f"t{i}-{j}", "output": "x" * 500} for j in range(20))
        promptfile.write(classify, State(instruction=text, demos=demos), path=target)
        with open(log, "a") as f:
            f.write(f"{i}\\n")
        i += 1
    """
)


def test_a_killed_prompt_file_writer_leaves_the_old_file_or_the_new_one(tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    target = tmp_path / "prompts" / "writer.classify.yaml"
    log = tmp_path / "written.log"
    start = 0
    for round_ in range(4):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(target), str(log), str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: log.exists() and log.read_text().count("\n") >= start + 3 + round_, proc)
        kill(proc)
        done = [int(n) for n in log.read_text().split()]
        doc = promptfile.read(target)  # parses: not torn
        number = int(doc["instruction"].split()[2].rstrip("."))
        # the last finished write, or the one in flight when the kill came
        assert number in (done[-1], done[-1] + 1), (number, done[-1])
        assert doc["instruction"].count("\n") == 2001 and len(doc["demos"]) == 20
        start = done[-1] + 2
    leftovers = [p.name for p in target.parent.iterdir() if p != target]
    assert all(p.startswith(".writer.classify.yaml.") and p.endswith(".tmp") for p in leftovers)


def test_prompt_files_get_ordinary_permissions(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    target = tmp_path / "a.yaml"
    promptfile.atomic_write_text(target, "one\n")
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    target.chmod(0o640)
    promptfile.atomic_write_text(target, "two\n")
    assert target.stat().st_mode & 0o777 == 0o640  # a rewrite keeps the file's mode


CACHE_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    from lmprog.cache import ResponseCache

    cache = ResponseCache(sys.argv[1])
    log = open(sys.argv[2], "a")
    i = int(sys.argv[3])
    die_at = int(sys.argv[4]) if len(sys.argv) > 4 else -1
    while True:
        cache.set(f"key-{i}", {"text": f"answer {i} " + "x" * (i % 5000), "i": i})
        if i == die_at:  # killed after set() returned, before the entry was logged
            os.kill(os.getpid(), signal.SIGKILL)
        log.write(f"{i}\\n")  # after set() returned: committed
        log.flush()
        i += 1
    """
)


def check_cache_after_kill(path: Path, committed: list[int], in_flight: set[int]) -> None:
    """Every logged entry is intact, and each entry that is not logged is one of the writes in
    flight when a writer was killed (``in_flight``: one per round, the entry after the last logged
    one; the next round starts after it, so entries of earlier rounds stay)."""
    cache = ResponseCache(path)
    try:
        for i in committed:
            assert cache.get(f"key-{i}") == {"text": f"answer {i} " + "x" * (i % 5000), "i": i}
        assert cache.usable
        with sqlite3.connect(path) as conn:
            keys = {key for (key,) in conn.execute("SELECT key FROM responses")}
        logged = {f"key-{i}" for i in committed}
        assert logged <= keys
        unlogged = keys - logged
        assert unlogged <= {f"key-{i}" for i in in_flight}, sorted(unlogged)
        assert len(cache) == len(committed) + len(unlogged)
    finally:
        cache.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_killed_cache_writer_loses_no_committed_entry(tmp_path: Path) -> None:
    script = tmp_path / "cache_writer.py"
    script.write_text(CACHE_WRITER)
    path = tmp_path / "cache" / CACHE_FILENAME
    log = tmp_path / "committed.log"
    start = 0
    in_flight: set[int] = set()
    for _ in range(3):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(path), str(log), str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: log.exists() and log.read_text().count("\n") >= start + 200, proc)
        kill(proc)
        committed = [int(n) for n in log.read_text().split()]
        in_flight.add(committed[-1] + 1)
        check_cache_after_kill(path, committed, in_flight)
        start = committed[-1] + 2


def test_entries_stored_but_not_logged_by_killed_writers_are_accounted_exactly(tmp_path: Path) -> None:
    """The case that made the test above flaky, made certain: every round's writer dies right
    after set() returned, before logging, so each round leaves one stored, unlogged entry."""
    script = tmp_path / "cache_writer.py"
    script.write_text(CACHE_WRITER)
    path = tmp_path / "cache" / CACHE_FILENAME
    log = tmp_path / "committed.log"
    start = 0
    in_flight: set[int] = set()
    for _ in range(3):
        proc = subprocess.run(
            [sys.executable, str(script), str(path), str(log), str(start), str(start + 50)],
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        committed = [int(n) for n in log.read_text().split()]
        assert committed[-1] == start + 49
        in_flight.add(committed[-1] + 1)
        check_cache_after_kill(path, committed, in_flight)
        start = committed[-1] + 2
    assert len(ResponseCache(path)) == len(committed) + 3
