from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import lmprog.testing
from lmprog import settings
from lmprog.errors import TransientLMError, UsageError
from lmprog.lm import BaseLM
from lmprog.testing import ScriptedLM

Q = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is two plus two?"}]


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path) -> Iterator[None]:
    with settings.context(cache=True, cache_dir=tmp_path, temperature=0.0, max_tokens=512):
        yield


def test_public_surface() -> None:
    assert lmprog.testing.__all__ == ["FaultEvent", "FaultyLM", "ScriptedLM"]
    assert issubclass(ScriptedLM, BaseLM)
    assert ScriptedLM([]).model == "scripted"
    assert ScriptedLM([], model="fake/gpt").model == "fake/gpt"


def test_list_responses_are_used_in_order_and_calls_are_recorded() -> None:
    lm = ScriptedLM(["four", "five"])
    assert lm.complete(Q).text == "four"
    assert lm.complete(Q, temperature=0.5).text == "five"
    assert [c.messages for c in lm.calls] == [Q, Q]
    assert lm.calls[0].params == {"temperature": 0.0, "max_tokens": 512}
    assert lm.calls[1].params["temperature"] == 0.5
    assert lm.remaining == 0


def test_running_out_says_how_many_were_scripted() -> None:
    lm = ScriptedLM(["only", "two"])
    lm.complete(Q)
    lm.complete(Q)
    with pytest.raises(UsageError, match="2 scripted"):
        lm.complete(Q)


def test_callable_script_sees_the_messages() -> None:
    lm = ScriptedLM(lambda messages: messages[-1]["content"].upper())
    assert lm.complete(Q).text == "WHAT IS TWO PLUS TWO?"
    assert lm.remaining is None
    assert len(lm.calls) == 1


def test_exceptions_are_raised_and_transient_ones_retried_without_waiting() -> None:
    sleeps: list[float] = []
    lm = ScriptedLM([TransientLMError("busy", retry_after=9.0), "four"], sleep=sleeps.append)
    c = lm.complete(Q)
    assert c.text == "four" and c.attempts == 2
    assert sleeps == [0.0]  # retry_after is capped by ScriptedLM's backoff_max of 0
    boom = RuntimeError("provider exploded")
    with pytest.raises(RuntimeError) as info:
        ScriptedLM([boom]).complete(Q)
    assert info.value is boom


def test_dict_responses_are_rendered_by_the_prompt_formatter() -> None:
    prompt = pytest.importorskip("lmprog.prompt")
    values: dict[str, Any] = {"reasoning": "2 + 2 = 4", "answer": "4"}
    lm = ScriptedLM([values, {"output": "billing"}])
    assert lm.complete(Q).text == prompt.format_output(values)
    assert lm.complete(Q).text == prompt.format_output({"output": "billing"})


def test_token_usage_counts_words() -> None:
    lm = ScriptedLM(["it is four"])
    c = lm.complete(Q)
    assert (c.usage.prompt_tokens, c.usage.completion_tokens) == (2 + 5, 3)
    assert lm.usage.total_tokens == 10 and lm.usage.cost == 0.0


def test_cache_is_off_by_default_and_on_when_asked() -> None:
    off = ScriptedLM(["a", "b"])
    assert [off.complete(Q).text for _ in range(2)] == ["a", "b"]
    on = ScriptedLM(["a", "b"], cache=True)
    assert [on.complete(Q).text for _ in range(2)] == ["a", "a"]
    assert len(on.calls) == 1


def test_concurrent_calls_each_get_one_response() -> None:
    lm = ScriptedLM([f"r{i}" for i in range(64)])
    seen: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(8):
            text = lm.complete(Q).text
            with lock:
                seen.append(text)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == sorted(f"r{i}" for i in range(64))
    assert len(lm.calls) == 64 and lm.usage.calls == 64


def test_async_calls() -> None:
    lm = ScriptedLM(lambda messages: "async four")

    async def run() -> list[str]:
        return [c.text for c in await asyncio.gather(*(lm.acomplete(Q) for _ in range(4)))]

    assert asyncio.run(run()) == ["async four"] * 4


@pytest.mark.parametrize("responses", ["a string", 42, None])
def test_bad_script_is_a_usage_error(responses: Any) -> None:
    with pytest.raises(UsageError):
        ScriptedLM(responses)


def test_bad_response_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="scripted response"):
        ScriptedLM([42]).complete(Q)  # type: ignore[list-item]
