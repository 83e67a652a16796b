"""Bad input: malformed data, metrics and programs that raise, outputs that never parse, a provider
that goes down mid-run. Each gets a clear error naming the row or the function, and nothing
computed before is lost (nor replaced by garbage)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import lmprog
from lmprog import evaluate, lm_function, traced
from lmprog.cache import CACHE_FILENAME
from lmprog.data import load_dataset
from lmprog.errors import DatasetError, LMError, SignatureError, UsageError
from lmprog.lm import Messages
from lmprog.optimize import optimize
from lmprog.testing import ScriptedLM

from ._program import DATA, Model, classify, metric, triage


def run(program: Any, data: Any, score: Any = metric, lm: Any = None) -> lmprog.EvaluationResult:
    with lmprog.context(lm=lm or ScriptedLM(Model()), load_prompts=False):
        return evaluate(program, data, score, threads=4, progress=False)


def test_rows_with_missing_or_odd_inputs_fail_alone_naming_their_line(tmp_path: Path) -> None:
    rows = [
        {"ticket": "money problem", "label": "billing"},
        {"question": "where is ticket?", "label": "bug"},  # no input
        {"ticket": 42, "label": "bug"},  # wrong types: rendered as they are
        {"ticket": None, "label": "bug"},
        {"ticket": ["broken", {"nested": [1, 2]}], "label": "bug"},
        {"ticket": "wish problem", "label": "feature"},
    ]
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = run(triage, path)
    assert len(result.results) == 6
    (missing,) = result.errors
    assert missing.index == 1
    assert missing.describe_error().startswith(f"{path}, line 2")
    assert "ticket" in missing.describe_error()
    assert [r.score for r in result.results] == [100.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert result.results[2].prediction == "billing"


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("empty.jsonl", "", "the file is empty"),
        ("blank.jsonl", "\n  \n", "the file is empty"),
        ("object.json", '{"ticket": "x"}', "line 1: expected a JSON array"),
        ("broken.jsonl", '{"ticket": "a"}\n{"ticket": \n', "line 2: invalid JSON"),
        ("list_row.jsonl", '{"ticket": "a"}\n["a", "b"]\n', "line 2"),
        ("ragged.csv", "ticket,label\na,b\nc\n", "line 3: expected 2 columns"),
        ("latin1.csv", "ticket\ncaf\xe9\n", "line 2: not valid utf-8"),
        ("data.txt", "ticket\n", "unsupported data format"),
    ],
)
def test_malformed_data_files_name_the_file_and_line(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(text.encode("latin-1"))
    for attempt in (
        lambda: load_dataset(path),
        lambda: run(triage, path),
        lambda: optimize(triage, path, metric, optimizer="labeled", save=False),
    ):
        with pytest.raises(DatasetError) as info:
            attempt()
        assert str(path) in str(info.value) and message in str(info.value)


def test_no_examples_at_all() -> None:
    assert run(triage, []).results == []
    with pytest.raises(UsageError, match="non-empty training set"):
        optimize(triage, [], metric, save=False)


def test_a_metric_that_raises_or_returns_nonsense_fails_that_example_only() -> None:
    def picky(example: Any, prediction: Any) -> Any:
        ticket = example["ticket"]
        if ticket.endswith(" 1"):
            raise KeyError("score")
        if ticket.endswith(" 2"):
            return float("nan")
        if ticket.endswith(" 3"):
            return "yes"
        return prediction == example["label"]

    result = run(triage, DATA[:15], picky)
    by_suffix = {r.example["ticket"].rsplit(" ", 1)[1]: r for r in result.results}
    assert by_suffix["1"].error == "metric picky failed: KeyError: 'score'"
    assert "metric picky failed" in by_suffix["2"].error and "nan" in by_suffix["2"].error
    assert "metric picky failed" in by_suffix["3"].error and "'yes'" in by_suffix["3"].error
    assert len(result.errors) == 9
    assert result.score == pytest.approx(100 * 2 / 15)  # finite: a NaN never reaches the mean


@traced
def fragile(ticket: str) -> str:
    if "broken" in ticket:
        raise RuntimeError(f"cannot handle {ticket!r}")
    return triage(ticket)


def test_a_program_that_raises_fails_that_example_with_its_message() -> None:
    result = run(fragile, DATA[:12])
    assert len(result.errors) == 4
    for r in result.errors:
        assert r.error.startswith("RuntimeError: cannot handle") and r.example["ticket"] in r.error
        assert isinstance(r.exception, RuntimeError)
    assert all(r.ok for r in result.results if "broken" not in r.example["ticket"])


def test_an_unsupported_return_type_is_refused_at_definition_naming_the_function() -> None:
    with pytest.raises(SignatureError) as info:

        @lm_function
        def pick(ticket: str) -> type:
            """Pick."""

    assert "pick" in str(info.value) and "test_bad_input.py" in str(info.value)
    assert "unsupported type" in str(info.value)


def test_outputs_that_never_parse_fail_their_examples_naming_the_function() -> None:
    result = run(triage, DATA[:6], lm=ScriptedLM(lambda m: "I am not sure, maybe billing?"))
    assert len(result.errors) == 6
    for r in result.errors:
        assert r.error.startswith("OutputParseError: ") and classify.signature.qualname in r.error
        assert r.exception.attempts == 2  # a format failure is retried once (max_retries=2)


def mipro(lm: Any, tmp_path: Path, score: Any = metric) -> lmprog.OptimizationResult:
    with lmprog.context(lm=lm, load_prompts=False, cache_dir=tmp_path / "cache"):
        return optimize(
            triage,
            DATA[:12],
            score,
            valset=DATA[12:24],
            optimizer="mipro",
            save=False,
            apply=False,
            storage=str(tmp_path / "study.db"),
            progress=False,
            num_trials=6,
            minibatch_size=6,
            num_instructions=4,
            num_demo_sets=1,
            full_eval_every=3,
            threads=4,
        )


def study_rows(tmp_path: Path) -> dict[tuple[str, int], tuple[str, float | None]]:
    with sqlite3.connect(tmp_path / "study.db") as conn:
        rows = conn.execute(
            "SELECT s.study_name, t.number, t.state, v.value FROM trials t "
            "JOIN studies s ON s.study_id = t.study_id "
            "LEFT JOIN trial_values v ON v.trial_id = t.trial_id"
        ).fetchall()
    return {(name, number): (state, value) for name, number, state, value in rows}


class Counting(ScriptedLM):
    """A ScriptedLM that can go down (every request refused) and counts requests by messages."""

    def __init__(self, refuse_after: int | None = None) -> None:
        super().__init__(Model(), cache=True)
        self.refuse_after = refuse_after

    def _request(self, messages: Messages, params: dict[str, Any]) -> Any:
        if self.refuse_after is not None and len(self.calls) >= self.refuse_after:
            raise LMError("Invalid API key (revoked)", model=self.model, status_code=401)
        return super()._request(messages, params)


def test_a_provider_outage_stops_the_run_keeping_what_was_done_and_storing_no_garbage(
    tmp_path: Path,
) -> None:
    clean = mipro(Counting(), tmp_path / "clean")

    down = Counting(refuse_after=120)
    with pytest.raises(LMError) as info:
        mipro(down, tmp_path)
    assert info.value.status_code == 401
    assert "failed because the provider did" in str(info.value) and "run it again to resume" in str(
        info.value
    )
    before = study_rows(tmp_path)
    finished = {k: v for k, v in before.items() if v[0] == "COMPLETE"}
    assert finished, "trials finished before the outage"
    assert all(value is not None and value > 0 for _, value in finished.values()), "no outage score stored"
    with sqlite3.connect(tmp_path / "cache" / CACHE_FILENAME) as conn:
        (cached,) = conn.execute("SELECT COUNT(*) FROM responses").fetchone()
    assert cached == len(down.calls) == 120

    up = Counting()
    result = mipro(up, tmp_path)
    after = study_rows(tmp_path)
    assert finished.items() <= after.items()
    asked_before = {json.dumps(c.messages) for c in down.calls}
    assert not asked_before.intersection(json.dumps(c.messages) for c in up.calls)
    assert result.score == clean.score == 100.0
    assert result.states[classify].instruction.startswith("GOOD")


def test_an_interrupted_optimization_keeps_its_trials_and_cache(tmp_path: Path) -> None:
    calls = {"n": 0}

    def interrupted(example: Any, prediction: Any, trace: Any = None) -> bool:
        calls["n"] += 1
        if calls["n"] == 80:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the search
        return metric(example, prediction)

    first = Counting()
    with pytest.raises(KeyboardInterrupt):
        mipro(first, tmp_path, score=interrupted)
    before = {k: v for k, v in study_rows(tmp_path).items() if v[0] == "COMPLETE"}
    assert before

    again = Counting()
    result = mipro(again, tmp_path)
    assert before.items() <= study_rows(tmp_path).items()
    assert not {json.dumps(c.messages) for c in first.calls}.intersection(
        json.dumps(c.messages) for c in again.calls
    )
    assert result.details.trials == 6 and result.score == 100.0
