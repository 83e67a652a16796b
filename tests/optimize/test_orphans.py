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
