"""Benchmark lmprog beyond one process: evaluation on a dask cluster, MIPRO on a shared study.

Run: ``python benchmarks/bench_distributed.py [--examples 2000] [--latency 0.05] [--trials 16]``
(needs the extras ``distributed`` and ``postgres``; PostgreSQL from the Debian package, or
``--postgres URL`` of a server whose database may be written to).

1. **Evaluation**: ``evaluate`` of ``--examples`` examples whose LM sleeps ``--latency`` seconds
   per request (a scripted LM: the time of a remote model, no CPU), with the same concurrency
   (``--concurrency``, default 32) on threads in this process and on a LocalCluster of 4 worker
   processes (``concurrency / 4`` threads each). Each is reported as throughput (examples/s) and
   as its ratio to the ideal ``concurrency / latency``; the last column is cluster vs threads.
2. **Shared study**: ``lmprog optimize`` (MIPRO, ``--trials`` trials, 50 ms per request) on a
   PostgreSQL study, alone, then joined by one ``lmprog worker``: the wall times, their ratio
   (ideal 0.5) and both runs' optimized scores (the same best score is expected).

Resumable: each finished part is kept in ``benchmarks/results/distributed.json`` and skipped on
the next run (``--force`` runs it again); the table goes to ``benchmarks/results/distributed.md``.
Start it in the background: ``nohup python benchmarks/bench_distributed.py > bench.log 2>&1 &``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
STATE = RESULTS / "distributed.json"
APP = ROOT / "tests" / "reliability" / "programs" / "slow_app.py"


# -- part 1: evaluation ------------------------------------------------------------------------------
def sleepy_lm(latency: float) -> Any:
    from lmprog.testing import ScriptedLM

    return ScriptedLM(Answer(latency))


class Answer:
    """The scripted model: sleeps like a remote model, then answers the label."""

    def __init__(self, latency: float) -> None:
        self.latency = latency

    def __call__(self, messages: list[dict[str, str]]) -> str:
        time.sleep(self.latency)
        return "even" if messages[-1]["content"].rstrip().endswith(("0", "2", "4", "6", "8")) else "odd"


def parity_metric(example: Any, prediction: Any) -> bool:
    return bool(prediction == example["label"])


def bench_evaluation(args: argparse.Namespace) -> dict[str, Any]:
    import distributed
    from bench_distributed_program import parity

    from lmprog import evaluate, settings

    data = [{"number": str(i), "label": "even" if i % 2 == 0 else "odd"} for i in range(args.examples)]
    ideal = args.concurrency / args.latency
    out: dict[str, Any] = {
        "examples": args.examples,
        "latency": args.latency,
        "concurrency": args.concurrency,
    }
    # a fresh LM for each backend: a ScriptedLM sent to workers carries the calls it recorded
    with settings.context(lm=sleepy_lm(args.latency), cache=False, trace=False):
        started = time.perf_counter()
        res = evaluate(parity, data, parity_metric, threads=args.concurrency, progress=False)
        seconds = time.perf_counter() - started
        assert res.score == 100.0, res.score
        out["threads"] = {"seconds": seconds, "throughput": args.examples / seconds}
    with settings.context(lm=sleepy_lm(args.latency), cache=False, trace=False):
        per_worker = max(1, args.concurrency // 4)
        cluster = distributed.LocalCluster(
            n_workers=4,
            threads_per_worker=per_worker,
            processes=True,
            dashboard_address=None,
            silence_logs=40,
        )
        with cluster, distributed.Client(cluster) as client:
            client.wait_for_workers(4)
            started = time.perf_counter()
            res = evaluate(
                parity, data, parity_metric, threads=args.concurrency, backend="dask", cluster=client
            )
            seconds = time.perf_counter() - started
        assert res.score == 100.0, res.score
        out["dask"] = {"seconds": seconds, "throughput": args.examples / seconds}
    for kind in ("threads", "dask"):
        out[kind]["of_ideal"] = out[kind]["throughput"] / ideal
    out["dask_vs_threads"] = out["dask"]["throughput"] / out["threads"]["throughput"]
    return out


# -- part 2: shared study ------------------------------------------------------------------------------
def bench_study(args: argparse.Namespace) -> dict[str, Any]:
    from pg_server import new_database, postgres_server

    if args.postgres:
        return _study_runs(args, args.postgres, new_database)
    with postgres_server() as server:
        return _study_runs(args, server, new_database)


def _study_runs(args: argparse.Namespace, server: str, new_database: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"trials": args.trials, "latency": args.latency}
    for workers in (1, 2):
        url = new_database(server)
        folder = Path(tempfile.mkdtemp(prefix=f"lmprog-bench-{workers}-"))
        try:
            out[f"{workers}_worker"] = _optimize(args, url, folder, workers)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    out["wall_ratio"] = out["2_worker"]["seconds"] / out["1_worker"]["seconds"]
    out["same_score"] = out["2_worker"]["score"] == out["1_worker"]["score"]
    return out


def _optimize(args: argparse.Namespace, url: str, folder: Path, workers: int) -> dict[str, Any]:
    import json as _json

    (folder / "app.py").write_text(APP.read_text())
    labels = {"billing": "money", "bug": "broken", "feature": "wish"}
    rows = [
        _json.dumps({"ticket": f"{word} problem number {i}", "label": label})
        for i in range(16)
        for label, word in labels.items()
    ]
    (folder / "train.jsonl").write_text("\n".join(rows) + "\n")
    env = {
        **os.environ,
        "SLOW_APP_LOG": str(folder / "requests.log"),
        "SLOW_APP_DELAY": str(args.latency),
        "LMPROG_CACHE_DIR": str(folder / "cache"),
        "COLUMNS": "200",
    }
    cli = [sys.executable, "-m", "lmprog.cli"]
    first = [*cli, "optimize", "app.py:triage", "--train", "train.jsonl", "--metric", "metric"]
    first += ["--optimizer", "mipro", "--threads", "4", "--no-save", "--storage", url, "--study", "bench"]
    first += ["--trials", str(args.trials)]
    started = time.perf_counter()
    procs = [subprocess.Popen(first, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)]
    if workers == 2:
        time.sleep(1.0)  # the job is published before the worker looks it up
        join = [*cli, "worker", "--storage", url, "--study", "bench"]
        procs.append(
            subprocess.Popen(join, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        )
    outputs = []
    for proc in procs:
        text = proc.communicate(timeout=3600)[0].decode()
        if proc.returncode != 0:
            raise RuntimeError(f"worker failed ({proc.returncode}):\n{text}")
        outputs.append(text)
    seconds = time.perf_counter() - started
    scores = [text.split("optimized score")[1].split()[0] for text in outputs]
    requests = sum(
        1 for line in (folder / "requests.log").read_text().splitlines() if line.startswith("request")
    )
    return {"seconds": seconds, "score": scores[0], "worker_scores": scores, "requests": requests}


# -- report ------------------------------------------------------------------------------------------
def report(state: dict[str, Any]) -> str:
    lines = [
        "# Beyond one process",
        "",
        f"Measured {state.get('date', '?')} on {state.get('machine', '?')} by "
        "`benchmarks/bench_distributed.py`.",
        "",
    ]
    ev = state.get("evaluation")
    if ev:
        ideal = ev["concurrency"] / ev["latency"]
        lines += [
            f"## Evaluation: {ev['examples']} examples, {ev['latency'] * 1000:.0f} ms per request, "
            f"{ev['concurrency']} at once (ideal {ideal:.0f} examples/s)",
            "",
            "| backend | seconds | examples/s | of ideal |",
            "| --- | ---: | ---: | ---: |",
        ]
        for kind, label in (("threads", "threads (this process)"), ("dask", "LocalCluster, 4 processes")):
            r = ev[kind]
            lines.append(f"| {label} | {r['seconds']:.2f} | {r['throughput']:.0f} | {r['of_ideal']:.2f} |")
        lines += ["", f"Cluster throughput / threads throughput: **{ev['dask_vs_threads']:.2f}**", ""]
    st = state.get("study")
    if st:
        lines += [
            f"## Shared MIPRO study on PostgreSQL: {st['trials']} trials, "
            f"{st['latency'] * 1000:.0f} ms per request",
            "",
            "| workers | seconds | provider requests | optimized score |",
            "| --- | ---: | ---: | ---: |",
        ]
        for n in (1, 2):
            r = st[f"{n}_worker"]
            lines.append(f"| {n} | {r['seconds']:.1f} | {r['requests']} | {' / '.join(r['worker_scores'])} |")
        lines += [
            "",
            f"Wall time, 2 workers / 1 worker: **{st['wall_ratio']:.2f}** (ideal 0.50); "
            f"same best score: **{'yes' if st['same_score'] else 'no'}**",
            "",
        ]
    lines += [
        "Notes: the machine has 2 CPUs shared with other jobs, so 4 worker processes (and, for the",
        "study, 2 optimizers) contend for them; the latency-bound work itself needs no CPU. Both",
        "workers of a shared study run the steps before the search (bootstrapping, the baseline,",
        "proposals) at the same time, sharing the cache only once one has written it: hence more",
        "provider requests than one worker. The trials are split between them; each full",
        "evaluation is stored once.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--postgres", help="a PostgreSQL server URL (default: start one)")
    parser.add_argument("--force", action="store_true", help="run the parts already measured again")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = json.loads(STATE.read_text()) if STATE.exists() and not args.force else {}
    state["date"] = datetime.date.today().isoformat()
    state["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    for part, run in (("evaluation", bench_evaluation), ("study", bench_study)):
        if part in state:
            print(f"{part}: kept from {STATE.name} (--force to run it again)")
            continue
        print(f"{part}: running", flush=True)
        state[part] = run(args)
        STATE.write_text(json.dumps(state, indent=2) + "\n")
    (RESULTS / "distributed.md").write_text(report(state))
    print(report(state))


if __name__ == "__main__":
    # the cluster's workers import the program by module name: this folder and tests/ (the
    # PostgreSQL helper) on their path too
    here = str(Path(__file__).resolve().parent)
    paths = [here, str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    sys.path[:0] = [here, str(ROOT / "tests")]
    main()
