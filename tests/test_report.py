"""The HTML optimization report: content, escaping, secrets, and rendering in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Literal

import pytest

from lmprog import lm_function
from lmprog.function import LMFunction, State
from lmprog.optimize import Candidate, OptimizationResult
from lmprog.report import render_report, write_report
from lmprog.usage import Usage

SECRET = "sk-test-0123456789abcdef"


@lm_function
def classify(ticket: str) -> Literal["billing", "bug", "feature"]:
    """Classify a support ticket by its topic."""


def make_result(fn: LMFunction = classify, **details: object) -> OptimizationResult:
    chosen = State(
        instruction="Pick the topic. Never answer <script>alert(1)</script>.",
        demos=(
            {"ticket": "I was charged twice", "output": "billing"},
            {"ticket": "It crashes", "output": "bug"},
        ),
    )
    scores = [40.0, 55.0, 50.0, 80.0, 75.0]
    candidates = [
        Candidate({fn: State()}, scores[0], "zero-shot", 20, prompt_tokens=60.0),
        *(
            Candidate(
                {fn: chosen if s == 80.0 else State(demos=chosen.demos[:1])},
                s,
                f"bootstrap #{i}",
                20,
                90.0 + i,
            )
            for i, s in enumerate(scores[1:])
        ),
    ]
    return OptimizationResult(
        optimizer="random_search",
        states={fn: chosen},
        score=80.0,
        baseline_score=40.0,
        candidates=candidates,
        usage=Usage(
            calls=120, requests=90, cache_hits=30, prompt_tokens=9000, completion_tokens=400, cost=0.0123
        ),
        seed=7,
        details=dict(details),
    )


def test_report_shows_scores_trials_candidates_and_usage() -> None:
    page = render_report(make_result(), program="pipeline", model="openai/gpt-4o-mini", estimated_calls=150)
    assert page.startswith("<!DOCTYPE html>")
    assert "lmprog optimization: pipeline" in page
    for text in (
        "40.0",
        "80.0",
        "+40.0",
        "120 / ~150 est.",
        "$0.0123",
        "openai/gpt-4o-mini",
        "random_search",
    ):
        assert text in page
    trials_svg = page.split("id='trials'")[1].split("</section>")[0]
    assert trials_svg.count("class='trial'") == 5  # one dot per trial
    points = re.search(r"<polyline points='([^']+)' class='best'", trials_svg)
    assert points is not None and len(points.group(1).split()) == 5
    ys = [float(p.split(",")[1]) for p in points.group(1).split()]
    assert ys == sorted(ys, reverse=True)  # best-so-far never gets worse (SVG y grows downwards)
    assert "class='baseline'" in trials_svg
    bars = page.split("id='candidates'")[1].split("</section>")[0]
    assert bars.count("class='bar'") == 5
    assert "bootstrap #2: 80.0" in bars
    assert "Score against prompt size (5 candidates)" in page
    assert "I was charged twice" in page  # the chosen demos


def test_report_uses_the_trial_history_when_the_optimizer_keeps_one() -> None:
    history = [{"number": i, "score": s} for i, s in enumerate([10, 30, 20, 60, 50, 90, 70])]
    page = render_report(make_result(trial_history=history))
    trials_svg = page.split("id='trials'")[1].split("</section>")[0]
    assert trials_svg.count("class='trial'") == 7
    assert "trial 5: 90.0" in trials_svg


def test_report_reads_mipro_details_by_attribute() -> None:
    from lmprog.optimize.mipro import MiproDetails, TrialRecord

    result = make_result()
    history = [TrialRecord(i, i // 3, s, f"k{i}") for i, s in enumerate([20.0, 45.0, 95.0, 70.0])]
    result.details = MiproDetails("mipro-x", 99, 4, [("bad", "too short")], {"m:f": ["A."]}, history)
    result.details["validation"] = {"key": "v", "examples": 20}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deprecated read by key
        page = render_report(result)
    trials_svg = page.split("id='trials'")[1].split("</section>")[0]
    assert trials_svg.count("class='trial'") == 4 and "trial 2: 95.0" in trials_svg
    block = page.split("id='details'")[1]
    assert "mipro-x" in block and "too short" in block and "&quot;examples&quot;: 20" in block


def test_report_shows_the_mipro_plan() -> None:
    from lmprog import Budget
    from lmprog.optimize import Task
    from lmprog.optimize.mipro import MiproConfig, MiproDetails
    from lmprog.optimize.mipro_plan import plan_run

    rows = [{"text": "t", "label": "a"}] * 16
    task = Task(print, rows, rows, lambda e, p, trace=None: 1.0, Budget(max_calls=48), seed=0, functions=[])
    plan = plan_run(MiproConfig(num_trials=4, minibatch_size=8, retrieved_demos=0), task)
    result = make_result()
    result.details = MiproDetails("mipro-x", plan.calls, 0, [], {}, [], plan=plan)
    cost = render_report(result).split("id='cost'")[1].split("</section>")[0]
    assert "<th>plan</th>" in cost and "of max_calls 48" in cost and "scaled down: " in cost


def test_report_escapes_content_and_is_self_contained() -> None:
    page = render_report(make_result())
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert not re.search(r"(src|href)\s*=", page, re.I)
    assert "http://" not in page and "https://" not in page


def test_report_never_shows_api_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    result = make_result(proposer={"api_key": SECRET, "model": "openai/gpt-4o"})
    fn = next(iter(result.states))
    result.states[fn] = State(instruction=f"Use the key {SECRET} nowhere.", demos=())
    page = render_report(result)
    assert SECRET not in page
    assert "[REDACTED]" in page


def test_report_drops_credential_parameters_from_details() -> None:
    page = render_report(make_result(proposer={"api_key": "not-in-the-environment-42", "model": "x/y"}))
    assert "not-in-the-environment-42" not in page
    assert "x/y" in page


def test_report_without_candidates() -> None:
    result = OptimizationResult(optimizer="labeled", states={classify: State()}, score=None)
    page = render_report(result)
    assert "No trial was scored." in page
    assert "scored no candidates" in page


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.mark.skipif(
    _chromium() is None, reason="headless Chromium not installed (apt-get install -y chromium)"
)
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    path = write_report(make_result(), tmp_path / "report.html", program="pipeline")
    browser = _chromium()
    assert browser is not None
    flags = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        [*flags, "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    # The browser parsed the document: the charts are live SVG elements with their marks.
    assert "<title>lmprog optimization: pipeline</title>" in dom
    assert dom.count("<svg") >= 4
    assert dom.count('class="trial"') == 5
    assert dom.count('class="bar"') == 5
    shot = tmp_path / "report.png"
    subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=800,1800", path.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
