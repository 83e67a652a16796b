"""Embedded-model runtime benchmark: generation speed idle and under load, evaluation throughput
at 1 and 4 threads, and reproducibility at temperature 0.

    python benchmarks/bench_runtime.py                 # everything; prints a Markdown report
    python benchmarks/bench_runtime.py --part speed    # one part: speed, eval, determinism

Each configuration runs in a fresh subprocess, because the OpenMP wait policy and the thread and
slot counts are fixed when llama.cpp loads. "Loaded" means this script keeps ``--busy`` CPU-bound
Python processes running meanwhile; every loaded figure is compared with an idle baseline
measured in the same run. Other processes on the machine are not controlled: the report prints
the load average before each part.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TICKETS = ROOT / "examples" / "data" / "tickets.jsonl"
SPEED_PROMPT = [{"role": "user", "content": "Write a long story about a lighthouse keeper and a storm."}]

_SPEED_CHILD = """
import json, sys, time
from lmprog import local
prompt, tokens, repeats = json.loads(sys.argv[1])
model = local.load_model("local")
model.chat(prompt, max_tokens=8)  # warm-up
rates = []
for _ in range(repeats):
    t = time.perf_counter()
    out = model.chat(prompt, max_tokens=tokens)
    rates.append(out.completion_tokens / (time.perf_counter() - t))
print(json.dumps(rates))
"""

_EVAL_CHILD = """
import json, sys, time
from typing import Literal
import lmprog
from lmprog import local, metrics

@lmprog.lm_function
def classify(ticket: str) -> Literal["billing", "bug", "feature"]:
    '''Classify a support ticket by its topic.'''

rows, threads = json.loads(sys.argv[1])
classify.demos = [{"ticket": r["ticket"], "output": r["label"]} for r in rows[:3]]
lmprog.configure(lm="local", cache=False, load_prompts=False)
local.load_model("local")
t = time.perf_counter()
result = lmprog.evaluate(classify, rows[3:], metrics.exact_match, threads=threads, progress=False)
elapsed = time.perf_counter() - t
outputs = [str(r.prediction) if r.ok else "error: " + str(r.error) for r in result.results]
print(json.dumps({"seconds": elapsed, "score": result.score, "outputs": outputs}))
"""


def _child(code: str, arg: Any, env: dict[str, str]) -> Any:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(arg)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=1800,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _spin(stop_at: float) -> None:
    x = 0
    while time.time() < stop_at:
        x += 1


@contextmanager
def busy(n: int) -> Iterator[None]:
    """``n`` CPU-bound processes running for the duration of the block."""
    procs = [multiprocessing.Process(target=_spin, args=(time.time() + 3600,)) for _ in range(n)]
    for p in procs:
        p.start()
    time.sleep(1.0)
    try:
        yield
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.join()


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def speed(busy_procs: int, tokens: int, repeats: int) -> Iterator[str]:
    yield f"## Generation speed (tokens/s, median of {repeats} requests of {tokens} tokens, 1 slot)"
    yield ""
    yield (
        f"Load average before: {load()}; cores: {os.cpu_count()}; competing load: {busy_procs} busy "
        "Python processes started by this script."
    )
    yield ""
    yield "| threads | OMP_WAIT_POLICY | idle tok/s | loaded tok/s | loaded / idle |"
    yield "|---|---|---|---|---|"
    configs = [(t, w) for t in (1, 2) for w in ("PASSIVE", "ACTIVE")]
    idle: dict[tuple[int, str], float] = {}
    for threads, wait in configs:
        env = {"LMPROG_LLAMA_THREADS": str(threads), "OMP_WAIT_POLICY": wait, "LMPROG_LLAMA_SLOTS": "1"}
        idle[(threads, wait)] = statistics.median(_child(_SPEED_CHILD, [SPEED_PROMPT, tokens, repeats], env))
    with busy(busy_procs):
        for threads, wait in configs:
            env = {"LMPROG_LLAMA_THREADS": str(threads), "OMP_WAIT_POLICY": wait, "LMPROG_LLAMA_SLOTS": "1"}
            rate = statistics.median(_child(_SPEED_CHILD, [SPEED_PROMPT, tokens, repeats], env))
            base = idle[(threads, wait)]
            yield f"| {threads} | {wait} | {base:.1f} | {rate:.1f} | {rate / base:.2f} |"
        # lmprog's own choice (no LMPROG_LLAMA_THREADS, no OMP_WAIT_POLICY) while loaded
        unset = ("LMPROG_LLAMA_THREADS", "OMP_WAIT_POLICY")
        default_env = {k: v for k, v in os.environ.items() if k not in unset}
        code = "from lmprog import local_runtime; print(local_runtime.llama_threads())"
        chosen = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**default_env, "PYTHONPATH": str(ROOT)},
        ).stdout.strip()
        env = {"LMPROG_LLAMA_SLOTS": "1", "LMPROG_LLAMA_THREADS": chosen, "OMP_WAIT_POLICY": "PASSIVE"}
        rate = statistics.median(_child(_SPEED_CHILD, [SPEED_PROMPT, tokens, repeats], env))
    yield ""
    yield f"lmprog default thread choice under this load: {chosen} thread(s), PASSIVE: {rate:.1f} tok/s."
    yield ""


def _rows(n: int) -> list[dict[str, str]]:
    return [json.loads(line) for line in TICKETS.read_text().splitlines()][:n]


EVAL_CONFIGS = ((1, 1, 0), (1, 4, 0), (4, 4, 0), (4, 1, 0), (1, 1, 1), (4, 4, 1))


def evaluation(examples: int, configs: tuple[tuple[int, int, int], ...] = EVAL_CONFIGS) -> Iterator[str]:
    rows = _rows(examples + 3)
    yield f"## Evaluation throughput ({examples} tickets, 3 demos, `lmprog.evaluate`, response cache off)"
    yield ""
    yield f"Load average before: {load()}."
    yield ""
    yield "| slots | evaluate threads | prompt cache | seconds | examples/s | score | same as row 1 |"
    yield "|---|---|---|---|---|---|---|"
    reference: list[str] | None = None
    for slots, threads, cache in configs:
        env = {"LMPROG_LLAMA_SLOTS": str(slots), "LMPROG_LLAMA_PROMPT_CACHE": str(cache)}
        out = _child(_EVAL_CHILD, [rows, threads], env)
        reference = reference or out["outputs"]
        same = sum(a == b for a, b in zip(out["outputs"], reference, strict=True))
        yield (
            f"| {slots} | {threads} | {'on' if cache else 'off'} | {out['seconds']:.1f} | "
            f"{examples / out['seconds']:.2f} | {out['score']:.1f} | {same}/{examples} |"
        )
    yield ""


def determinism(examples: int) -> Iterator[str]:
    rows = _rows(examples + 3)
    runs = [_child(_EVAL_CHILD, [rows, 4], {}) for _ in range(2)]
    same = sum(a == b for a, b in zip(runs[0]["outputs"], runs[1]["outputs"], strict=True))
    yield "## Reproducibility across processes (default settings, evaluate threads=4)"
    yield ""
    yield f"Two fresh processes, {examples} tickets: {same}/{examples} identical outputs."
    yield ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["speed", "eval", "determinism", "all"], default="all")
    parser.add_argument("--busy", type=int, default=2, help="competing busy processes")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--examples", type=int, default=40)
    args = parser.parse_args()
    print(f"# Runtime benchmark ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n", flush=True)
    parts = []
    if args.part in ("speed", "all"):
        parts.append(speed(args.busy, args.tokens, args.repeats))
    if args.part in ("eval", "all"):
        parts.append(evaluation(args.examples))
    if args.part in ("determinism", "all"):
        parts.append(determinism(args.examples))
    for part in parts:
        for line in part:
            print(line, flush=True)


if __name__ == "__main__":
    main()
