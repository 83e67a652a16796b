"""Tools on the embedded model (SmolLM2-135M run by xllamacpp): the text protocol under a grammar
runs to an answer through the tools, and the second example (examples/shop.py) runs end to end.
Asserts on the traces (which tools ran, with which validated arguments), not on the model's
accuracy. Skipped when the `local` extra is not installed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from local_model import NEEDS_LOCAL, ROOT

import lmprog
from lmprog import lm_function

pytestmark = NEEDS_LOCAL
PRICES = {"apple": 2, "pear": 3, "melon": 5}


def lookup_price(item: str) -> int:
    """The price of one item in dollars.

    Args:
        item: the item's name, in lower case.
    """
    return PRICES[item.strip().lower().removesuffix("s")]


def multiply(a: int, b: int) -> int:
    """The product of two whole numbers."""
    return a * b


@lm_function(tools=[lookup_price, multiply], tool_first=True, max_steps=3)
def total(question: str) -> int:
    """Answer the shopping question: look up the price, multiply it by the quantity."""


def test_the_embedded_model_answers_through_the_tools(tmp_path: Path) -> None:
    questions = ["What do 4 apples cost?", "What do 2 melons cost?"]
    with lmprog.context(lm="local", cache_dir=tmp_path, load_prompts=False), lmprog.trace() as t:
        answers = [total(q) for q in questions]
    assert all(isinstance(a, int) for a in answers)
    for root in t.roots:
        tools = [s for s in root.walk() if s.kind == "tool"]
        assert tools, "the first reply must call a tool (tool_first=True under the grammar)"
        first = tools[0]
        assert first.name in ("lookup_price", "multiply")
        arguments = [("item",)] if first.name == "lookup_price" else [("a", "b")]
        assert tuple(first.inputs) in arguments  # the grammar only lets typed arguments through
        assert not any((s.error or "").startswith("bad arguments") for s in tools)
        assert root.tool_calls is not None and len(root.tool_calls) == len(tools) <= 3
        assert root.requests == len(tools) + 1  # one call per turn, then the answer
    assert [root.output for root in t.roots] == answers


@pytest.mark.timeout(900)
def test_the_shop_example_runs_quick() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "shop.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    for start in ("most-common-answer baseline:", "zero-shot test accuracy:", "optimized test accuracy:"):
        assert any(line.startswith(start) for line in lines), done.stdout
    zero_shot = next(line for line in lines if line.startswith("zero-shot"))
    assert "lookup_" in zero_shot  # the runs went through the tools (tool_first=True)
    assert any(line.startswith("demos:") and not line.startswith("demos: 0") for line in lines), done.stdout
