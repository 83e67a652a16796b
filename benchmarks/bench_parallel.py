"""Two workers with one llama.cpp thread each, or one worker with two threads: which is faster?

    python benchmarks/bench_parallel.py [--calls 12]

Both layouts answer the same ``2 * calls`` TREC questions (the zero-shot lmprog program on the
embedded model, no response cache, one slot with prompt-prefix reuse, as in benchmark v2): (a)
two processes at once, each with ``LMPROG_LLAMA_THREADS=1`` and half the questions; (b) one
process with ``LMPROG_LLAMA_THREADS=2`` and all of them. Prints the wall time of each and the
machine's load average, which decides the answer on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(start: int, count: int) -> None:
    sys.path.insert(0, str(HERE))
    import lmprog_programs
    import tasks

    import lmprog

    lmprog.configure(lm="local", temperature=0.0, max_tokens=32, cache=False, load_prompts=False)
    splits = tasks.load("trec", (0, 0, start + count), 0, test_seed=1234)
    program, _ = lmprog_programs.build_trec(splits)
    program(question="warm up: load the model")
    for row in splits.test[start : start + count]:
        program(question=row["question"])


def run(threads: int, parts: list[tuple[int, int]]) -> float:
    env = {
        **os.environ,
        "LMPROG_LLAMA_THREADS": str(threads),
        "LMPROG_LLAMA_SLOTS": "1",
        "LMPROG_LLAMA_PROMPT_CACHE": "1",
        "OMP_WAIT_POLICY": "PASSIVE",
    }
    started = time.perf_counter()
    procs = [
        subprocess.Popen([sys.executable, __file__, "--child", str(a), str(n)], env=env) for a, n in parts
    ]
    for p in procs:
        if p.wait() != 0:
            raise SystemExit(f"a child failed with exit code {p.returncode}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=12, help="questions per worker in layout (a)")
    parser.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    n = args.calls
    load = os.getloadavg()[0]
    two = run(1, [(0, n), (n, n)])
    one = run(2, [(0, 2 * n)])
    print(
        f"load average {load:.2f} -> {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores, {2 * n} calls each"
    )
    print(f"2 processes x 1 thread: {two:.1f}s; 1 process x 2 threads: {one:.1f}s; ratio {one / two:.2f}")


if __name__ == "__main__":
    main()
