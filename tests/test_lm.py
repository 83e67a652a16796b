from __future__ import annotations

import asyncio
import logging
import os
import random
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from lmprog import settings
from lmprog.errors import BudgetExceededError, LMError, TransientLMError, UsageError
from lmprog.lm import LM, BaseLM, Completion, resolve_lm
from lmprog.lm._ratelimit import RateLimiter
from lmprog.lm._retry import RetryPolicy
from lmprog.usage import Usage, track

ROOT = Path(__file__).resolve().parents[1]
FAKE_KEY = "sk-FAKE-0123456789abcdef-never-log"
MESSAGES = [{"role": "user", "content": "Name a colour."}]


class StubLM(BaseLM):
    """A BaseLM whose provider replays ``outcomes`` (a string to return, an exception to raise)."""

    def __init__(self, outcomes: Sequence[str | BaseException], **kwargs: Any) -> None:
        self.sleeps: list[float] = []
        kwargs.setdefault("sleep", self.sleeps.append)
        kwargs.setdefault("cache", False)
        super().__init__("stub/model", **kwargs)
        self.outcomes = list(outcomes)
        self.sent: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def _request(self, messages: list[dict[str, str]], params: dict[str, Any]) -> Completion:
        with self._lock:
            self.sent.append(params)
            outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return Completion(text=outcome, usage=Usage(prompt_tokens=7, completion_tokens=3, cost=0.01))


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path) -> Iterator[None]:
    with settings.context(lm=None, cache=False, cache_dir=tmp_path, temperature=0.0, max_tokens=512):
        yield


def transient(**kwargs: Any) -> TransientLMError:
    return TransientLMError("overloaded", status_code=503, **kwargs)


# --- usage ---------------------------------------------------------------------------------


def test_completion_reports_its_own_usage_and_the_lm_accumulates() -> None:
    lm = StubLM(["blue"])
    c = lm.complete(MESSAGES)
    assert c.text == "blue" and c.model == "stub/model" and not c.cache_hit
    assert c.usage == Usage(
        calls=1, requests=1, cache_hits=0, prompt_tokens=7, completion_tokens=3, cost=0.01
    )
    assert c.attempts == 1 and c.latency >= 0
    lm.complete(MESSAGES)
    assert lm.usage == Usage(calls=2, requests=2, prompt_tokens=14, completion_tokens=6, cost=0.02)
    lm.reset_usage()
    assert lm.usage == Usage()


def test_cache_hits_count_calls_and_tokens_but_no_requests_or_cost() -> None:
    lm = StubLM(["blue"], cache=True)
    lm.complete(MESSAGES)
    hit = lm.complete(MESSAGES)
    assert hit.cache_hit and hit.attempts == 0
    assert hit.usage == Usage(
        calls=1, requests=0, cache_hits=1, prompt_tokens=7, completion_tokens=3, cost=0.0
    )
    assert lm.usage == Usage(
        calls=2, requests=1, cache_hits=1, prompt_tokens=14, completion_tokens=6, cost=0.01
    )
    assert len(lm.sent) == 1


def test_usage_is_exact_under_many_threads() -> None:
    lm = StubLM(["blue"])

    def work() -> None:
        for _ in range(25):
            lm.complete(MESSAGES)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert lm.usage.calls == 200 and lm.usage.prompt_tokens == 1400


def test_usage_scopes_see_every_request_retries_included_and_cache_hits() -> None:
    lm = StubLM([transient(), "blue"], cache=True)
    with track() as scope:
        first = lm.complete(MESSAGES)
        lm.complete(MESSAGES)  # cache hit
    assert scope.total == Usage(
        calls=2, requests=2, cache_hits=1, prompt_tokens=14, completion_tokens=6, cost=0.01, failed_requests=1
    )
    # one name, one meaning: the LM counts the failed request as the scope (and a budget) does
    assert lm.usage == scope.total
    assert first.usage.requests == first.attempts == 2 and first.usage.failed_requests == 1


def test_a_usage_scope_limit_stops_requests_before_they_reach_the_provider() -> None:
    def at_most_one(used: Usage) -> None:
        if used.requests > 1:
            raise BudgetExceededError("max_calls", 1, used.requests - 1)

    lm = StubLM(["blue"])
    with track(limit=at_most_one):
        lm.complete(MESSAGES)
        with pytest.raises(BudgetExceededError):
            lm.complete(MESSAGES, temperature=0.5)
    assert len(lm.sent) == 1 and lm.sleeps == []


# --- retries -------------------------------------------------------------------------------


def test_transient_errors_are_retried_with_jittered_exponential_backoff() -> None:
    lm = StubLM([transient(), transient(), transient(), "blue"], backoff_base=0.5, backoff_max=30.0)
    c = lm.complete(MESSAGES)
    assert c.text == "blue" and c.attempts == 4
    assert len(lm.sleeps) == 3
    for n, slept in enumerate(lm.sleeps):
        assert 0.0 <= slept <= 0.5 * 2**n
    assert lm.usage.calls == 1 and lm.usage.requests == 4 and lm.usage.failed_requests == 3
    assert c.usage == lm.usage


def test_backoff_never_exceeds_backoff_max() -> None:
    lm = StubLM([transient()] * 6 + ["ok"], backoff_base=10.0, backoff_max=0.25, num_retries=6)
    lm.complete(MESSAGES)
    assert len(lm.sleeps) == 6 and max(lm.sleeps) <= 0.25


def test_retry_after_is_honoured_and_capped() -> None:
    lm = StubLM([transient(retry_after=2.5), transient(retry_after=500.0), "ok"], backoff_max=30.0)
    lm.complete(MESSAGES)
    assert lm.sleeps == [2.5, 30.0]


def test_after_the_last_retry_the_last_transient_error_is_raised() -> None:
    errors = [transient(), transient(), transient()]
    lm = StubLM([*errors, "never"], num_retries=2)
    with pytest.raises(TransientLMError) as info:
        lm.complete(MESSAGES)
    assert info.value is errors[2]
    assert isinstance(info.value, LMError)
    assert len(lm.sent) == 3 and len(lm.sleeps) == 2
    assert lm.usage == Usage(requests=3, failed_requests=3)  # no completion, three requests spent


@pytest.mark.parametrize("error", [LMError("bad key", status_code=401), ValueError("bug")])
def test_non_transient_errors_are_raised_at_once(error: BaseException) -> None:
    lm = StubLM([error, "never"])
    with pytest.raises(type(error)) as info:
        lm.complete(MESSAGES)
    assert info.value is error
    assert len(lm.sent) == 1 and lm.sleeps == []


def test_num_retries_zero_means_a_single_attempt() -> None:
    lm = StubLM([transient(), "ok"], num_retries=0)
    with pytest.raises(TransientLMError):
        lm.complete(MESSAGES)
    assert len(lm.sent) == 1


def test_acomplete_retries_with_the_injected_sleep() -> None:
    lm = StubLM([transient(retry_after=1.5), "async ok"])
    c = asyncio.run(lm.acomplete(MESSAGES))
    assert c.text == "async ok" and c.attempts == 2
    assert lm.sleeps == [1.5]
    assert lm.usage.calls == 1


@pytest.mark.parametrize(
    ("script", "sleeps", "failed"),
    [
        ([transient(retry_after=1.0), "", transient(retry_after=2.0), "ok"], 3, 3),  # "": empty completion
        (
            [transient(retry_after=1.0), "", transient(retry_after=2.0)],
            3,
            4,
        ),  # the last repeats: retries run out
        ([transient(retry_after=1.0), LMError("bad key", status_code=401)], 1, 2),
    ],
)
def test_complete_and_acomplete_make_the_same_attempts(
    script: list[str | BaseException], sleeps: int, failed: int
) -> None:
    def outcome(lm: StubLM, call: Any) -> tuple[Any, ...]:
        try:
            c = call()
            result: Any = (c.text, c.attempts, c.usage)
        except LMError as error:
            result = type(error).__name__
        return result, lm.sleeps, len(lm.sent), lm.usage

    sync_lm, async_lm = StubLM(script), StubLM(script)
    for lm in (sync_lm, async_lm):  # the same jitter for the empty completion's backoff
        lm.retry_policy = RetryPolicy(3, 0.5, 30.0, rng=random.Random(3))
    sync = outcome(sync_lm, lambda: sync_lm.complete(MESSAGES))
    asynchronous = outcome(async_lm, lambda: asyncio.run(async_lm.acomplete(MESSAGES)))
    assert sync == asynchronous
    assert len(sync[1]) == sleeps and sync[3].failed_requests == failed


def test_acomplete_uses_the_async_request_of_a_subclass() -> None:
    class AsyncLM(StubLM):
        async def _arequest(self, messages: list[dict[str, str]], params: dict[str, Any]) -> Completion:
            await asyncio.sleep(0)
            return Completion(text="from _arequest")

    async def run() -> list[Completion]:
        lm = AsyncLM(["from _request"])
        return list(await asyncio.gather(*(lm.acomplete(MESSAGES) for _ in range(5))))

    assert {c.text for c in asyncio.run(run())} == {"from _arequest"}


# --- parameters ----------------------------------------------------------------------------


def test_params_merge_settings_then_lm_defaults_then_call() -> None:
    lm = StubLM(["ok"], temperature=0.3, top_p=0.9)
    with settings.context(temperature=0.1, max_tokens=64):
        lm.complete(MESSAGES)
        lm.complete(MESSAGES, temperature=0.8, stop=["\n"])
        lm.complete(MESSAGES, temperature=None)  # None means "not set"
    assert lm.sent[0] == {"temperature": 0.3, "max_tokens": 64, "top_p": 0.9}
    assert lm.sent[1] == {"temperature": 0.8, "max_tokens": 64, "top_p": 0.9, "stop": ["\n"]}
    assert lm.sent[2]["temperature"] == 0.3
    assert StubLM(["ok"]).params == {}


def test_rollout_changes_the_cache_key_but_is_never_sent() -> None:
    lm = StubLM(["a", "b", "c"], cache=True)
    first = lm.complete(MESSAGES, temperature=0.9, rollout=1)
    second = lm.complete(MESSAGES, temperature=0.9, rollout=2)
    again = lm.complete(MESSAGES, temperature=0.9, rollout=1)
    assert (first.text, second.text, again.text) == ("a", "b", "a")
    assert again.cache_hit
    assert all("rollout" not in sent for sent in lm.sent) and len(lm.sent) == 2
    with pytest.raises(UsageError, match="rollout"):
        lm.complete(MESSAGES, rollout="1")


def test_secrets_are_sent_but_kept_out_of_params_and_repr() -> None:
    lm = StubLM(["ok"], api_key=FAKE_KEY, temperature=0.2)
    lm.complete(MESSAGES)
    assert lm.sent[0]["api_key"] == FAKE_KEY
    assert "api_key" not in lm.params
    assert FAKE_KEY not in repr(lm) and "temperature=0.2" in repr(lm)


@pytest.mark.parametrize("bad", [[], "hello", [{"content": "no role"}], [{"role": "user", "content": 3}]])
def test_malformed_messages_are_usage_errors(bad: Any) -> None:
    with pytest.raises(UsageError):
        StubLM(["ok"]).complete(bad)


@pytest.mark.parametrize(
    "kwargs", [{"num_retries": -1}, {"backoff_base": -1.0}, {"rpm": 0}, {"cache": "yes"}]
)
def test_bad_constructor_arguments_are_usage_errors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        StubLM(["ok"], **kwargs)


# --- rate limiting -------------------------------------------------------------------------


def test_rate_limiter_spaces_requests_evenly() -> None:
    now = [100.0]
    waits: list[float] = []
    limiter = RateLimiter(120, clock=lambda: now[0], sleep=waits.append)
    assert [limiter.acquire() for _ in range(3)] == [0.0, 0.5, 1.0]
    assert waits == [0.5, 1.0]
    now[0] += 10.0  # after a quiet period the next request goes at once
    assert limiter.acquire() == 0.0


def test_lm_with_rpm_waits_before_requests_but_not_for_cache_hits() -> None:
    lm = StubLM(["ok"], rpm=60, cache=True)
    lm.complete(MESSAGES)
    lm.complete(MESSAGES)  # cache hit: no slot used
    lm.complete(MESSAGES, temperature=0.5)
    assert len(lm.sleeps) == 1 and 0.9 < lm.sleeps[0] <= 1.0


# --- resolve_lm ----------------------------------------------------------------------------


def test_resolve_lm_passes_instances_and_memoizes_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LMPROG_MODEL", raising=False)
    stub = StubLM(["ok"])
    assert resolve_lm(stub) is stub
    a = resolve_lm("openai/gpt-4o-mini")
    assert isinstance(a, LM) and a.model == "openai/gpt-4o-mini"
    assert resolve_lm("openai/gpt-4o-mini") is a
    assert resolve_lm(None).model == "local"
    with settings.context(lm="anthropic/claude-3-5-haiku-latest"):
        assert resolve_lm(None) is resolve_lm("anthropic/claude-3-5-haiku-latest")
    with settings.context(lm=stub):
        assert resolve_lm(None) is stub
    monkeypatch.setenv("LMPROG_MODEL", "openai/from-env")
    assert resolve_lm(None).model == "openai/from-env"
    with pytest.raises(UsageError):
        resolve_lm("  ")


# --- litellm -------------------------------------------------------------------------------


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_importing_lmprog_never_imports_litellm() -> None:
    code = (
        "import sys, lmprog.lm, lmprog.cache, lmprog.local, lmprog.testing\n"
        "lm = lmprog.lm.LM('openai/gpt-4o-mini'); lmprog.lm.resolve_lm('local')\n"
        "assert 'litellm' not in sys.modules, 'litellm imported'\n"
        "assert 'xllamacpp' not in sys.modules, 'xllamacpp imported'\n"
    )
    result = _run_python(code)
    assert result.returncode == 0, result.stderr


def _litellm() -> Any:
    from lmprog.lm._litellm import load_litellm

    return load_litellm()


def _response(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=httpx.Request("POST", "https://api.example.com"))


def test_litellm_errors_translate_to_lmprog_errors() -> None:
    from lmprog.lm._litellm import translate_error

    litellm = _litellm()
    m = "gpt-4o-mini"
    cases: list[tuple[BaseException, type[LMError], int | None]] = [
        (litellm.RateLimitError("slow down", "openai", m), TransientLMError, 429),
        (litellm.Timeout("timed out", m, "openai"), TransientLMError, 408),
        (litellm.APIConnectionError("reset", "openai", m), TransientLMError, 500),
        (litellm.InternalServerError("oops", "openai", m), TransientLMError, 500),
        (litellm.ServiceUnavailableError("down", "openai", m), TransientLMError, 503),
        (litellm.BadGatewayError("gateway", "openai", m), TransientLMError, 502),
        (litellm.AuthenticationError("bad key", "openai", m), LMError, 401),
        (litellm.PermissionDeniedError("no", "openai", m, _response(403)), LMError, 403),
        (litellm.NotFoundError("no model", m, "openai"), LMError, 404),
        (litellm.BadRequestError("bad", m, "openai"), LMError, 400),
        (litellm.ContextWindowExceededError("too long", m, "openai"), LMError, 400),
    ]
    for error, kind, status in cases:
        lm_error = translate_error(error, model="openai/" + m)
        assert type(lm_error) is kind, (error, lm_error)
        assert lm_error.status_code == status
        assert lm_error.model == "openai/" + m


def test_retry_after_is_read_from_response_headers() -> None:
    from lmprog.lm._litellm import translate_error

    litellm = _litellm()
    seconds = litellm.RateLimitError("slow", "openai", "m", response=_response(429, {"Retry-After": "7"}))
    millis = litellm.RateLimitError(
        "slow", "openai", "m", response=_response(429, {"retry-after-ms": "1500"})
    )
    date = litellm.RateLimitError(
        "slow", "openai", "m", response=_response(429, {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})
    )
    bare = litellm.RateLimitError("slow", "openai", "m")
    errors = [translate_error(e, model="m") for e in (seconds, millis, date, bare)]
    assert [e.retry_after for e in errors if isinstance(e, TransientLMError)] == [7.0, 1.5, 0.0, None]


def test_translation_redacts_the_api_key_from_messages() -> None:
    from lmprog.lm._litellm import translate_error

    litellm = _litellm()
    error = litellm.AuthenticationError(f"Incorrect API key provided: {FAKE_KEY}", "openai", "m")
    assert FAKE_KEY not in str(translate_error(error, model="m", secrets=[FAKE_KEY]))


def test_lm_over_litellm_with_a_mock_response(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lm = LM("openai/gpt-4o-mini", cache=True, mock_response="Blue.", api_key=FAKE_KEY)
    with caplog.at_level(logging.DEBUG, logger="lmprog"):
        first = lm.complete(MESSAGES)
        second = lm.complete(MESSAGES)
    assert first.text == "Blue." and first.model == "openai/gpt-4o-mini"
    assert first.usage.prompt_tokens > 0 and first.usage.completion_tokens > 0
    assert first.usage.cost > 0  # gpt-4o-mini is in litellm's local price list
    assert second.cache_hit and second.usage.cost == 0.0
    assert FAKE_KEY not in repr(lm)
    assert FAKE_KEY not in caplog.text
    for path in tmp_path.iterdir():
        assert FAKE_KEY.encode() not in path.read_bytes()


def test_lm_over_litellm_unknown_model_costs_zero() -> None:
    lm = LM("openai/not-a-real-model-xyz", mock_response="fine", api_key=FAKE_KEY)
    c = lm.complete(MESSAGES)
    assert c.text == "fine" and c.usage.cost == 0.0


def test_lm_over_litellm_translates_and_retries_provider_errors() -> None:
    sleeps: list[float] = []
    lm = LM("openai/gpt-4o-mini", mock_response="litellm.RateLimitError", num_retries=2, sleep=sleeps.append)
    with pytest.raises(TransientLMError) as info:
        lm.complete(MESSAGES)
    assert info.value.status_code == 429
    assert isinstance(info.value.__cause__, _litellm().RateLimitError)
    assert len(sleeps) == 2


def test_lm_over_litellm_raises_auth_errors_at_once() -> None:
    sleeps: list[float] = []
    error = _litellm().AuthenticationError("invalid key", "openai", "gpt-4o-mini")
    lm = LM("openai/gpt-4o-mini", mock_response=error, sleep=sleeps.append)
    with pytest.raises(LMError) as info:
        lm.complete(MESSAGES)
    assert not isinstance(info.value, TransientLMError)
    assert info.value.status_code == 401 and sleeps == []


def test_lm_over_litellm_treats_an_empty_completion_as_transient() -> None:
    sleeps: list[float] = []
    lm = LM("openai/gpt-4o-mini", mock_response="   ", num_retries=1, sleep=sleeps.append)
    with pytest.raises(TransientLMError, match="empty"):
        lm.complete(MESSAGES)
    assert len(sleeps) == 1


def test_lm_over_litellm_async() -> None:
    lm = LM("openai/gpt-4o-mini", mock_response="async blue", api_key=FAKE_KEY)
    c = asyncio.run(lm.acomplete(MESSAGES))
    assert c.text == "async blue" and lm.usage.calls == 1
