from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lmprog import local, settings
from lmprog.errors import LMError, MissingDependencyError, OutputParseError, TransientLMError, UsageError
from lmprog.lm import LM

ROOT = Path(__file__).resolve().parents[1]
HAS_LLAMA = importlib.util.find_spec("llama_cpp") is not None
needs_llama = pytest.mark.skipif(not HAS_LLAMA, reason="needs the local extra: pip install 'lmprog[local]'")
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


def test_missing_llama_cpp_names_the_install_command() -> None:
    code = (
        "import sys\n"
        "sys.modules['llama_cpp'] = None\n"
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
    assert "pip install 'lmprog[local]'" in result.stdout


def test_require_llama_cpp_error_type() -> None:
    if HAS_LLAMA:
        assert local.require_llama_cpp().__name__ == "llama_cpp"
    else:
        with pytest.raises(MissingDependencyError, match=r"pip install 'lmprog\[local\]'"):
            local.require_llama_cpp()


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


def test_llama_threads_default_to_the_cores_and_follow_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LMPROG_LLAMA_THREADS", raising=False)
    assert local._threads() == (os.cpu_count() or 1)
    monkeypatch.setenv("LMPROG_LLAMA_THREADS", "1")
    assert local._threads() == 1
    monkeypatch.setenv("LMPROG_LLAMA_THREADS", "many")
    with pytest.raises(UsageError, match="LMPROG_LLAMA_THREADS"):
        local._threads()
