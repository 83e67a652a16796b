from __future__ import annotations

import logging
import multiprocessing
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lmprog import settings
from lmprog.cache import CACHE_FILENAME, ResponseCache, cache_key, get_cache, is_secret_param
from lmprog.errors import UsageError
from lmprog.lm import Completion
from lmprog.testing import ScriptedLM

FAKE_KEY = "sk-FAKE-9f8e7d6c5b4a-do-not-store"
MESSAGES = [{"role": "user", "content": "What is 2 + 2?"}]


@pytest.fixture
def cache_dir(tmp_path: Path) -> Iterator[Path]:
    with settings.context(cache=True, cache_dir=tmp_path, temperature=0.0, max_tokens=512):
        yield tmp_path


def _all_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file())


# --- ResponseCache -------------------------------------------------------------------------


def test_set_then_get_roundtrips_and_misses_are_none(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite")
    assert cache.get("absent") is None
    cache.set("k", {"text": "hello", "prompt_tokens": 3})
    assert cache.get("k") == {"text": "hello", "prompt_tokens": 3}
    cache.set("k", {"text": "replaced"})
    assert cache.get("k") == {"text": "replaced"}
    assert len(cache) == 1


def test_entries_persist_across_instances_and_use_wal(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "c.sqlite"
    ResponseCache(path).set("k", {"text": "kept"})
    assert ResponseCache(path).get("k") == {"text": "kept"}
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_get_cache_shares_one_instance_per_directory(tmp_path: Path) -> None:
    a = get_cache(tmp_path / "a")
    assert get_cache(tmp_path / "a") is a
    assert get_cache(tmp_path / "b") is not a
    assert a.path == (tmp_path / "a" / CACHE_FILENAME).absolute()


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_many_cache_dirs_do_not_pile_up_open_files(tmp_path: Path) -> None:
    def open_files() -> int:
        return len(list(Path("/proc/self/fd").iterdir()))

    first = get_cache(tmp_path / "d0")
    first.set("k", {"text": "v"})
    before = open_files()
    for i in range(1, 40):
        get_cache(tmp_path / f"d{i}").set("k", {"text": str(i)})
    assert open_files() - before < 8 * 3 + 5  # at most the 8 most recent stay open
    assert get_cache(tmp_path / "d0") is first  # still the one shared instance...
    assert first.get("k") == {"text": "v"}  # ...and still usable


def test_corrupt_file_is_a_miss_with_a_warning_and_is_left_untouched(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / CACHE_FILENAME
    garbage = b"this is not a sqlite database\x00\x01\x02" * 200
    path.write_bytes(garbage)
    cache = ResponseCache(path)
    with caplog.at_level(logging.WARNING, logger="lmprog.cache"):
        assert cache.get("k") is None
        cache.set("k", {"text": "x"})
        assert cache.get("k") is None
    assert not cache.usable
    assert path.read_bytes() == garbage
    warnings = [r for r in caplog.records if r.name == "lmprog.cache" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(path) in warnings[0].getMessage()


def test_corrupt_cache_does_not_break_an_lm_run(cache_dir: Path) -> None:
    (cache_dir / CACHE_FILENAME).write_bytes(b"\xff" * 4096)
    lm = ScriptedLM(["four", "four again"], cache=True)
    assert lm.complete(MESSAGES).text == "four"
    assert lm.complete(MESSAGES).text == "four again"  # every lookup is a miss
    assert lm.usage.cache_hits == 0


def test_a_malformed_entry_is_a_miss_and_other_entries_survive(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    cache = ResponseCache(path)
    cache.set("good", {"text": "ok"})
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO responses VALUES ('bad', '{not json', 0)")
    assert cache.get("bad") is None
    assert cache.get("good") == {"text": "ok"}
    assert cache.usable


def test_sixteen_threads_write_without_losing_entries(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    shared = ResponseCache(path)
    barrier = threading.Barrier(16)

    def writer(n: int) -> None:
        # half the threads share one instance, the others open their own connection
        cache = shared if n % 2 else ResponseCache(path)
        barrier.wait()
        for i in range(40):
            cache.set(f"t{n}-{i}", {"text": f"{n}:{i}"})

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    fresh = ResponseCache(path)
    assert len(fresh) == 16 * 40
    assert all(fresh.get(f"t{n}-{i}") == {"text": f"{n}:{i}"} for n in range(16) for i in range(40))


def _process_writer(path: str, tag: str, count: int) -> None:
    cache = ResponseCache(path)
    for i in range(count):
        cache.set(f"{tag}-{i}", {"text": f"{tag}:{i}"})


def test_two_processes_write_without_losing_entries(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_process_writer, args=(str(path), tag, 150)) for tag in ("p0", "p1")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    cache = ResponseCache(path)
    assert len(cache) == 300
    assert cache.get("p0-149") == {"text": "p0:149"}
    assert cache.get("p1-0") == {"text": "p1:0"}


# --- cache_key -----------------------------------------------------------------------------


def test_cache_key_is_stable_and_sensitive_to_model_messages_and_params() -> None:
    base = cache_key("m", MESSAGES, {"temperature": 0.0, "max_tokens": 10})
    assert base == cache_key("m", MESSAGES, {"max_tokens": 10, "temperature": 0.0})
    assert len(base) == 64 and int(base, 16) >= 0
    assert base != cache_key("other", MESSAGES, {"temperature": 0.0, "max_tokens": 10})
    assert base != cache_key("m", [{"role": "user", "content": "x"}], {"temperature": 0.0, "max_tokens": 10})
    assert base != cache_key("m", MESSAGES, {"temperature": 0.5, "max_tokens": 10})
    assert base != cache_key("m", MESSAGES, {"temperature": 0.0, "max_tokens": 11})


@pytest.mark.parametrize(
    "name",
    ["api_key", "OPENAI_API_KEY", "access_token", "aws_session_token", "client_secret", "password",
     "authorization", "extra_headers", "headers"],
)  # fmt: skip
def test_cache_key_ignores_secret_params(name: str) -> None:
    plain = cache_key("m", MESSAGES, {"temperature": 0.0})
    assert cache_key("m", MESSAGES, {"temperature": 0.0, name: FAKE_KEY}) == plain
    assert cache_key("m", MESSAGES, {"temperature": 0.0, "metadata": {name: FAKE_KEY}}) == cache_key(
        "m", MESSAGES, {"temperature": 0.0, "metadata": {}}
    )


def test_secret_name_rule_keeps_sampling_params() -> None:
    assert not is_secret_param("max_tokens")
    assert not is_secret_param("max_completion_tokens")
    assert not is_secret_param("temperature")
    assert is_secret_param("api_key") and is_secret_param("refresh_token")


# --- through an LM -------------------------------------------------------------------------


def test_second_identical_call_is_a_hit_that_skips_the_provider(cache_dir: Path) -> None:
    lm = ScriptedLM(["four"], cache=True)
    first = lm.complete(MESSAGES)
    second = lm.complete(MESSAGES)
    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert second.text == "four"
    assert len(lm.calls) == 1
    assert second.usage.requests == 0 and second.usage.cost == 0.0
    assert second.usage.total_tokens == first.usage.total_tokens
    # another LM object with the same model name shares the persistent cache
    assert ScriptedLM([], cache=True).complete(MESSAGES).cache_hit


def test_different_params_or_rollout_are_misses(cache_dir: Path) -> None:
    lm = ScriptedLM(["a", "b", "c", "d"], cache=True)
    lm.complete(MESSAGES)
    assert not lm.complete(MESSAGES, temperature=0.7).cache_hit
    assert not lm.complete(MESSAGES, temperature=0.7, rollout=1).cache_hit
    assert lm.complete(MESSAGES, temperature=0.7, rollout=1).text == "c"
    assert lm.complete(MESSAGES, temperature=0.7, rollout=0).text == "b"  # rollout 0 == no rollout
    assert not lm.complete(MESSAGES, max_tokens=3).cache_hit
    assert len(lm.calls) == 4


def test_cache_disabled_by_settings(cache_dir: Path) -> None:
    lm = ScriptedLM(["one", "two"], cache=None)
    with settings.context(cache=False):
        assert lm.complete(MESSAGES).text == "one"
        assert lm.complete(MESSAGES).text == "two"
    assert not (cache_dir / CACHE_FILENAME).exists()


def test_cache_disabled_per_lm_even_when_settings_enable_it(cache_dir: Path) -> None:
    lm = ScriptedLM(["one", "two"], cache=False)
    assert [lm.complete(MESSAGES).cache_hit for _ in range(2)] == [False, False]
    assert len(lm.calls) == 2


def test_cache_follows_settings_when_lm_says_none(cache_dir: Path) -> None:
    lm = ScriptedLM(["one"], cache=None)
    lm.complete(MESSAGES)
    assert lm.complete(MESSAGES).cache_hit
    assert (cache_dir / CACHE_FILENAME).exists()


def test_failed_empty_and_truncated_completions_are_not_cached(cache_dir: Path) -> None:
    cut = Completion("four and", finish_reason="length")
    lm = ScriptedLM([ValueError("boom"), "  ", cut, "real"], cache=True)
    with pytest.raises(ValueError):
        lm.complete(MESSAGES)
    truncated = lm.complete(MESSAGES)  # the empty completion failed and was retried
    assert (truncated.text, truncated.finish_reason, truncated.attempts) == ("four and", "length", 2)
    assert lm.complete(MESSAGES).text == "real"  # the truncated one was not cached
    assert lm.complete(MESSAGES).cache_hit
    assert len(lm.calls) == 4


def test_api_key_reaches_the_provider_but_never_the_cache_file(cache_dir: Path) -> None:
    lm = ScriptedLM(["four"], cache=True, api_key=FAKE_KEY)
    lm.complete(MESSAGES, extra_headers={"Authorization": f"Bearer {FAKE_KEY}"})
    assert lm.calls[0].params["api_key"] == FAKE_KEY
    get_cache(cache_dir).close()
    data = _all_bytes(cache_dir)
    assert b"four" in data  # the entry is there...
    assert FAKE_KEY.encode() not in data  # ...the key is not
    assert lm.complete(MESSAGES).cache_hit


def _reply_with_alternatives() -> Completion:
    """A one-token reply with a thousand unrelated alternatives, as llama.cpp returns to label scoring."""
    top = [{"token": f"w{i}", "logprob": -5.0 - i / 100} for i in range(1000)]
    top += [{"token": "ye", "logprob": -0.5}, {"token": "n", "logprob": -1.2}, {"token": "", "logprob": -9.0}]
    return Completion("yes", logprobs=[{"token": "yes", "logprob": -0.3, "top_logprobs": top}])


def test_alternatives_for_cuts_the_reply_and_its_cache_entry_to_the_options_tokens(cache_dir: Path) -> None:
    lm = ScriptedLM([_reply_with_alternatives()], cache=True, logprobs=True)
    first = lm.complete(MESSAGES, logprobs=True, alternatives_for=("yes", "no"))
    assert first.logprobs is not None
    assert first.logprobs[0]["token"] == "yes"
    assert [t["token"] for t in first.logprobs[0]["top_logprobs"]] == ["ye", "n"]
    assert "alternatives_for" not in lm.calls[0].params  # never sent to the provider
    second = lm.complete(MESSAGES, logprobs=True, alternatives_for=["yes", "no"])
    assert second.cache_hit and second.logprobs == first.logprobs
    with sqlite3.connect(cache_dir / CACHE_FILENAME) as conn:
        sizes = [len(row[0]) for row in conn.execute("SELECT value FROM responses")]
    assert len(sizes) == 1 and sizes[0] < 500, sizes  # was ~45 KB with every alternative kept


def test_alternatives_for_is_part_of_the_key_and_must_be_texts(cache_dir: Path) -> None:
    lm = ScriptedLM([_reply_with_alternatives(), _reply_with_alternatives()], cache=True, logprobs=True)
    lm.complete(MESSAGES, logprobs=True, alternatives_for=["yes", "no"])
    whole = lm.complete(MESSAGES, logprobs=True)
    assert not whole.cache_hit and whole.logprobs is not None
    assert len(whole.logprobs[0]["top_logprobs"]) == 1003
    for bad in ("yes", [1, 2], 3):
        with pytest.raises(UsageError, match="alternatives_for must be a sequence of texts"):
            lm.complete(MESSAGES, logprobs=True, alternatives_for=bad)


def _reply_of_tokens(*tokens: str) -> Completion:
    """A reply of several tokens, each with alternatives that do and do not spell an option on."""
    noise = ["card", "_", "arr", "link", "cash", "c", "ca", "l", "ival", "x", ""]
    return Completion(
        "".join(tokens),
        logprobs=[
            {"token": t, "logprob": -0.1, "top_logprobs": [{"token": a, "logprob": -1.0} for a in noise]}
            for t in tokens
        ],
    )


def test_alternatives_for_keeps_what_continues_the_text_generated_before_each_token(cache_dir: Path) -> None:
    lm = ScriptedLM([_reply_of_tokens("card", "_", "arr", "ival")], cache=True, logprobs=True)
    texts = ("card_arrival", "card_linking", "cash")
    out = lm.complete(MESSAGES, logprobs=True, alternatives_for=texts)
    assert out.logprobs is not None
    kept = [[a["token"] for a in position["top_logprobs"]] for position in out.logprobs]
    assert kept == [
        ["card", "cash", "c", "ca"],  # the first token: what begins an option, as before
        ["_"],  # after "card": "card_" begins an option, "cardcard" does not
        ["arr", "link", "l"],  # after "card_"
        ["ival"],  # after "card_arr"
    ]
    assert [position["token"] for position in out.logprobs] == ["card", "_", "arr", "ival"]
    again = lm.complete(MESSAGES, logprobs=True, alternatives_for=list(texts))
    assert again.cache_hit and again.logprobs == out.logprobs


def test_a_one_token_scoring_reply_keeps_its_cache_key_and_entry(cache_dir: Path) -> None:
    # the key and the entry the previous rule (keep an alternative that begins a text) stored
    lm = ScriptedLM([_reply_with_alternatives()], cache=True, logprobs=True)
    lm.complete(MESSAGES, logprobs=True, max_tokens=1, top_logprobs=1000, alternatives_for=["yes", "no"])
    get_cache(cache_dir).close()
    with sqlite3.connect(cache_dir / CACHE_FILENAME) as conn:
        [(key, value)] = list(conn.execute("SELECT key, value FROM responses"))
    assert key == "7dc37926d6b380ab6eb288b2d180e5c775388481e6679c1bcc1b243a7e93cd95"
    assert value == (
        '{"completion_tokens": 1, "cost": 0.0, "finish_reason": null, "logprobs": [{"logprob": -0.3, '
        '"token": "yes", "top_logprobs": [{"logprob": -0.5, "token": "ye"}, '
        '{"logprob": -1.2, "token": "n"}]}], '
        '"model": "scripted", "prompt_tokens": 5, "text": "yes"}'
    )
