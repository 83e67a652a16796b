"""A two-step pipeline: extract facts from a short biography, then answer a question from them.

Only the final answer is labeled; bootstrapping still gives the intermediate ``extract_facts``
step demonstrations, taken from runs whose final answer was right. Offline on the embedded model:

    python examples/people.py
    python examples/people.py --optimizer mipro --lm openai/gpt-4o-mini

The data (60 biographies with questions, generated for this example) is examples/data/people.jsonl.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pydantic import BaseModel, Field

import lmprog
from lmprog import lm_function, metrics, traced
from lmprog.function import State, use_states

DATA = Path(__file__).parent / "data" / "people.jsonl"


class Facts(BaseModel):
    name: str = Field(description="the person's full name")
    city: str = Field(description="the city where the person was born")
    year: int = Field(description="the year of birth")
    job: str = Field(description="the person's job, one word")


@lm_function(max_tokens=64)  # four short fields: a longer completion is a model rambling on
def extract_facts(text: str) -> Facts:
    """Extract the facts about the person described in the text."""


@lm_function(max_tokens=16)
def answer(question: str, facts: Facts) -> str:
    """Answer the question with one word or number taken from the facts."""


@traced
def ask(text: str, question: str) -> str:
    facts = extract_facts(text)
    return answer(question=question, facts=facts)


def main() -> None:
    parser = argparse.ArgumentParser(description="Optimize a two-step extract-then-answer pipeline.")
    parser.add_argument("--lm", default="local", help="a litellm model name, or local (default)")
    parser.add_argument("--optimizer", default="bootstrap", choices=["bootstrap", "random_search", "mipro"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    lmprog.configure(lm=args.lm)

    data = lmprog.load_dataset(DATA)
    train, test, _ = lmprog.split(data, 20, 24, seed=args.seed)
    blank = {extract_facts: State(), answer: State()}
    with use_states(blank):
        before = lmprog.evaluate(ask, test, metrics.exact_match, threads=1)
    result = lmprog.optimize(
        ask, train, metrics.exact_match, optimizer=args.optimizer, seed=args.seed, threads=1
    )
    after = lmprog.evaluate(ask, test, metrics.exact_match, threads=1)

    print(f"model: {args.lm}   optimizer: {args.optimizer}   train {len(train)} / test {len(test)}")
    print(f"zero-shot test exact match: {before.score:5.1f}")
    print(f"optimized test exact match: {after.score:5.1f}")
    for fn in (extract_facts, answer):
        print(f"{fn.name}: {len(fn.demos)} demos")
    print(f"optimizer LM calls: {result.usage.calls}")


if __name__ == "__main__":
    main()
