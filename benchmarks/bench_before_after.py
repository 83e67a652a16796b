"""Zero-shot and optimized scores on the embedded model, with constrained decoding off vs on.

For each benchmark task (TREC, Banking77 restricted to 10 intents, ScoNe, Iris: the ones with a
label output) and each condition (``off``: ``lmprog.configure(constrain=False)``, the text wire
format as before constrained decoding; ``on``: the default grammar), it measures through the
public API (``lmprog.evaluate`` / ``lmprog.optimize``, retries as the library does them):

- ``zero-shot``: the docstring program on the test split;
- ``bootstrap``: ``optimize(..., optimizer="bootstrap")`` on the training split under a small
  ``Budget(max_calls=...)``, then the test split.

Each row gives the score, the test examples with no usable answer (parse failures after the
library's retries), the requests, the label counts of the predictions, and the seconds.

Resumable: every finished row is appended to ``<out>.jsonl`` at once and skipped by a re-run
with the same ``--out``; responses are cached under ``benchmarks/.work/before-after/`` so an
optimization killed half-way repeats its finished calls from the cache (cache hits are free
under the budget, so the resumed result is the one the uninterrupted run would have given).
After every row ``<out>.md`` is rewritten with the table so far. Usage (about 40 min on 2
shared cores)::

    BENCH_DATA=/path/to/shared/data nohup python benchmarks/bench_before_after.py \
        > benchmarks/.work/before-after.log 2>&1 &
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
from lmprog.function import LMFunction, State, use_states

HERE = Path(__file__).resolve().parent
TASKS: dict[str, dict[str, Any]] = {"trec": {}, "banking77": {"intents": 10}, "scone": {}, "iris": {}}
CONDITIONS = {"off": False, "on": True}
METHODS = ("zero-shot", "bootstrap")
WORK = HERE / ".work" / "before-after"


def row_key(row: dict[str, Any]) -> tuple[str, str, str]:
    return (row["task"], row["constrain"], row["method"])


def load_rows(path: Path) -> list[dict[str, Any]]:
    """Finished rows of an earlier run (a torn last line, from a kill mid-write, is dropped)."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def append_row(path: Path, row: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())


def measure(
    name: str, splits: tasks.Splits, program: Any, metric: Any, constrain: str, method: str, args: Any
) -> dict[str, Any]:
    """One row: optimize (for ``bootstrap``), then evaluate on the test split."""
    lmprog.configure(constrain=CONDITIONS[constrain])
    started = time.perf_counter()
    extra: dict[str, Any] = {}
    states: dict[LMFunction, State] = {program: State()}
    if method == "bootstrap":
        result = lmprog.optimize(
            program,
            splits.train,
            metric,
            optimizer="bootstrap",
            budget=lmprog.Budget(max_calls=args.budget),
            seed=args.seed,
            save=False,
            apply=False,
            threads=args.threads,
            progress=False,
            max_bootstrapped_demos=4,
            max_labeled_demos=4,
            max_rounds=1,
        )
        states = dict(result.states)
        extra = {
            "optimizer_requests": result.usage.requests,
            "optimizer_cache_hits": result.usage.cache_hits,
            "demos": len(states[program].demos),
            "stopped_by": result.stopped_by,
        }
    with use_states(states):
        res = lmprog.evaluate(program, splits.test, metric, threads=args.threads, progress=False)
    failures = sum(r.error is not None for r in res.results)
    predictions = collections.Counter(str(r.prediction) for r in res.results if r.error is None)
    return {
        "task": name,
        "constrain": constrain,
        "method": method,
        "n_test": len(splits.test),
        "n_train": len(splits.train),
        "score": round(res.score, 2),
        "parse_failures": failures,
        "test_requests": res.usage.requests,
        "test_cache_hits": res.usage.cache_hits,
        "predictions": dict(predictions.most_common()),
        "seconds": round(time.perf_counter() - started, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        **extra,
    }


def render(rows: list[dict[str, Any]], args: Any, majority: dict[str, float], notes: str = "") -> str:
    """The Markdown report; ``notes`` (a ``## Notes`` section written by hand) is kept at the end."""
    by = {row_key(r): r for r in rows}
    lines = [
        "| task | n test | majority baseline | zero-shot off | zero-shot on | parse failures off "
        "| parse failures on | bootstrap off | bootstrap on | parse failures off | parse failures on |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in args.tasks.split(","):
        cells = []
        for method in METHODS:
            for field in ("score", "parse_failures"):
                for cond in CONDITIONS:
                    r = by.get((name, cond, method))
                    value = "" if r is None else r[field]
                    cells.append(f"{value:.1f}" if field == "score" and r is not None else str(value))
        n = next((r["n_test"] for r in rows if r["task"] == name), "")
        # columns: zero-shot scores, zero-shot failures, bootstrap scores, bootstrap failures
        base = f"{majority[name]:.1f}" if name in majority else ""
        lines.append(f"| {name} | {n} | {base} | " + " | ".join(cells) + " |")
    detail = [
        "",
        "| task | constrain | method | score | parse failures | test requests | optimizer requests "
        "| demos | predictions | seconds | load average |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    for r in rows:
        preds = ", ".join(f"{k} {v}" for k, v in r["predictions"].items())
        detail.append(
            f"| {r['task']} | {r['constrain']} | {r['method']} | {r['score']:.1f} | {r['parse_failures']} "
            f"| {r['test_requests']} | {r.get('optimizer_requests', '')} | {r.get('demos', '')} "
            f"| {preds} | {r['seconds']:.0f} | {' '.join(map(str, r['load_average']))} |"
        )
    head = (
        "# Constrained decoding off vs on: zero-shot and optimized scores on the embedded model\n\n"
        "`python benchmarks/bench_before_after.py` (SmolLM2-135M-Instruct Q4_1 through xllamacpp). "
        f"Test exact match in % on {args.n_test} seeded test examples per task (train {args.n_train}), "
        f"seed {args.seed}, bootstrap budget {args.budget} LM calls (up to 4 demos: bootstrapped ones, "
        f"topped up with labeled ones; one round), evaluate threads={args.threads}. "
        "`off`: `constrain=False`; `on`: the default grammar. Parse failures: test examples with "
        "no usable answer after the library's retries (scored 0). Majority baseline: the test "
        "split's most common label, every time."
    )
    return head + "\n\n" + "\n".join(lines + detail) + "\n" + (f"\n{notes}" if notes else "")


def kept_notes(path: Path) -> str:
    """The hand-written ``## Notes`` section of an earlier report, if any."""
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    index = text.find("\n## Notes")
    return text[index + 1 :] if index >= 0 else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-test", type=int, default=48)
    parser.add_argument("--n-train", type=int, default=20)
    parser.add_argument("--budget", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument(
        "--out", type=Path, default=HERE / "results" / "before-after", help="results path without suffix"
    )
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    lmprog.configure(lm="local", temperature=0.0, cache=True, cache_dir=WORK / "cache", load_prompts=False)
    jsonl, md = args.out.with_suffix(".jsonl"), args.out.with_suffix(".md")
    rows = load_rows(jsonl)
    done = {row_key(r) for r in rows}
    notes = kept_notes(md)
    majority: dict[str, float] = {}
    for name in args.tasks.split(","):
        try:
            splits = tasks.load(name, (args.n_train, 0, args.n_test), args.seed, **TASKS[name])
        except tasks.TaskUnavailable as e:
            print(f"{name}: skipped ({e})", file=sys.stderr, flush=True)
            continue
        _, hits = collections.Counter(row["label"] for row in splits.test).most_common(1)[0]
        majority[name] = 100.0 * hits / len(splits.test)
        program, metric = lmprog_programs.BUILDERS[name](splits)
        for method in METHODS:
            for constrain in CONDITIONS:
                if (name, constrain, method) in done:
                    continue
                row = measure(name, splits, program, metric, constrain, method, args)
                append_row(jsonl, row)
                rows.append(row)
                md.write_text(render(rows, args, majority, notes), encoding="utf-8")
                print(
                    f"{name:10} {method:10} constrain {constrain:3} score {row['score']:5.1f} "
                    f"failures {row['parse_failures']:2} {row['seconds']:.0f}s",
                    file=sys.stderr,
                    flush=True,
                )
    md.write_text(render(rows, args, majority, notes), encoding="utf-8")


if __name__ == "__main__":
    main()
