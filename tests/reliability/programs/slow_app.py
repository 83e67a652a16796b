"""A program for the kill-and-resume tests, run by ``lmprog optimize`` in a child process.

Its LM is deterministic and slow (``$SLOW_APP_DELAY`` seconds per request), answers from the
messages alone (so a resumed process answers exactly as the killed one would have), and appends one
line per event to ``$SLOW_APP_LOG``: ``request <key>`` when a request reaches the "provider", and
``done <key>``/``hit <key>`` when a completion is returned (after it was cached).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any, Literal

import lmprog
from lmprog import lm_function, traced
from lmprog.lm import Completion, Messages
from lmprog.testing import ScriptedLM

LABELS = {"billing": "money", "bug": "broken", "feature": "wish"}
GOOD_TIP = "Explain what each possible answer means"


@lm_function
def classify(ticket: str) -> Literal["billing", "bug", "feature"]:
    """Classify the ticket."""


@traced
def triage(ticket: str) -> str:
    return classify(ticket)


def metric(example: Any, prediction: Any, trace: Any = None) -> bool:
    return bool(prediction == example["label"])


def key(messages: Messages) -> str:
    return hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:20]


def answer(messages: Messages) -> str:
    system, user = messages[0]["content"], messages[-1]["content"]
    if system.startswith("Describe this data set"):
        return "Short support tickets labelled billing, bug or feature."
    if system.startswith("Write a better instruction"):
        variant = key(messages)[:4]
        if GOOD_TIP in user:
            return f"GOOD: map the keyword in the ticket to its label, variant {variant}."
        return f"Think about the ticket carefully, variant {variant}."
    ticket = user.rsplit("ticket: ", 1)[-1]
    if system.startswith("GOOD"):
        return next((label for label, word in LABELS.items() if word in ticket), "billing")
    return "billing"


def log(event: str, messages: Messages) -> None:
    with open(os.environ["SLOW_APP_LOG"], "a", encoding="utf-8") as f:
        f.write(f"{event} {key(messages)}\n")


class SlowLM(ScriptedLM):
    def _request(self, messages: Messages, params: dict[str, Any]) -> Completion:
        log("request", messages)
        time.sleep(float(os.environ.get("SLOW_APP_DELAY", "0.02")))
        return super()._request(messages, params)

    def complete(self, messages: Any, **params: Any) -> Completion:
        completion = super().complete(messages, **params)
        log("hit" if completion.cache_hit else "done", messages)
        return completion


lmprog.configure(lm=SlowLM(answer, cache=True))
