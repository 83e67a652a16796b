"""The main job's example (examples/topics.py): its data set and its committed prompt file.

The example itself runs end to end on the embedded model in CI (``scripts/test.sh`` ends with
``examples/topics.py --quick``); these checks need no model.
"""

from __future__ import annotations

import collections
import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import get_args

import pytest

from lmprog import promptfile

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "topics.py"


@pytest.fixture(scope="module")
def topics() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("topics", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["topics"] = module  # the prompt file names the function topics:topic
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("topics", None)


def rows(module: ModuleType) -> list[dict[str, str]]:
    return [json.loads(line) for line in module.DATA.read_text(encoding="utf-8").splitlines()]


def test_every_row_has_a_sentence_and_one_of_the_functions_labels(topics: ModuleType) -> None:
    labels = set(get_args(topics.topic.signature.outputs[0].annotation))
    data = rows(topics)
    assert all(set(row) == {"sentence", "label"} for row in data)
    assert {row["label"] for row in data} == labels
    assert all(row["sentence"].strip() == row["sentence"] and row["sentence"] for row in data)


def test_the_data_is_balanced_and_has_no_duplicate_sentence(topics: ModuleType) -> None:
    data = rows(topics)
    assert len(data) == 120
    assert set(collections.Counter(row["label"] for row in data).values()) == {24}
    assert len({row["sentence"].lower() for row in data}) == len(data)


def test_the_committed_prompt_file_matches_the_function(topics: ModuleType) -> None:
    path = ROOT / "examples" / "prompts" / "topics.topic.yaml"
    assert promptfile.status(topics.topic, path) == "ok"
    state = promptfile.load_state(topics.topic, path)
    assert state is not None and state.demos
    sentences = {row["sentence"] for row in rows(topics)}
    assert all(demo["sentence"] in sentences for demo in state.demos)


def test_counts_lists_labels_most_frequent_first(topics: ModuleType) -> None:
    assert topics.counts(["music", "sports", "music", None]) == "music 2, sports 1, None 1"
