"""Classify support tickets with an lm_function, then optimize it with few-shot bootstrapping.

Runs offline on the embedded model (SmolLM2-135M through llama.cpp) with no API key:

    python examples/tickets.py                 # zero-shot vs optimized score on a held-out split
    python examples/tickets.py --lm openai/gpt-4o-mini

The data (72 tickets written for this example) lives in examples/data/tickets.jsonl.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Literal

import lmprog
from lmprog import lm_function

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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lm", default="local", help="a litellm model name, or local (default)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    lmprog.configure(lm=args.lm)

    for ticket in ["I was charged twice this month.", "The app crashes when I log in."]:
        print(f"{ticket!r} -> {classify(ticket)}")


if __name__ == "__main__":
    main()
