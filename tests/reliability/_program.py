"""The program the reliability tests run: a support-ticket triage with two lm_functions, its data, a
metric, a deterministic fake model, and recorders for the waits of the retry logic."""

from __future__ import annotations

import hashlib
import threading
from collections import defaultdict
from typing import Any, Literal

from pydantic import BaseModel

from lmprog import lm_function, traced
from lmprog.testing import FaultyLM

LABELS = {"billing": "money", "bug": "broken", "feature": "wish"}


class Triage(BaseModel):
    topic: Literal["billing", "bug", "feature"]
    urgent: bool


@lm_function
def classify(ticket: str) -> Triage:
    """Classify the ticket."""


@lm_function
def reply(ticket: str, topic: str) -> str:
    """Write a one-line reply to the ticket."""


@traced
def triage(ticket: str) -> str:
    result = classify(ticket)
    reply(ticket, result.topic)
    return result.topic


DATA = [
    {"ticket": f"{word} problem number {i}", "label": label}
    for i in range(16)
    for label, word in LABELS.items()
]


def metric(example: Any, prediction: Any, trace: Any = None) -> bool:
    return bool(prediction == example["label"])


class Model:
    """A deterministic fake whose task accuracy depends on the instruction, so search has signal.

    With an instruction starting "GOOD" it maps the keyword to the label; with the docstring it
    answers "billing" always. Proposals are drawn from the proposer's messages alone (two in three
    are good), so that a resumed process proposes what the interrupted one would have.
    """

    def __call__(self, messages: list[dict[str, str]]) -> Any:
        system = messages[0]["content"]
        # the input is the last user turn (a parse retry appends the bad reply and the errors)
        user = next(
            m["content"]
            for m in reversed(messages)
            if m["role"] == "user" and not m["content"].startswith("Your reply could not be used")
        )
        if system.startswith("Describe this data set"):
            return "Short support tickets labelled billing, bug or feature."
        if system.startswith("Write a better instruction"):
            digest = hashlib.sha256(user.encode()).hexdigest()
            variant = "".join(chr(ord("a") + int(c, 16)) for c in digest[:5])
            if int(digest[:8], 16) % 3:
                return f"GOOD: map the keyword to its label, variant {variant}."
            return f"Think hard about the ticket, variant {variant}."
        if system.startswith("Write a one-line reply"):
            return f"Thanks, we are on it ({len(user.split())} words read)."
        ticket = user.rsplit("ticket: ", 1)[-1].split("\n", 1)[0]
        topic = "billing"
        if system.startswith("GOOD"):
            topic = next((label for label, word in LABELS.items() if word in ticket), "billing")
        return {"topic": topic, "urgent": "broken" in ticket}


class Sleeps:
    """A ``sleep`` for LMs that records each wait, by thread, instead of waiting."""

    def __init__(self) -> None:
        self.by_thread: dict[int, list[float]] = defaultdict(list)
        self._lock = threading.Lock()

    def __call__(self, seconds: float) -> None:
        with self._lock:
            self.by_thread[threading.get_ident()].append(seconds)

    @property
    def all(self) -> list[float]:
        with self._lock:
            return [s for waits in self.by_thread.values() for s in waits]


def check_backoff(lm: FaultyLM, sleeps: Sleeps) -> dict[int, int]:
    """Check every wait of the retry logic against the fault it followed; return how many waits
    followed the n-th consecutive failure of a call, by n.

    Within one thread, the requests of one call come in a row: a run of faults on one request is
    one call's retries (an empty completion is a failed request, retried like a raised fault).
    After the n-th fault of a run, the wait is the fault's ``Retry-After`` (a 429) or at most
    ``backoff_base * 2**(n-1)`` (full jitter), never above ``backoff_max``.
    """
    policy = lm.retry_policy
    by_attempt: dict[int, int] = defaultdict(int)
    threads = {e.thread for e in lm.events}
    assert threads >= set(sleeps.by_thread), "a wait happened in a thread that made no request"
    for thread in threads:
        waits = list(sleeps.by_thread.get(thread, []))
        run_key, run = None, 0
        for event in (e for e in lm.events if e.thread == thread):
            if event.kind not in ("timeout", "rate_limit", "server_error", "connection_reset", "empty"):
                run_key, run = None, 0
                continue
            run = run + 1 if event.key == run_key else 1
            run_key = event.key
            if run > policy.num_retries:  # the call gave up: no wait, the error propagates
                run_key, run = None, 0
                continue
            assert waits, f"no wait after fault {event}"
            wait = waits.pop(0)
            if event.kind == "rate_limit" and lm.retry_after is not None:
                assert wait == min(lm.retry_after, policy.backoff_max), (event, wait)
            else:
                ceiling = min(policy.backoff_max, policy.backoff_base * 2 ** (run - 1))
                assert 0.0 <= wait <= ceiling, (event, run, wait, ceiling)
            by_attempt[run] += 1
        assert not waits, f"{len(waits)} wait(s) followed no fault"
    return dict(by_attempt)
