"""Answer questions about a shop with an lm_function that calls Python tools and reasons, then
optimize it.

The second example: a program whose model must *use tools* to answer ("How many pears are in
stock?": call ``lookup_stock("pear")`` and answer with the result; "What does a pear cost?":
``lookup_price``). Runs offline on the embedded model (SmolLM2-135M through llama.cpp), where tool
calls use lmprog's text protocol under a grammar that allows only a call of ``lookup_price`` or
``lookup_stock`` with a string argument, or the answer::

    python examples/shop.py                  # bootstrap on 16 training questions; 16 test questions
    python examples/shop.py --lm openai/gpt-4o-mini   # native tool calling
    python examples/shop.py --quick          # a shortened run of the same steps (CI)

``answer`` has ``tools=[lookup_price, lookup_stock]``, ``tool_first=True`` (its first reply must
call a tool: zero-shot, a small model would answer at once) and ``reasoning=True`` (the model
writes a ``reasoning:`` line before its answer). The script prints the most-common-answer
baseline, then the test accuracy of the zero-shot program and of the optimized one, with the
tools each called (read from the traces). Optimizing runs ``bootstrap``: the training questions
the program answers right become demos that keep their tool calls, results and reasoning
(labeled demos are off: an answer without its tool calls would teach the model to skip the
tools). The data (40 questions and a catalog of 10 fruits, written for this example) is in
examples/data/shop.jsonl and examples/data/shop_catalog.json.

A 135M model is a weak agent: zero-shot it calls both tools and answers with the last result;
the bootstrapped demos show it which tool answers which question. The response cache is off so
that every run sends the same requests in the same order (reproducible at temperature 0).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lmprog
from lmprog import lm_function, metrics
from lmprog.function import State, use_states

DATA = Path(__file__).parent / "data" / "shop.jsonl"
CATALOG: dict[str, dict[str, int]] = json.loads(
    (Path(__file__).parent / "data" / "shop_catalog.json").read_text()
)
_SINGULAR = {"cherries": "cherry", "peaches": "peach", "mangoes": "mango"}


def _fruit(item: str) -> str:
    """The catalog entry named in ``item`` ("3 Pears" -> "pear"); a KeyError the model sees if none."""
    for word in reversed(item.lower().replace("?", " ").split()):
        word = _SINGULAR.get(word, word[:-1] if word.endswith("s") and word[:-1] in CATALOG else word)
        if word in CATALOG:
            return word
    raise KeyError(f"the shop does not sell {item!r}; it sells {', '.join(sorted(CATALOG))}")


def lookup_price(item: str) -> int:
    """The price of one item in dollars.

    Args:
        item: the item's name, e.g. apple.
    """
    return CATALOG[_fruit(item)]["price"]


def lookup_stock(item: str) -> int:
    """How many of an item the shop has in stock.

    Args:
        item: the item's name, e.g. apple.
    """
    return CATALOG[_fruit(item)]["stock"]


@lm_function(tools=[lookup_price, lookup_stock], tool_first=True, reasoning=True, max_steps=2)
def answer(question: str) -> int:
    """Answer the customer's question about the shop with a number from its catalog.

    Args:
        question: a question about the price or the stock of a fruit.
    """


def tool_use(results: list[Any]) -> str:
    """How many runs called each tool, and how many of those calls failed (from the traces)."""
    used: collections.Counter[str] = collections.Counter()
    failed: collections.Counter[str] = collections.Counter()
    for result in results:
        spans = result.trace.spans if result.trace is not None else []
        for name in {s.name for s in spans if s.kind == "tool"}:
            used[name] += 1
        failed.update(s.name for s in spans if s.kind == "tool" and s.error)
    shown = [f"{name} in {n} runs ({failed[name]} failed calls)" for name, n in used.most_common()]
    return ", ".join(shown) or "none"


def main() -> None:
    parser = argparse.ArgumentParser(description="Optimize a shop assistant that calls tools.")
    parser.add_argument("--lm", default="local", help="a litellm model name, or local (default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=16, help="training questions")
    parser.add_argument("--test", type=int, default=16, help="test questions (held out)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a shortened run of the same steps (CI): 6 training and 6 test questions, at most 2 "
        "demos, the prompt file written to a temporary directory",
    )
    args = parser.parse_args()
    os.environ.setdefault("LMPROG_LLAMA_PROMPT_CACHE", "1")  # one request at a time: reuse the prefix
    lmprog.configure(lm=args.lm, cache=False)
    demos = 3
    if args.quick:
        args.train, args.test, demos = 6, 6, 2
        lmprog.configure(prompt_dir=tempfile.mkdtemp(prefix="shop-quick-"))

    started = time.perf_counter()
    train, test = lmprog.split(lmprog.load_dataset(DATA), args.train, seed=args.seed)
    test = test[: args.test]
    common, hits = collections.Counter(row["answer"] for row in test).most_common(1)[0]
    baseline = 100.0 * hits / len(test)

    with use_states({answer: State()}):  # the unoptimized program, whatever the prompt file says
        zero_shot = lmprog.evaluate(answer, test, metrics.exact_match, threads=1)
    result = lmprog.optimize(
        answer,
        train,
        metrics.exact_match,
        optimizer="bootstrap",
        seed=args.seed,
        max_bootstrapped_demos=demos,
        max_labeled_demos=0,
        max_rounds=1,
        threads=1,
    )
    optimized = lmprog.evaluate(answer, test, metrics.exact_match, threads=1)

    print(f"model: {args.lm}   optimizer: bootstrap   seed: {args.seed}")
    print(f"train: {len(train)} questions   test: {len(test)} questions (held out)")
    print(f"most-common-answer baseline:  {baseline:5.1f}   (always {common})")
    print(f"zero-shot test accuracy:      {zero_shot.score:5.1f}   (tools: {tool_use(zero_shot.results)})")
    print(f"optimized test accuracy:      {optimized.score:5.1f}   (tools: {tool_use(optimized.results)})")
    print(f"demos: {len(answer.demos)} (each with its tool calls and reasoning)")
    print(f"optimizer LM calls: {result.usage.calls}")
    for path in result.files:
        print(f"prompt file: {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    print(f"{time.perf_counter() - started:.0f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
