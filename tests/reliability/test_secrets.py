"""API keys, passed as arguments or found in the environment, never reach anything a run writes:
prompt files, traces, the response cache, the optuna study, logs, reports, cassettes, summaries.

Every file under the run's folder is scanned byte by byte, so a new artifact is covered as soon as
it is written there.
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path
from typing import Any

import pytest

import lmprog
from lmprog import evaluate
from lmprog.errors import LMError
from lmprog.lm import LM
from lmprog.optimize import optimize
from lmprog.report import write_report
from lmprog.testing import FaultyLM, ScriptedLM
from lmprog.testing.pytest_plugin import Cassette
from lmprog.trace import Trace

from ._program import DATA, Model, metric, triage

ARG_KEY = "sk-arg-A1b2C3d4E5f6G7h8"
HEADER_KEY = "hdr-Z9y8X7w6V5u4T3s2"
ENV_KEY = "sk-env-Q1w2E3r4T5y6U7i8"
SECRETS = (ARG_KEY, HEADER_KEY, ENV_KEY)


def assert_clean(root: Path, *texts: str) -> int:
    """No secret in any file under ``root`` (SQLite files and their WAL included) nor in ``texts``;
    returns how many files were scanned."""
    files = [p for p in root.rglob("*") if p.is_file()]
    for path in files:
        data = path.read_bytes()
        for secret in SECRETS:
            assert secret.encode() not in data, f"{secret} leaked into {path}"
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"{secret} leaked into {text[:200]!r}..."
    return len(files)


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)


@pytest.fixture
def env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", ENV_KEY)


def small_mipro(trainset: Any, valset: Any, tmp_path: Path, **options: Any) -> lmprog.OptimizationResult:
    return optimize(
        triage,
        trainset,
        metric,
        valset=valset,
        optimizer="mipro",
        storage=str(tmp_path / "study.db"),
        progress=False,
        num_trials=4,
        minibatch_size=4,
        num_instructions=3,
        num_demo_sets=1,
        full_eval_every=2,
        threads=4,
        **options,
    )


def test_no_artifact_of_a_run_holds_a_key(
    tmp_path: Path, env_key: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    run = tmp_path / "run"
    inner = ScriptedLM(
        Model(), cache=True, api_key=ARG_KEY, extra_headers={"Authorization": f"Bearer {HEADER_KEY}"}
    )
    lm = FaultyLM(inner, server_error=0.2, rate_limit=0.1, num_retries=10, sleep=lambda s: None)
    with lmprog.context(lm=lm, cache_dir=run / "cache", prompt_dir=run / "prompts"):
        result = small_mipro(DATA[:8], DATA[8:16], run)
        write_report(result, run / "report.html", model=lm.model)
        ev = evaluate(triage, DATA[:12], metric, progress=False)
        Trace.from_spans([s for r in ev.results for s in r.trace.spans]).to_jsonl(run / "trace.jsonl")
        cassette = Cassette(run / "cassettes" / "run.yaml", "test_run", mode="record")
        with cassette.activate():
            evaluate(triage, DATA[12:16], metric, progress=False)
        cassette.save()

    # the keys did reach the provider, and the run wrote every kind of artifact
    assert all(c.params["api_key"] == ARG_KEY for c in inner.calls)
    assert all(HEADER_KEY in c.params["extra_headers"]["Authorization"] for c in inner.calls)
    assert lm.raised > 0 and result.files
    names = {p.name for p in run.rglob("*")}
    assert {"report.html", "trace.jsonl", "run.yaml", "study.db", "responses.sqlite"} <= names
    assert any(n.endswith(".yaml") for n in names if n.startswith("_program."))
    scanned = assert_clean(
        run,
        log_text(caplog),
        result.summary(),
        repr(result.details),
        ev.summary(),
        repr(lm),
        repr(inner),
    )
    assert scanned >= 6


def test_provider_errors_that_echo_a_key_are_redacted_everywhere(
    tmp_path: Path, env_key: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    run = tmp_path / "run"
    echo = Exception(f"Incorrect API key provided: {ARG_KEY}. Also tried {ENV_KEY}.")
    failing = LM(
        "openai/gpt-4o-mini", api_key=ARG_KEY, mock_response=echo, num_retries=1, sleep=lambda s: None
    )
    working = LM("openai/gpt-4o-mini", api_key=ARG_KEY, mock_response="billing", cache=True)
    with lmprog.context(lm=failing, cache_dir=run / "cache", prompt_dir=run / "prompts"):
        ev = evaluate(triage, DATA[:4], metric, progress=False)
        Trace.from_spans([s for r in ev.results for s in r.trace.spans]).to_jsonl(run / "trace.jsonl")
    assert len(ev.errors) == 4
    assert all("Incorrect API key provided: ***" in (r.error or "") for r in ev.errors)
    with lmprog.context(lm=working, cache_dir=run / "cache", prompt_dir=run / "prompts"):
        # the proposer fails: the optimization stops with the provider's (redacted) error
        with pytest.raises(LMError) as info:
            small_mipro(DATA[:8], DATA[8:16], run, proposer_lm=failing)
    assert "Incorrect API key provided: ***" in str(info.value)
    assert_clean(
        run,
        log_text(caplog),
        *(r.error or "" for r in ev.results),
        *(formatted(r.exception) for r in ev.results),
        formatted(info.value),  # what an uncaught error prints, chained errors included
    )


def formatted(error: BaseException | None) -> str:
    return "".join(traceback.format_exception(error)) if error is not None else ""
