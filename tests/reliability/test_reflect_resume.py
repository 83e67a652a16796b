"""A reflective optimization killed with SIGKILL mid-run, then run again: it resumes from its stored
iterations and writes the prompt files an uninterrupted run writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from lmprog import promptfile

APP = textwrap.dedent(
    '''
    import time
    from typing import Any, Literal

    from lmprog import Feedback, lm_function, traced

    LABELS = {"billing": "money", "bug": "broken", "feature": "wish"}

    @lm_function
    def topic(ticket: str) -> Literal["billing", "bug", "feature"]:
        """Classify the ticket."""

    @lm_function
    def urgency(ticket: str) -> Literal["urgent", "calm"]:
        """Rate the urgency of the ticket."""

    @traced
    def triage(ticket: str) -> dict[str, str]:
        return {"topic": topic(ticket), "urgency": urgency(ticket)}

    DATA = [
        {"ticket": f"{word} problem {i}{' now' if i % 2 else ''}", "topic": label,
         "urgency": "urgent" if i % 2 else "calm"}
        for i in range(6) for label, word in LABELS.items()
    ]

    def metric(example: Any, prediction: Any) -> Feedback:
        wrong = [k for k in ("topic", "urgency") if prediction[k] != example[k]]
        texts = {k: f"expected {k} {example[k]}, got {prediction[k]}" for k in wrong}
        return Feedback((2 - len(wrong)) / 2, "; ".join(texts.values()) or None, for_function=texts)

    def model(messages: list[dict[str, str]]) -> str:
        time.sleep(0.02)  # slow enough to be killed mid-run
        system, user = messages[0]["content"], messages[-1]["content"]
        if system.startswith("Improve the instruction"):
            if "name: topic" in user:
                return "Map the keyword to the topic: money is billing, broken is bug, wish is feature."
            return "Say urgent when the ticket says now, otherwise say calm."
        ticket = user.rsplit("ticket: ", 1)[-1].split("\\n", 1)[0]
        if system.startswith("Map the keyword"):
            return next(label for label, word in LABELS.items() if word in ticket)
        if system.startswith("Say urgent"):
            return "urgent" if "now" in ticket else "calm"
        return "billing" if system.startswith("Classify") else "calm"
    '''
)

RUN = textwrap.dedent(
    """
    import lmprog
    from lmprog.testing import ScriptedLM
    from app import DATA, metric, model, triage

    with lmprog.context(lm=ScriptedLM(model, cache=True), cache_dir="cache"):
        lmprog.optimize(triage, DATA[:9], metric, valset=DATA[9:], optimizer="reflect", seed=3,
                        num_iterations=5, minibatch_size=3, storage="runs.json", threads=1,
                        progress=False)
    """
)


def iterations(folder: Path) -> int:
    try:
        studies = json.loads((folder / "runs.json").read_text())["studies"]
    except (OSError, ValueError):
        return 0
    return sum(len(s["iterations"]) for s in studies.values())


def start(folder: Path) -> subprocess.Popen[bytes]:
    (folder / "app.py").write_text(APP)
    (folder / "run.py").write_text(RUN)
    env = {**os.environ, "PYTHONPATH": str(folder)}
    return subprocess.Popen(
        [sys.executable, "run.py"], cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def finish(proc: subprocess.Popen[bytes]) -> None:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out.decode()


def prompt_files(folder: Path) -> dict[str, dict[str, object]]:
    docs = {}
    for path in sorted((folder / "prompts").glob("*.yaml")):
        doc = promptfile.read(path)
        doc.pop("provenance")
        docs[path.name] = doc
    return docs


def test_a_killed_reflective_run_resumes_to_the_prompt_files_of_an_uninterrupted_one(tmp_path: Path) -> None:
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    clean.mkdir()
    killed.mkdir()
    finish(start(clean))
    for at in (1, 3):  # killed after the first, then the third stored iteration
        proc = start(killed)
        deadline = time.monotonic() + 120
        while iterations(killed) < at:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "timed out waiting for the child"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert iterations(killed) < 5, "the child finished before it was killed"
    finish(start(killed))
    assert iterations(killed) == iterations(clean) == 5
    assert prompt_files(killed) == prompt_files(clean)
    assert prompt_files(clean), "the run wrote prompt files"
    stored = json.loads((killed / "runs.json").read_text())["studies"]
    assert stored == json.loads((clean / "runs.json").read_text())["studies"]
