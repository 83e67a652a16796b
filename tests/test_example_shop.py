"""The second example (examples/shop.py): its data, its tools and its committed prompt file.

The example itself runs on the embedded model in ``tests/test_tools_local.py`` (``--quick``);
these checks need no model.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from lmprog import promptfile
from lmprog.signature import TOOL_CALLS

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "shop.py"


@pytest.fixture(scope="module")
def shop() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("shop", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["shop"] = module  # the prompt file names the function shop:answer
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("shop", None)


def test_every_answer_is_the_catalog_entry_the_question_asks_for(shop: ModuleType) -> None:
    rows = [json.loads(line) for line in shop.DATA.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 40 and len({row["question"] for row in rows}) == 40
    for row in rows:
        asks_price = any(word in row["question"] for word in ("cost", "price", "dollars"))
        tool = shop.lookup_price if asks_price else shop.lookup_stock
        assert tool(row["question"]) == row["answer"], row


def test_the_tools_read_an_item_in_any_form_and_name_the_catalog_otherwise(shop: ModuleType) -> None:
    assert shop.lookup_price("Pears") == shop.CATALOG["pear"]["price"]
    assert shop.lookup_stock("3 cherries") == shop.CATALOG["cherry"]["stock"]
    with pytest.raises(KeyError, match="it sells apple, cherry"):
        shop.lookup_price("bananas")


def test_the_committed_prompt_file_matches_the_function_and_keeps_tool_calls(shop: ModuleType) -> None:
    path = ROOT / "examples" / "prompts" / "shop.answer.yaml"
    assert promptfile.status(shop.answer, path) == "ok"
    state = promptfile.load_state(shop.answer)
    assert state is not None and state.demos
    assert all(demo[TOOL_CALLS] for demo in state.demos)
