"""``optimizer="knn"``: retrieved demos, stored with the prompt file and retrieved at call time."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Literal

import pytest

import lmprog
from lmprog import lm_function, promptfile
from lmprog.errors import UsageError
from lmprog.function import State, use_states
from lmprog.optimize import OPTIMIZERS, optimize
from lmprog.promptfile import DemoPool
from lmprog.testing import ScriptedLM


@lm_function
def topic(text: str) -> Literal["sport", "finance", "cooking"]:
    """Name the topic of the headline."""


TRAIN = [
    {"text": "striker scores twice in the cup final", "label": "sport"},
    {"text": "goalkeeper saves penalty in the derby", "label": "sport"},
    {"text": "shares fall as bank reports losses", "label": "finance"},
    {"text": "central bank raises interest rates", "label": "finance"},
    {"text": "how to bake sourdough bread at home", "label": "cooking"},
    {"text": "a quick pasta sauce with fresh tomatoes", "label": "cooking"},
]


def demo_texts(messages: list[dict[str, str]]) -> list[str]:
    """The demo inputs a request shows (user turns before the last one)."""
    return [m["content"] for m in messages[1:-1] if m["role"] == "user"]


def retrieving_model(messages: list[dict[str, str]]) -> str:
    """Answers the label of the demo right before the question (the nearest one)."""
    return messages[-2]["content"].strip().splitlines()[-1] if len(messages) > 2 else "sport"


@pytest.fixture
def lm(tmp_path: Path) -> ScriptedLM:
    scripted = ScriptedLM(retrieving_model)
    lmprog.configure(lm=scripted, load_prompts=False, prompt_dir=tmp_path)
    return scripted


def test_knn_is_registered() -> None:
    assert OPTIMIZERS["knn"].__name__ == "KNNFewShot"


def test_each_call_gets_its_nearest_training_examples_nearest_last(lm: ScriptedLM) -> None:
    result = optimize(topic, TRAIN, metric=lambda e, p, trace=None: 1.0, optimizer="knn", k=2, save=False)
    pool = result.states[topic].pool
    assert pool is not None and len(pool.demos) == 6 and pool.k == 2 and pool.fields == ("text",)
    assert result.states[topic].demos == ()
    assert lm.calls == []  # the optimizer itself makes no LM call
    topic("bank shares and interest rates")
    shown = demo_texts(lm.calls[-1].messages)
    assert len(shown) == 2
    assert "central bank raises interest rates" in shown[-1]  # three words in common: nearest, last
    assert "shares fall as bank reports losses" in shown[0]
    topic("bake bread with tomatoes")
    shown = demo_texts(lm.calls[-1].messages)
    assert any("sourdough" in s for s in shown) and any("tomatoes" in s for s in shown)


def test_ties_are_broken_by_the_call_and_demo_texts_not_by_pool_order() -> None:
    demos = tuple({"text": f"same words {i}", "output": "sport"} for i in range(6))
    pool, backwards = (DemoPool(k=2, demos=d, fields=("text",)) for d in (demos, demos[::-1]))
    calls = [{"text": f"unrelated {i}"} for i in range(20)]  # no shared word: every demo ties
    assert [pool.retrieve(c) for c in calls] == [backwards.retrieve(c) for c in calls]
    assert pool.retrieve(calls[0]) == pool.retrieve(calls[0])
    # the nearest demo (last) varies from call to call instead of being the pool's first
    assert len({pool.retrieve(c)[-1]["text"] for c in calls}) > 1


def test_a_label_balanced_pool_does_not_put_its_first_labels_nearest_to_every_tied_call() -> None:
    # as on TREC: the rare label's demos come first in a label-interleaved pool, and a call whose
    # only word in common with the pool is "what" ties with every "What is X ?" demo
    rare = [{"text": f"What is {w} ?", "output": "abbreviation"} for w in ("SAP", "LMDS")]
    words = ("gymnophobia", "goldenseal", "nanometer", "amphibian", "pneumonia", "quartz", "sonar", "ozone")
    common = [{"text": f"What is {w} ?", "output": "description"} for w in words]
    pool = DemoPool(k=4, demos=tuple(rare + common), fields=("text",))
    nearest = [pool.retrieve({"text": f"What is the capital of country {i} ?"})[-1] for i in range(40)]
    abbreviations = sum(d["output"] == "abbreviation" for d in nearest)
    assert abbreviations < 20, abbreviations  # by pool order: 40 of 40


def test_the_pool_is_stored_in_the_prompt_file_and_reloaded(lm: ScriptedLM, tmp_path: Path) -> None:
    val = [{"text": "shares and rates", "label": "finance"}]
    result = optimize(
        topic, TRAIN, metric=lambda e, p, trace=None: p == e["label"], valset=val, optimizer="knn", k=2
    )
    assert result.files == [promptfile.prompt_path(topic)]
    text = result.files[0].read_text()
    assert "knn:\n  k: 2\n  fields:\n  - text\n  pool:\n" in text
    assert "central bank raises interest rates" in text  # readable, one record per example
    loaded = promptfile.load_state(topic)
    assert loaded is not None and loaded.pool == result.states[topic].pool
    assert promptfile.status(topic) == "ok"
    # the deployed program needs nothing but the file: a fresh state from it retrieves the same
    with use_states({topic: loaded}):
        assert topic("interest rates at the central bank") == "finance"
    assert "central bank raises" in demo_texts(lm.calls[-1].messages)[-1]


def test_staleness_and_corrupt_pools_are_reported(lm: ScriptedLM) -> None:
    pool = DemoPool(k=1, demos=({"text": "a", "output": "sport"},), fields=("text",))
    path = promptfile.write(topic, State(pool=pool))
    text = path.read_text()
    path.write_text(text.replace(topic.signature_hash, "f" * len(topic.signature_hash)))
    assert promptfile.status(topic) == "stale"
    path.write_text(text.replace("output: sport", "output: gardening"))
    status = promptfile.status(topic)
    assert status.startswith("corrupt") and "knn pool demo 1" in status
    path.write_text(text.replace("k: 1", "k: many"))
    assert "knn: k must be a whole number" in promptfile.status(topic)
    path.write_text(text.replace("  - text", "  - body"))
    assert "fields ['body'] are not inputs" in promptfile.status(topic)


@lm_function
def species(petal_length: float, petal_width: float) -> Literal["setosa", "versicolor", "virginica"]:
    """Name the iris species from its petal's length and width in cm."""


FLOWERS = [
    {"petal_length": 1.4, "petal_width": 0.2, "label": "setosa"},
    {"petal_length": 1.5, "petal_width": 0.3, "label": "setosa"},
    {"petal_length": 4.5, "petal_width": 1.5, "label": "versicolor"},
    {"petal_length": 4.0, "petal_width": 1.2, "label": "versicolor"},
    {"petal_length": 6.0, "petal_width": 2.5, "label": "virginica"},
    {"petal_length": 5.8, "petal_width": 2.2, "label": "virginica"},
]


def test_numeric_inputs_are_retrieved_by_distance(lm: ScriptedLM) -> None:
    # regression: numbers have no BM25 word (bm25s failed with "max() arg is an empty sequence")
    result = optimize(species, FLOWERS, metric=lambda e, p, trace=None: 1.0, optimizer="knn", k=2, save=False)
    assert species(petal_length=5.9, petal_width=2.4) == "virginica"
    shown = demo_texts(lm.calls[-1].messages)
    assert len(shown) == 2 and "6.0" in shown[-1] and "5.8" in shown[0]
    pool = result.states[species].pool
    assert pool is not None
    assert [d["output"] for d in pool.retrieve({"petal_length": 1.45, "petal_width": 0.25})] == ["setosa"] * 2


def test_each_numeric_field_counts_by_its_spread_in_the_pool() -> None:
    pool = DemoPool(
        k=1,
        demos=({"grams": 0, "ratio": 0.0, "output": "a"}, {"grams": 100, "ratio": 1.0, "output": "b"}),
        fields=("grams", "ratio"),
    )
    # raw distances make "a" nearest (40 vs 60); scaled by spreads 50 and 0.5, "b" is (1.2 vs 2.15)
    assert pool.retrieve({"grams": 40, "ratio": 1.0})[0]["output"] == "b"
    # a field that is a string anywhere sends the pool to BM25, whose tokens include numbers
    mixed = DemoPool(
        k=1,
        demos=({"size": "5.1 cm", "output": "small"}, {"size": "7.7 cm", "output": "large"}),
        fields=("size",),
    )
    assert mixed.retrieve({"size": "7.7"})[0]["output"] == "large"


def test_a_pool_without_a_single_token_ranks_by_the_tie_order() -> None:
    texts = ("?", "!", "a")
    pool, backwards = (
        DemoPool(k=2, demos=tuple({"text": t, "output": t} for t in order), fields=("text",))
        for order in (texts, texts[::-1])
    )
    for call in ({"text": "why?"}, {"text": "?"}):
        got = pool.retrieve(call)
        assert len(got) == 2 and got == backwards.retrieve(call)


def test_a_pool_survives_pickling_without_its_index() -> None:
    pool = DemoPool(
        k=1,
        demos=({"text": "bank rates", "output": "finance"}, {"text": "cup final", "output": "sport"}),
        fields=("text",),
    )
    assert pool.retrieve({"text": "final"})[0]["output"] == "sport"  # builds the index
    copy = pickle.loads(pickle.dumps(State(pool=pool)))
    assert copy.pool == pool and copy.pool is not None
    assert copy.pool.retrieve({"text": "rates"})[0]["output"] == "finance"


def test_bad_options_are_usage_errors(lm: ScriptedLM) -> None:
    with pytest.raises(UsageError, match="k must be at least 1"):
        optimize(topic, TRAIN, metric=lambda e, p, trace=None: 1.0, optimizer="knn", k=0, save=False)
    with pytest.raises(UsageError, match="fields \\['body'\\] are not inputs of topic"):
        optimize(
            topic, TRAIN, metric=lambda e, p, trace=None: 1.0, optimizer="knn", fields=["body"], save=False
        )


def test_the_pool_is_bounded_and_balanced(lm: ScriptedLM) -> None:
    many = TRAIN * 5  # 30 examples, 10 per label
    result = optimize(
        topic, many, metric=lambda e, p, trace=None: 1.0, optimizer="knn", max_pool=6, save=False
    )
    pool = result.states[topic].pool
    assert pool is not None
    assert sorted(d["output"] for d in pool.demos) == ["cooking"] * 2 + ["finance"] * 2 + ["sport"] * 2


def test_an_embedder_is_recorded_in_the_prompt_file(lm: ScriptedLM) -> None:
    pool = DemoPool(
        k=3, demos=({"text": "a", "output": "sport"},), fields=("text",), embedder="openai/emb-small"
    )
    path = promptfile.write(topic, State(pool=pool))
    assert "  embedder: openai/emb-small\n" in path.read_text()
    loaded = promptfile.load_state(topic)
    assert loaded is not None and loaded.pool == pool
