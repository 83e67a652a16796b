"""Soak run of the reliability suite: the CI tests plus their long variants, with many more seeds.

    python benchmarks/soak.py                  # 20 seeds per soak test, 2,000 fuzz examples each
    python benchmarks/soak.py --rounds 100 --fuzz 20000 -- -x   # longer; after -- go pytest options

It runs ``tests/reliability`` (faults injected by ``lmprog.testing.FaultyLM`` into parallel
evaluations and MIPRO runs, ``lmprog optimize`` killed again and again and resumed, fuzzed
completions and prompt files, secrets, bad input, concurrency) and ``tests/test_parse_fuzz.py``,
with the ``@pytest.mark.slow`` soak tests enabled, and prints how long it took. Exit status: pytest's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20, help="seeds per soak test (default 20)")
    parser.add_argument("--fuzz", type=int, default=2000, help="hypothesis examples per fuzz test")
    parser.add_argument("--timeout", type=int, default=1800, help="per-test timeout in seconds")
    parser.add_argument("pytest_args", nargs="*", help="more pytest options (after --)")
    args = parser.parse_args(argv)
    env = {
        **os.environ,
        "LMPROG_SOAK": "1",
        "LMPROG_SOAK_ROUNDS": str(args.rounds),
        "FUZZ_N": str(args.fuzz),
    }
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "--timeout",
        str(args.timeout),
        "tests/reliability",
        "tests/test_parse_fuzz.py",
        *args.pytest_args,
    ]
    print("soak:", " ".join(command[2:]), f"(LMPROG_SOAK_ROUNDS={args.rounds}, FUZZ_N={args.fuzz})")
    started = time.perf_counter()
    status = subprocess.call(command, cwd=ROOT, env=env)
    verdict = "passed" if status == 0 else f"FAILED (exit status {status})"
    print(f"soak: {verdict} in {time.perf_counter() - started:.0f}s")
    return status


if __name__ == "__main__":
    sys.exit(main())
