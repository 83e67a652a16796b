"""Issue 13 item 4: which RUNNING trials a run treats as orphans (re-run) and which it leaves to
their live owners. The end-to-end kill/resume tests check the outcome; these check the rule."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from typing import Any

import optuna

from lmprog.optimize.search import OWNER_ATTR, is_orphan, new_owner


def running(owner: dict[str, Any] | None, age: float) -> optuna.trial.FrozenTrial:
    start = dt.datetime.now() - dt.timedelta(seconds=age)
    return optuna.trial.FrozenTrial(
        number=0,
        state=optuna.trial.TrialState.RUNNING,
        value=None,
        datetime_start=start,
        datetime_complete=None,
        params={},
        distributions={},
        user_attrs={} if owner is None else {OWNER_ATTR: owner},
        system_attrs={},
        intermediate_values={},
        trial_id=0,
    )


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_my_own_running_trial_is_never_an_orphan() -> None:
    me = new_owner()
    assert not is_orphan(running(me, age=10_000), me, stale_after=3600)


def test_a_trial_of_a_dead_process_on_this_host_is_an_orphan_at_once() -> None:
    me = new_owner()
    gone = {**me, "pid": dead_pid(), "run": "earlier"}
    assert is_orphan(running(gone, age=1), me, stale_after=3600)


def test_a_trial_of_a_live_process_on_this_host_is_left_to_it() -> None:
    me = new_owner()
    parent = {**me, "pid": os.getppid(), "run": "other"}
    assert not is_orphan(running(parent, age=5), me, stale_after=3600)


def test_an_earlier_run_of_this_process_left_its_trial() -> None:
    me = new_owner()
    earlier = {**me, "run": "earlier"}
    assert is_orphan(running(earlier, age=1), me, stale_after=3600)


def test_another_hosts_trial_is_orphaned_only_after_stale_after() -> None:
    me = new_owner()
    remote = {"host": me["host"] + "-elsewhere", "pid": 1, "run": "remote"}
    assert not is_orphan(running(remote, age=100), me, stale_after=3600)
    assert is_orphan(running(remote, age=4000), me, stale_after=3600)


def test_an_ownerless_trial_gets_a_grace_period() -> None:
    me = new_owner()
    assert not is_orphan(running(None, age=5), me, stale_after=3600)
    assert is_orphan(running(None, age=120), me, stale_after=3600)


def test_a_trial_two_workers_popped_is_told_once_and_the_second_result_dropped(tmp_path: Any) -> None:
    """Regression: optuna's SQLite storage cannot lock a WAITING row, so two workers asking at once
    can both pop one enqueued trial; the second ``tell`` raised "Cannot tell a COMPLETE trial" and
    ended that worker's run (seen 2 times in 9 runs of the two-process quota test under load)."""
    from lmprog.optimize.search import finished_elsewhere, tell_once

    url = f"sqlite:///{tmp_path / 'study.db'}"
    first = optuna.create_study(study_name="s", storage=url)
    second = optuna.load_study(study_name="s", storage=url)
    first.enqueue_trial({"x": 1})
    mine = first.ask()  # pops the enqueued trial
    theirs = optuna.trial.Trial(second, mine._trial_id)  # the other worker popped it too
    assert theirs.number == mine.number
    assert tell_once(first, mine, 0.5)
    assert finished_elsewhere(second, theirs)
    try:
        second.tell(theirs, 0.5)
    except ValueError as e:  # what a plain tell does: the failure this guards against
        assert "Cannot tell a COMPLETE trial" in str(e)
    else:
        raise AssertionError("optuna accepted a second tell")
    assert not tell_once(second, theirs, 0.5)
    states = [t.state.name for t in second.get_trials(deepcopy=False)]
    assert states == ["COMPLETE"]
