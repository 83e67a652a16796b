"""The size of label scoring's cache entries, with and without ``alternatives_for``, on the
embedded model (both in the same run, on the same requests).

    python benchmarks/bench_score_cache.py --tasks trec scone --test 30 --out results.md

For each task (zero-shot, chat layout, ``decode="score"``), every test input's scoring requests
(``ScoreRun``: one request for all options, or a walk of their token tree when they share a
first token) are sent twice through the same LM into two response caches: as the scorer sends
them (the LM keeps only the alternatives that spell an option further) and without
``alternatives_for`` (every alternative llama.cpp returns, as before that parameter). Reported:
the mean stored entry size of each, their ratio, and whether the option scores read from the two
replies are the same.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import lmprog_programs
import tasks

import lmprog
from lmprog.cache import CACHE_FILENAME
from lmprog.function import State
from lmprog.function._score import ScoreRun


def entry_sizes(cache_dir: Path) -> list[int]:
    with sqlite3.connect(cache_dir / CACHE_FILENAME) as conn:
        return [len(row[0].encode()) for row in conn.execute("SELECT value FROM responses")]


def scores_of(fn: Any, inputs: dict[str, Any], cache_dir: Path, keep: bool) -> dict[str, float]:
    """The raw option scores of one call, its requests sent with or without ``alternatives_for``."""
    run = ScoreRun(fn, inputs, state=State(decode="score"))
    with lmprog.context(cache=True, cache_dir=cache_dir):
        while (messages := run.next_messages()) is not None:
            params = dict(run.params)
            if not keep:
                params.pop("alternatives_for", None)
            run.feed(run.lm.complete(messages, **params))
    return dict(run.scores)


def measure(task: str, n_test: int) -> dict[str, Any]:
    splits = tasks.load(task, (8, 8, n_test), 0, 1234)
    fn, _metric = lmprog_programs.BUILDERS[task](splits)
    with tempfile.TemporaryDirectory() as tmp:
        kept, whole = Path(tmp) / "kept", Path(tmp) / "whole"
        same = 0
        for row in splits.test:
            inputs = {name: row[name] for name in splits.inputs}
            same += scores_of(fn, inputs, kept, True) == scores_of(fn, inputs, whole, False)
        sizes = {"kept": entry_sizes(kept), "whole": entry_sizes(whole)}
    mean = {k: statistics.mean(v) for k, v in sizes.items()}
    return {
        "task": task,
        "calls": len(splits.test),
        "entries": len(sizes["kept"]),
        "mean_bytes_whole": round(mean["whole"]),
        "mean_bytes_kept": round(mean["kept"]),
        "ratio": round(mean["whole"] / mean["kept"], 1),
        "same_scores": same,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["trec", "scone"])
    parser.add_argument("--test", type=int, default=30)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    lmprog.configure(lm="local", temperature=0.0, load_prompts=False, trace=False)
    rows = [measure(task, args.test) for task in args.tasks]
    lines = [
        "# Label scoring's cache entries, with and without `alternatives_for`",
        "",
        "`python benchmarks/bench_score_cache.py` (SmolLM2-135M-Instruct through xllamacpp, zero-shot,",
        'chat layout, `decode="score"`; the same requests sent both ways in the same run).',
        "",
        "| task | calls | cache entries | mean bytes, every alternative | mean bytes, kept | ratio "
        "| same option scores |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['calls']} | {r['entries']} | {r['mean_bytes_whole']} | "
            f"{r['mean_bytes_kept']} | {r['ratio']}x | {r['same_scores']} of {r['calls']} |"
        )
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    sys.stdout.write(json.dumps(rows) + "\n")
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
