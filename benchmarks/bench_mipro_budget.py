"""MIPRO under a small call budget on the embedded model: what the run spends and returns.

For each seed, TREC (train 20 / val 16 / test 48, the old benchmark's sizes and MIPRO settings)
is optimized with ``optimizer="mipro"`` under ``Budget(max_calls=N)``, then the chosen program is
scored on the test split. Each row: the budget, the requests spent, whether the budget stopped
the run, the validation score of the baseline and of the result, the candidates fully evaluated,
the demo kind chosen, the test score and the predicted label counts. Informal and small (about
5 min per row on 2 shared cores)::

    python benchmarks/bench_mipro_budget.py --budgets 48 100 --seeds 0 1 --out /tmp/mipro.jsonl
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before llama.cpp loads: no busy-wait

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lmprog_programs
import tasks

import lmprog

SETTINGS = dict(
    num_instructions=3,
    num_demo_sets=3,
    num_trials=4,
    minibatch_size=8,
    full_eval_every=2,
    rounds=1,
    max_bootstrapped_demos=3,
    max_labeled_demos=3,
)


def run_one(budget: int, seed: int, work: Path) -> dict[str, Any]:
    splits = tasks.load("trec", (20, 16, 48), seed)
    program, metric = lmprog_programs.build_trec(splits)
    started = time.perf_counter()
    row: dict[str, Any] = {"task": "trec", "budget": budget, "seed": seed}
    with lmprog.context(lm="local", load_prompts=False, cache=True, cache_dir=work / "cache"):
        try:
            result = lmprog.optimize(
                program,
                splits.train,
                metric,
                valset=splits.val,
                optimizer="mipro",
                budget=lmprog.Budget(max_calls=budget),
                seed=seed,
                save=False,
                threads=1,
                progress=False,
                storage=str(work / f"optuna-{budget}-{seed}.db"),
                **SETTINGS,
            )
        except lmprog.errors.UsageError as e:
            row.update(error=str(e), seconds=round(time.perf_counter() - started, 1))
            return row
        state = result.states[program]
        plan = getattr(result.details, "plan", None)
        row.update(
            requests=result.usage.requests,
            stopped_by=result.stopped_by,
            val_baseline=result.baseline_score,
            val_score=result.score,
            candidates=len(result.candidates),
            demos="retrieved" if state.pool is not None else f"{len(state.demos)} fixed",
            instruction="optimized" if state.instruction else "docstring",
            plan=plan.describe() if plan is not None else None,
            warnings=result.warnings,
        )
        test = lmprog.evaluate(program, splits.test, metric, threads=1, progress=False)
    preds = collections.Counter(str(r.prediction) for r in test.results if r.error is None)
    row.update(
        test_score=round(test.score, 1),
        test_errors=sum(r.error is not None for r in test.results),
        predictions=dict(preds.most_common()),
        majority=round(100 * max(collections.Counter(r["label"] for r in splits.test).values()) / 48, 1),
        seconds=round(time.perf_counter() - started, 1),
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--budgets", type=int, nargs="+", default=[48, 100])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    work = args.out.with_suffix(".work")
    work.mkdir(parents=True, exist_ok=True)
    for budget in args.budgets:
        for seed in args.seeds:
            row = run_one(budget, seed, work)
            with args.out.open("a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
