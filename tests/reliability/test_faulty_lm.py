"""FaultyLM itself: the faults it injects are the ones the litellm client raises, at the rates asked,
reproducibly, and the retry logic around it waits as documented."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

from lmprog.errors import TransientLMError, UsageError
from lmprog.lm import BaseLM
from lmprog.lm._retry import RetryPolicy
from lmprog.testing import FaultyLM, ScriptedLM
from lmprog.usage import Usage, track

from ._program import Sleeps, check_backoff


def echo(messages: list[dict[str, str]]) -> str:
    return "echo: " + messages[-1]["content"]


def ask(lm: BaseLM, i: int) -> str:
    return lm.complete([{"role": "user", "content": f"question {i}"}]).text


def test_rates_are_honoured_and_every_request_is_recorded() -> None:
    inner = ScriptedLM(echo)
    lm = FaultyLM(
        inner, timeout=0.1, rate_limit=0.1, server_error=0.1, connection_reset=0.1, seed=3, num_retries=0
    )
    outcomes: Counter[str] = Counter()
    for i in range(2000):
        try:
            ask(lm, i)
            outcomes["ok"] += 1
        except TransientLMError as e:
            outcomes[str(e.status_code)] += 1
    counts = lm.counts
    assert sum(counts.values()) == 2000 == len(lm.events)
    for kind in ("timeout", "rate_limit", "server_error", "connection_reset"):
        assert 140 <= counts[kind] <= 260, counts  # 10% of 2000, give or take
    assert counts["ok"] == outcomes["ok"] == len(inner.calls)  # faults never reach the inner LM
    assert outcomes["429"] == counts["rate_limit"]
    assert outcomes["500"] == counts["server_error"]
    assert outcomes["None"] == counts["timeout"] + counts["connection_reset"]
    assert lm.raised == 2000 - counts["ok"]


def test_faults_are_those_the_litellm_client_raises() -> None:
    def one(kind: str) -> TransientLMError:
        lm = FaultyLM(ScriptedLM(echo), num_retries=0, retry_after=7, **{kind: 1.0})
        with pytest.raises(TransientLMError) as info:
            ask(lm, 0)
        assert lm.counts == Counter({kind: 1})
        return info.value

    limited = one("rate_limit")
    assert (limited.status_code, limited.retry_after) == (429, 7.0)
    assert one("server_error").status_code == 500
    assert "timed out" in str(one("timeout"))
    assert "reset" in str(one("connection_reset"))
    assert all(str(one(k)).startswith("scripted: ") for k in ("timeout", "server_error"))  # names the model


def test_same_seed_same_faults_different_seed_different_faults() -> None:
    def kinds(seed: int) -> list[str]:
        lm = FaultyLM(ScriptedLM(echo), server_error=0.3, rate_limit=0.2, seed=seed, sleep=lambda s: None)
        for i in range(60):
            ask(lm, i)
        return [e.kind for e in lm.events]

    assert kinds(1) == kinds(1)
    assert kinds(1) != kinds(2)


def test_backoff_grows_and_gives_up_after_the_last_retry() -> None:
    sleeps = Sleeps()
    inner = ScriptedLM(echo)
    lm = FaultyLM(inner, server_error=1.0, num_retries=4, backoff_base=0.5, backoff_max=3.0, sleep=sleeps)
    lm.retry_policy = RetryPolicy(4, 0.5, 3.0, rng=random.Random(11))
    with track() as scope, pytest.raises(TransientLMError) as info:
        ask(lm, 0)
    assert info.value.status_code == 500
    expected = random.Random(11)
    assert sleeps.all == [expected.uniform(0, c) for c in (0.5, 1.0, 2.0, 3.0)]
    assert check_backoff(lm, sleeps) == {1: 1, 2: 1, 3: 1, 4: 1}
    assert inner.calls == []
    assert scope.total.requests == 5  # every failed request counts (budgets see retries)
    assert lm.usage == scope.total == Usage(requests=5, failed_requests=5)  # no completion, 5 requests


def test_retry_after_is_honoured_and_capped() -> None:
    sleeps = Sleeps()
    lm = FaultyLM(ScriptedLM(echo), rate_limit=0.5, retry_after=2.5, seed=5, backoff_max=2.0, sleep=sleeps)
    for i in range(40):
        assert ask(lm, i) == f"echo: question {i}"
    assert lm.counts["rate_limit"] > 5
    assert sleeps.all == [2.0] * lm.counts["rate_limit"]  # the hint, capped at backoff_max
    check_backoff(lm, sleeps)


def test_empty_and_truncated_completions_spend_the_request() -> None:
    inner = ScriptedLM(lambda m: "one two three four five six seven eight", cache=True)
    sleeps = Sleeps()
    lm = FaultyLM(inner, empty=0.5, truncated=0.5, seed=2, num_retries=20, sleep=sleeps)
    replies = [lm.complete([{"role": "user", "content": f"question {i}"}]) for i in range(30)]
    # an empty completion is a failed request, retried; a truncated one is returned, marked as cut
    assert {(c.text, c.finish_reason) for c in replies} == {("one two three four ", "length")}
    empty = lm.counts["empty"]
    assert empty > 0 and lm.counts["truncated"] == 30
    assert len(inner.calls) == 30 + empty == lm.usage.requests
    assert lm.usage.failed_requests == empty and lm.usage.calls == 30
    assert lm.usage.completion_tokens == 4 * 30  # half the words survive
    assert lm.usage.prompt_tokens == 2 * len(inner.calls)  # an empty reply's prompt is spent too
    assert check_backoff(lm, sleeps)  # every empty completion was followed by a backoff wait


def test_empty_and_truncated_completions_are_never_cached() -> None:
    lm = FaultyLM(ScriptedLM(lambda m: "a full answer"), empty=1.0, cache=True, num_retries=1, sleep=Sleeps())
    with pytest.raises(TransientLMError, match="empty completion"):
        ask(lm, 0)
    with pytest.raises(TransientLMError, match="empty completion"):
        ask(lm, 0)
    assert lm.usage == Usage(requests=4, failed_requests=4, prompt_tokens=8)
    cut = FaultyLM(ScriptedLM(lambda m: "a full answer"), truncated=1.0, cache=True)
    first = cut.complete([{"role": "user", "content": "question 0"}])
    again = cut.complete([{"role": "user", "content": "question 0"}])
    assert first.finish_reason == again.finish_reason == "length" and first.text == "a full"
    assert not again.cache_hit and cut.usage.cache_hits == 0 and cut.usage.requests == 2


def test_inner_defaults_and_credentials_reach_the_inner_request() -> None:
    inner = ScriptedLM(echo, api_key="sk-inner-secret-123", temperature=0.3)
    lm = FaultyLM(inner, timeout=0.5, seed=1, sleep=lambda s: None)
    for i in range(5):
        ask(lm, i)
    assert all(c.params["api_key"] == "sk-inner-secret-123" for c in inner.calls)
    assert all(c.params["temperature"] == 0.3 for c in inner.calls)
    assert "sk-inner" not in repr(lm)


def test_async_requests_meet_faults_too() -> None:
    sleeps = Sleeps()
    inner = ScriptedLM(echo)
    lm = FaultyLM(inner, server_error=0.3, timeout=0.2, seed=4, sleep=sleeps)

    async def main() -> list[str]:
        return [
            c.text
            for c in await asyncio.gather(
                *(lm.acomplete([{"role": "user", "content": f"question {i}"}]) for i in range(20))
            )
        ]

    assert asyncio.run(main()) == [f"echo: question {i}" for i in range(20)]
    assert lm.raised > 0 and len(sleeps.all) == lm.raised
    assert len(inner.calls) == 20 == lm.usage.requests - lm.usage.failed_requests
    assert lm.usage.failed_requests == lm.raised and lm.usage.calls == 20


def test_bad_arguments() -> None:
    with pytest.raises(UsageError, match="add up to more than 1"):
        FaultyLM(ScriptedLM(echo), timeout=0.6, empty=0.6)
    with pytest.raises(UsageError, match="probabilities"):
        FaultyLM(ScriptedLM(echo), timeout=-0.1)
    with pytest.raises(UsageError, match="wraps an LM"):
        FaultyLM("openai/gpt-4o-mini")  # type: ignore[arg-type]
