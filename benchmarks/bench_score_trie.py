"""Scoring options that share their first tokens by a walk of their token tree, against one
request per option, on the embedded model (an informal measurement: both ways in the same run,
on the same inputs, one after the other).

    python benchmarks/bench_score_trie.py --sets iris banking77-10 banking77 --test 20 --out results.md

The test inputs and Banking77's 10 intents are the benchmark's (``configs.TEST_SEED``). For each
label set, zero-shot and with 4 labeled demos from the training split (chat layout):
every test input and every content-free input is scored both ways (``ScoreRun(...,
one_request=True/False)``). Reported: the requests one call sent (mean, max) next to
:func:`~lmprog.function.score_requests`, and how often the two ways choose the same option,
raw (``score``) and after dividing out the content-free prior (``calibrated``). Without the LM
cache. Banking77 with all 77 intents sends 77 forced requests a call: about 20 minutes a setting
with ``LMPROG_LLAMA_PROMPT_CACHE=1`` (the prompt's prefix reused) on 2 shared cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import common
import configs
import lmprog_programs
import tasks
from bench_score_one_request import demos_for

import lmprog
from lmprog.format import CONTENT_FREE, best_label, calibrated, calibration_prior
from lmprog.function import State, score_requests
from lmprog.function._score import ScoreRun
from lmprog.lm import resolve_lm

SETS = {"iris": ("iris", {}), "banking77-10": ("banking77", {"intents": 10}), "banking77": ("banking77", {})}


Scores = list[dict[str, float]]


def score_all(
    func: Any, state: State, rows: list[dict[str, Any]], one: bool
) -> tuple[Scores, Scores, list[int]]:
    """Raw option scores of the content-free inputs and of ``rows``, and the requests of each call."""
    sent: list[int] = []

    def run(inputs: dict[str, Any]) -> dict[str, float]:
        r = ScoreRun(func, inputs, state=state, one_request=one)
        n = 0
        while (messages := r.next_messages()) is not None:
            r.feed(r.lm.complete(messages, **r.params))
            n += 1
        sent.append(n)
        return dict(r.scores)

    free = [run({name: v for name in func.signature.input_names}) for v in CONTENT_FREE]
    scores = [run({name: row[name] for name in func.signature.input_names}) for row in rows]
    return free, scores, sent


def measure(name: str, test: int, seed: int, settings: list[str]) -> list[dict[str, Any]]:
    task, options = SETS[name]
    splits = tasks.load(task, (100, 0, test), seed, test_seed=configs.TEST_SEED, **options)
    func, _ = lmprog_programs.BUILDERS[task](splits)
    labels = ScoreRun(func, {n: "x" for n in func.signature.input_names}, state=State()).options
    out = []
    every = (("zero-shot", ()), ("4 demos", demos_for(splits.train, splits.inputs, 4, seed)))
    for setting, demos in [(s, d) for s, d in every if s in settings]:
        state = State(layout="chat", decode="score", demos=demos)
        row: dict[str, Any] = {"set": name, "options": len(labels), "setting": setting, "n": len(splits.test)}
        row["score_requests"] = score_requests(func, resolve_lm("local"))
        choices = {}
        for way, one in (("per-option", False), ("trie", True)):
            start = time.perf_counter()
            free, scores, sent = score_all(func, state, splits.test, one)
            prior = calibration_prior(free)
            choices[way] = (
                [best_label(s, labels).text for s in scores],
                [best_label(calibrated(s, prior), labels).text for s in scores],
            )
            gold = [r["label"] for r in splits.test]
            row[way] = {
                "mean": statistics.mean(sent[len(CONTENT_FREE) :]),
                "max": max(sent),
                "wall": time.perf_counter() - start,
                "acc": sum(a == b for a, b in zip(choices[way][0], gold, strict=True)),
                "sent": sent,
                "over": sum(n > row["score_requests"] for n in sent),
            }
        row.update(common.agreement(choices, "per-option", "trie"))
        print(row, flush=True)
        out.append(row)
    return out


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| set | options | setting | n | score_requests | walk: requests per call, mean / max (test inputs) "
        "| max (with content-free) | calls over score_requests | per option | same choice (score) "
        "| same choice (calibrated) | accuracy walk / per option | wall s walk / per option |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t, p = r["trie"], r["per-option"]
        test = t["sent"][len(CONTENT_FREE) :]
        lines.append(
            f"| {r['set']} | {r['options']} | {r['setting']} | {r['n']} | {r['score_requests']} | "
            f"{statistics.mean(test):.2f} / {max(test)} | {t['max']} | {t['over']} of {len(t['sent'])} | "
            f"{p['max']} | {r['agree_score']}/{r['n']} | {r['agree_calibrated']}/{r['n']} | "
            f"{t['acc']} / {p['acc']} | {t['wall']:.0f} / {p['wall']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--test", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--settings", nargs="+", default=["zero-shot", "4 demos"], choices=["zero-shot", "4 demos"]
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = []
    with lmprog.context(lm=resolve_lm("local"), cache=False, load_prompts=False):
        for name in args.sets:
            rows += measure(name, args.test, args.seed, args.settings)
    text = table(rows)
    print(text)
    if args.out:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
