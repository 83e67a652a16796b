"""Classify support tickets with an lm_function, then optimize its prompt from data.

Runs offline on the embedded model (SmolLM2-135M through llama.cpp) with no API key:

    python examples/tickets.py                        # bootstrap few-shot, the default
    python examples/tickets.py --optimizer mipro      # instruction proposals + Bayesian search
    python examples/tickets.py --lm openai/gpt-4o-mini
    python examples/tickets.py --quick                # a shortened run of the same steps (CI)

It measures the zero-shot program on a held-out test split, optimizes on the training split,
writes the prompt file (examples/prompts/tickets.classify.yaml) and measures again. The data (72
tickets written for this example) is in examples/data/tickets.jsonl.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal

import lmprog
from lmprog import lm_function, metrics
from lmprog.function import State, use_states

DATA = Path(__file__).parent / "data" / "tickets.jsonl"


@lm_function
def classify(ticket: str) -> Literal["billing", "bug", "feature"]:
    """Classify a support ticket by its topic.

    Args:
        ticket: the customer's message, verbatim.

    Returns:
        billing for payments, invoices, refunds and prices; bug for something broken;
        feature for a request for something new.
    """


def main() -> None:
    parser = argparse.ArgumentParser(description="Optimize a ticket classifier.")
    parser.add_argument("--lm", default="local", help="a litellm model name, or local (default)")
    parser.add_argument(
        "--optimizer", default="bootstrap", choices=["labeled", "bootstrap", "random_search", "mipro"]
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--train", type=int, default=24, help="training examples (the rest is the test split)"
    )
    parser.add_argument("--max-calls", type=int, default=None, help="LM call budget for the optimizer")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a shortened run of the same steps (CI): 8 train and 8 test examples, at most 24 "
        "optimizer calls, the prompt file written to a temporary directory",
    )
    args = parser.parse_args()
    lmprog.configure(lm=args.lm)
    if args.quick:
        args.train, args.max_calls = 8, args.max_calls or 24
        lmprog.configure(prompt_dir=tempfile.mkdtemp(prefix="tickets-quick-"))

    data = lmprog.load_dataset(DATA)
    train, test = lmprog.split(data, args.train, seed=args.seed)
    test = test[:8] if args.quick else test
    started = time.perf_counter()
    with use_states({classify: State()}):  # the unoptimized program, whatever the prompt file says
        before = lmprog.evaluate(classify, test, metrics.exact_match, threads=1)
    result = lmprog.optimize(
        classify,
        train,
        metrics.exact_match,
        optimizer=args.optimizer,
        seed=args.seed,
        budget=lmprog.Budget(max_calls=args.max_calls),
        threads=1,
    )
    after = lmprog.evaluate(classify, test, metrics.exact_match, threads=1)

    print(f"model: {args.lm}   optimizer: {args.optimizer}   seed: {args.seed}")
    print(f"train: {len(train)} examples   test: {len(test)} examples (held out)")
    print(f"zero-shot test accuracy: {before.score:5.1f}")
    print(f"optimized test accuracy: {after.score:5.1f}")
    print(f"demos: {len(classify.demos)}   instruction: {classify.instruction!r}")
    print(f"optimizer LM calls: {result.usage.calls}")
    for path in result.files:
        print(f"prompt file: {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    u = result.usage  # requests vs cache hits differ between a first and a repeated run: stderr
    log = f"{u.requests} provider requests, {u.cache_hits} cache hits, {time.perf_counter() - started:.0f}s"
    print(log, file=sys.stderr)


if __name__ == "__main__":
    main()
