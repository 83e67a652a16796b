"""One-request label scoring against one request per option, on the embedded model (an informal
measurement: both ways in the same run, on the same inputs, one after the other).

    python benchmarks/bench_score_one_request.py --tasks trec scone --test 50 --out results.md

For each task, zero-shot and with 4 labeled demos from the training split (chat layout): every test
input is scored both ways (``ScoreRun(..., one_request=True/False)``), and so are the content-free
inputs calibration divides out. Reported per way: the accuracy of ``score`` (the likeliest
option) and of ``calibrated`` (after dividing out the content-free prior), the requests sent and
the CPU seconds of this process (llama.cpp runs in it), and how often the two ways choose the same
option. Without the LM cache, with the library's defaults (no prompt prefix reuse).
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import common
import lmprog_programs
import tasks

import lmprog
from lmprog.format import CONTENT_FREE, best_label, calibrated, calibration_prior
from lmprog.function import State
from lmprog.function._score import ScoreRun
from lmprog.lm import resolve_lm


def demos_for(rows: list[dict[str, Any]], inputs: tuple[str, ...], n: int, seed: int) -> tuple[dict, ...]:
    """``n`` training rows, as many labels as possible, labels interleaved (not ending on a run)."""
    by_label: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for row in random.Random(seed).sample(rows, len(rows)):
        by_label[row["label"]].append(row)
    picked: list[dict[str, Any]] = []
    while len(picked) < n:
        for label in sorted(by_label):
            if by_label[label] and len(picked) < n:
                picked.append(by_label[label].pop())
    return tuple({**{k: r[k] for k in inputs}, "output": r["label"]} for r in picked)


def score_all(
    func: Any, state: State, rows: list[dict[str, Any]], one: bool
) -> tuple[list[dict[str, float]], list[dict[str, float]], int, float, int]:
    """Raw option scores of the content-free inputs and of ``rows``; requests, CPU s, fallbacks."""
    requests, fallbacks = 0, 0
    start = time.process_time()

    def run(inputs: dict[str, Any]) -> dict[str, float]:
        nonlocal requests, fallbacks
        r = ScoreRun(func, inputs, state=state, one_request=one)
        while (messages := r.next_messages()) is not None:
            r.feed(r.lm.complete(messages, **r.params))
            requests += 1
        fallbacks += r.fallback is not None
        return dict(r.scores)

    free = [run({name: v for name in func.signature.input_names}) for v in CONTENT_FREE]
    scores = [run({name: row[name] for name in func.signature.input_names}) for row in rows]
    return free, scores, requests, time.process_time() - start, fallbacks


def measure(task: str, test: int, seed: int) -> list[dict[str, Any]]:
    splits = tasks.load(task, (200, 0, test), seed)
    func, _ = lmprog_programs.BUILDERS[task](splits)
    options = ScoreRun(func, {n: "x" for n in func.signature.input_names}, state=State()).options
    out = []
    for setting, demos in (("zero-shot", ()), ("4 demos", demos_for(splits.train, splits.inputs, 4, seed))):
        state = State(layout="chat", decode="score", demos=demos)
        row: dict[str, Any] = {"task": task, "setting": setting, "n": len(splits.test)}
        choices = {}
        for way, one in (("per-option", False), ("one-request", True)):
            free, scores, requests, cpu, fallbacks = score_all(func, state, splits.test, one)
            prior = calibration_prior(free)
            raw = [best_label(s, options).text for s in scores]
            cal = [best_label(calibrated(s, prior), options).text for s in scores]
            gold = [r["label"] for r in splits.test]
            choices[way] = (raw, cal)
            row[way] = {
                "score": 100 * sum(a == b for a, b in zip(raw, gold, strict=True)) / len(gold),
                "calibrated": 100 * sum(a == b for a, b in zip(cal, gold, strict=True)) / len(gold),
                "requests": requests,
                "cpu": cpu,
                "fallbacks": fallbacks,
                "counts": collections.Counter(raw).most_common(),
            }
        row.update(common.agreement(choices, "per-option", "one-request"))
        print(row, flush=True)
        out.append(row)
    return out


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| task | setting | n | way | score acc % | calibrated acc % | requests | CPU s | fallbacks |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for way in ("per-option", "one-request"):
            w = r[way]
            lines.append(
                f"| {r['task']} | {r['setting']} | {r['n']} | {way} | {w['score']:.1f} | "
                f"{w['calibrated']:.1f} | {w['requests']} | {w['cpu']:.1f} | {w['fallbacks']} |"
            )
    lines += ["", "| task | setting | same choice (score) | same choice (calibrated) | CPU ratio |"]
    lines += ["|---|---|---|---|---|"]
    for r in rows:
        ratio = r["per-option"]["cpu"] / max(r["one-request"]["cpu"], 1e-9)
        lines.append(
            f"| {r['task']} | {r['setting']} | {r['agree_score']}/{r['n']} | "
            f"{r['agree_calibrated']}/{r['n']} | {ratio:.1f}x |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["trec", "scone"])
    parser.add_argument("--test", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = []
    with lmprog.context(lm=resolve_lm("local"), cache=False, load_prompts=False):
        for task in args.tasks:
            rows += measure(task, args.test, args.seed)
    text = table(rows)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
