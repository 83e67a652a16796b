"""End-to-end tests on the embedded model (SmolLM2-135M run by xllamacpp): real completions,
real parsing, real optimization. Skipped when the `local` extra is not installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest
from local_model import NEEDS_LOCAL, TICKETS

import lmprog
from lmprog import lm_function, metrics, traced

pytestmark = NEEDS_LOCAL
LABELS = ("billing", "bug", "feature")


@lm_function
def classify(ticket: str) -> Literal["billing", "bug", "feature"]:
    """Classify a support ticket by its topic."""


@traced
def triage(ticket: str) -> str:
    return classify(ticket)


def test_lm_function_with_demos_returns_a_typed_label(tmp_path: Path) -> None:
    classify.demos = [{"ticket": r["ticket"], "output": r["label"]} for r in TICKETS[:3]]
    try:
        with lmprog.context(lm="local", cache_dir=tmp_path, load_prompts=False), lmprog.trace() as t:
            outputs = [classify(r["ticket"]) for r in TICKETS[10:14]]
    finally:
        classify.reset()
    assert all(o in LABELS for o in outputs)
    spans = t.lm_spans()
    assert len(spans) == 4 and all(s.model == "local" and s.completion_tokens > 0 for s in spans)
    assert all(s.completion_tokens <= 48 for s in spans)  # the short-answer cap


@pytest.mark.timeout(900)
def test_bootstrap_on_the_embedded_model_attaches_demos_and_writes_the_prompt_file(tmp_path: Path) -> None:
    with lmprog.context(lm="local", cache_dir=tmp_path / "cache", prompt_dir=tmp_path / "prompts"):
        result = lmprog.optimize(
            triage,
            TICKETS[:4],
            metrics.exact_match,
            optimizer="bootstrap",
            threads=1,
            progress=False,
            max_bootstrapped_demos=1,
            max_labeled_demos=3,
            max_rounds=1,
            apply=False,
        )
    demos = result.states[classify].demos
    assert len(demos) == 3 and all(d["output"] in LABELS for d in demos)
    (path,) = result.files
    text = path.read_text()
    assert "function: test_e2e_local:classify" in text and "model: local" in text
    assert result.usage.calls >= 4


def test_two_processes_give_identical_outputs_at_temperature_zero(tmp_path: Path) -> None:
    code = (
        "import json, lmprog, sys\n"
        "from typing import Literal\n"
        "@lmprog.lm_function\n"
        "def classify(ticket: str) -> Literal['billing', 'bug', 'feature']:\n"
        "    '''Classify a support ticket by its topic.'''\n"
        f"classify.demos = {[{'ticket': r['ticket'], 'output': r['label']} for r in TICKETS[:3]]!r}\n"
        "lmprog.configure(lm='local', cache=False, load_prompts=False)\n"
        f"print(json.dumps([classify(t) for t in {[r['ticket'] for r in TICKETS[20:24]]!r}]))\n"
    )
    env = {**os.environ, "LMPROG_CACHE_DIR": str(tmp_path)}
    runs = [
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300, check=True
        )
        for _ in range(2)
    ]
    first, second = (json.loads(r.stdout.strip().splitlines()[-1]) for r in runs)
    assert first == second and all(o in LABELS for o in first)
