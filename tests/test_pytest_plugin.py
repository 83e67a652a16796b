"""The pytest plugin: record cassettes with --lmprog-record, replay them offline, fail on a miss."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

pytest_plugins = ["pytester"]

# The program under test. `REAL` is the "real" LM: a ScriptedLM that answers from a function and
# counts its requests, so the tests can tell whether a provider was reached.
PROGRAM = '''
from __future__ import annotations

import asyncio
import os

import pytest

import lmprog
from lmprog import lm_function
from lmprog.testing import ScriptedLM

REAL = ScriptedLM(lambda messages: "billing" if "charged" in messages[-1]["content"] else "bug",
                  model="real/model")
EXPLICIT = ScriptedLM(lambda messages: "feature", model="explicit/model")


@lm_function
def classify(ticket: str) -> str:
    """Classify a support ticket by its topic."""


@lm_function(lm=EXPLICIT)
async def suggest(ticket: str) -> str:
    """Suggest a feature."""


@pytest.fixture(autouse=True)
def configured(tmp_path):
    with lmprog.context(lm=REAL, load_prompts=False, cache=True, cache_dir=tmp_path):
        yield


@pytest.mark.lmprog
def test_classify():
    assert classify("I was charged twice") == "billing"
    assert classify("The app crashes") == "bug"
    assert asyncio.run(suggest("dark mode please")) == "feature"
    with open(os.environ["REQUESTS_LOG"], "a") as log:
        log.write(f"{len(REAL.calls) + len(EXPLICIT.calls)}\\n")


def test_not_marked():
    assert classify("I was charged twice") == "billing"
'''


@pytest.fixture
def project(pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    log = tmp_path / "requests.log"
    monkeypatch.setenv("REQUESTS_LOG", str(log))
    pytester.makepyfile(test_tickets=PROGRAM)
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Run the inner session (without hypothesis' slow end-of-session summary)."""
    return pytester.runpytest("-p", "no:hypothesispytest", "-p", "no:cacheprovider", *args)


def requests_seen(tmp_path: Path) -> list[int]:
    return [int(line) for line in (tmp_path / "requests.log").read_text().split()]


def test_record_then_replay_offline(project: pytest.Pytester, tmp_path: Path) -> None:
    recorded = run(project, "--lmprog-record")
    recorded.assert_outcomes(passed=2)
    cassette = project.path / "cassettes" / "test_tickets" / "test_classify.yaml"
    assert cassette.exists()
    doc = yaml.safe_load(cassette.read_text())
    assert doc["test"] == "test_tickets.py::test_classify"
    calls = doc["calls"]
    assert [c["function"] for c in calls] == ["classify", "classify", "suggest"]
    assert {c["model"] for c in calls} == {"real/model", "explicit/model"}
    assert [c["responses"][0]["text"] for c in calls] == ["billing", "bug", "feature"]
    assert requests_seen(tmp_path) == [3]  # the real LMs answered while recording
    first = cassette.read_bytes()

    # Replay: the same answers, and no request reaches either LM (explicit lm= included).
    replayed = run(project)
    replayed.assert_outcomes(passed=2)
    assert requests_seen(tmp_path) == [3, 0]

    # Recording the same calls again writes the same bytes.
    run(project, "--lmprog-record").assert_outcomes(passed=2)
    assert cassette.read_bytes() == first


def test_missing_call_names_the_test_and_the_call(project: pytest.Pytester) -> None:
    run(project, "--lmprog-record").assert_outcomes(passed=2)
    # The test now asks something the cassette never saw.
    project.makepyfile(test_tickets=PROGRAM.replace('"The app crashes"', '"Export to PDF is broken"'))
    result = run(
        project,
    )
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_tickets.py::test_classify: LM call not in the cassette*test_classify.yaml*",
            "*function: classify, model: real/model*",
            "*first user message: 'ticket: Export to PDF is broken'*",
            "*pytest --lmprog-record test_tickets.py::test_classify*",
        ]
    )


def test_a_swallowed_miss_still_fails_and_no_cassette_is_reported(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_swallow=textwrap.dedent(
            '''
            import pytest
            import lmprog
            from lmprog import lm_function
            from lmprog.testing import ScriptedLM

            @lm_function
            def echo(text: str) -> str:
                """Repeat the text."""

            @pytest.mark.lmprog(cassette="shared")
            def test_swallowed():
                with lmprog.context(lm=ScriptedLM(["never used"]), load_prompts=False, cache=False):
                    try:
                        echo("hello")
                    except Exception:
                        pass  # a program that hides errors must not hide the missing recording
            '''
        )
    )
    result = run(
        pytester,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_swallow.py::test_swallowed: LM call not in the "
            "cassette*cassettes/test_swallow/shared.yaml*",
            "*function: echo, model: scripted*",
            "*the cassette does not exist yet*",
        ]
    )


def test_a_changed_model_is_pointed_out(project: pytest.Pytester) -> None:
    run(project, "--lmprog-record").assert_outcomes(passed=2)
    project.makepyfile(test_tickets=PROGRAM.replace('model="real/model"', 'model="other/model"'))
    result = run(
        project,
    )
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*the cassette has these messages for model 'real/model'*'other/model'*"])


def test_fixture_gives_the_cassette(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_fixture=textwrap.dedent(
            '''
            import lmprog
            from lmprog import lm_function
            from lmprog.testing import ScriptedLM

            @lm_function
            def echo(text: str) -> str:
                """Repeat the text."""

            def test_uses_fixture(lmprog_cassette):
                assert lmprog_cassette.path.name == "test_uses_fixture.yaml"
                with lmprog.context(lm=ScriptedLM(["hi"]), load_prompts=False):
                    assert echo("hi") == "hi"
                assert lmprog_cassette.mode in ("record", "replay")
            '''
        )
    )
    run(pytester, "--lmprog-record").assert_outcomes(passed=1)
    run(
        pytester,
    ).assert_outcomes(passed=1)
    assert (pytester.path / "cassettes" / "test_fixture" / "test_uses_fixture.yaml").exists()


def test_intercept_requests_sees_every_request_and_bypasses_the_cache(tmp_path: Path) -> None:
    from lmprog import settings
    from lmprog.lm import Completion, InterceptedRequest, intercept_requests
    from lmprog.testing import ScriptedLM

    lm = ScriptedLM(["from the model", "again"], cache=True, api_key="sk-never-recorded-123")
    messages = [{"role": "user", "content": "hello"}]
    seen: list[InterceptedRequest] = []

    def hook(request: InterceptedRequest, send: object) -> Completion:
        seen.append(request)
        return Completion(text="from the hook")

    with settings.context(cache_dir=tmp_path):
        assert lm.complete(messages).text == "from the model"  # now in the cache
        assert lm.complete(messages).text == "from the model"  # a cache hit
        with intercept_requests(hook):
            assert lm.complete(messages).text == "from the hook"
        assert lm.complete(messages).text == "from the model"  # hook gone: the cache again
    assert len(seen) == 1 and seen[0].lm is lm and seen[0].messages == messages
    assert "api_key" not in seen[0].params and seen[0].params["temperature"] == 0.0
    assert len(lm.calls) == 1
