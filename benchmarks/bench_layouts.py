"""Prompt layouts x label decodings on the embedded model: accuracy per task, zero-shot and with
bootstrapped demos (an informal measurement; ratios against the chat/sample baseline of the same run).

    python benchmarks/bench_layouts.py --tasks trec scone topics --test 60

For each task: the zero-shot program and the program with demos bootstrapped on the training split
(``optimizer="bootstrap"``, the variants step off), each evaluated on the test split in every
layout (chat, transcript, completion) and decoding (sample, score, calibrated; calibration
from the content-free inputs of that demo set and layout). Prints one table per task with the
accuracy and the predicted-label counts (a collapsed program shows one label).
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

os.environ.setdefault("LMPROG_LLAMA_PROMPT_CACHE", "1")  # shared prefixes are read once
sys.path.insert(0, str(Path(__file__).parent))

import lmprog_programs
import tasks

import lmprog
from lmprog import Budget, optimize
from lmprog.evaluate import evaluate as run_evaluation
from lmprog.format import LAYOUTS, calibration_prior
from lmprog.function import State, content_free_scores, use_states

TOPICS = Path(__file__).resolve().parents[1] / "examples" / "data" / "topics.jsonl"


def load(
    name: str, train: int, test: int, seed: int
) -> tuple[Any, Any, list[dict[str, Any]], list[dict[str, Any]]]:
    if name == "topics":
        sys.path.insert(0, str(TOPICS.parents[1]))
        import topics  # the README's main job

        rows = [json.loads(line) for line in TOPICS.read_text().splitlines() if line.strip()]
        rows = [{"sentence": r["sentence"], "label": r["label"]} for r in rows]
        import random

        random.Random(seed).shuffle(rows)
        return topics.topic, _metric, rows[:train], rows[train : train + test]
    splits = tasks.load(name, (train, 0, test), seed)
    program, metric = lmprog_programs.BUILDERS[name](splits)
    return program, metric, splits.train, splits.test


def _metric(example: Any, prediction: Any, trace: Any = None) -> float:
    return tasks.exact(example["label"], prediction)


def evaluate(fn: Any, metric: Any, rows: list[dict[str, Any]], state: State) -> tuple[float, str, float]:
    started = time.perf_counter()
    with use_states({fn: state}):
        result = run_evaluation(fn, rows, metric, threads=1, progress=False)
    predicted = collections.Counter(str(r.prediction) for r in result.results)
    counts = ", ".join(f"{k} {v}" for k, v in predicted.most_common())
    return result.score, counts, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", nargs="+", default=["trec", "scone", "topics"])
    parser.add_argument("--train", type=int, default=24)
    parser.add_argument("--test", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bootstrap-calls", type=int, default=40)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    lines: list[str] = []
    with (
        tempfile.TemporaryDirectory() as cache,
        lmprog.context(lm="local", cache=True, cache_dir=Path(cache), load_prompts=False, temperature=0.0),
    ):
        for name in args.tasks:
            fn, metric, train, test = load(name, args.train, args.test, args.seed)
            boot = optimize(
                fn,
                train,
                metric,
                optimizer="bootstrap",
                budget=Budget(max_calls=args.bootstrap_calls),
                save=False,
                apply=False,
                progress=False,
                variants=False,
                max_bootstrapped_demos=4,
                max_labeled_demos=4,
            )
            demo_sets = {"zero-shot": (), "bootstrap": boot.states[fn].demos}
            majority = collections.Counter(str(r["label"]) for r in test).most_common(1)[0]
            share = 100 * majority[1] / len(test)
            lines.append(f"\n## {name}: {len(test)} test examples, majority class {majority[0]} {share:.1f}")
            lines.append(f"bootstrap: {len(demo_sets['bootstrap'])} demos, {boot.usage.requests} requests")
            lines.append("| demos | layout | decode | accuracy | predicted labels | seconds |")
            lines.append("|---|---|---|---|---|---|")
            for demos_name, demos in demo_sets.items():
                for layout in LAYOUTS:
                    base = State(demos=tuple(demos), layout=layout)
                    scoring = State(demos=tuple(demos), layout=layout, decode="score")
                    prior = calibration_prior(content_free_scores(fn, scoring))
                    states = {
                        "sample": base,
                        "score": scoring,
                        "calibrated": State(
                            demos=tuple(demos), layout=layout, decode="calibrated", calibration=prior
                        ),
                    }
                    for decode, state in states.items():
                        score, counts, seconds = evaluate(fn, metric, test, state)
                        line = (
                            f"| {demos_name} | {layout} | {decode} | {score:.1f} | {counts} | {seconds:.0f} |"
                        )
                        lines.append(line)
                        print(line, flush=True)
    report = "\n".join(lines)
    print(report)
    if args.out is not None:
        args.out.write_text(report + "\n")


if __name__ == "__main__":
    main()
