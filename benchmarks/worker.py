"""Run one task with one framework: zero-shot, bootstrap and/or MIPRO, each scored on the test split.

Started by ``run.py`` (one process per framework and task, so the frameworks never share caches,
settings or loaded modules)::

    python benchmarks/worker.py FRAMEWORK CONFIG.json OUT.json

For each method the optimizer runs on the train (and, for MIPRO, validation) split under the
method's LM-call budget, then the resulting program is evaluated on the test split. Every request
that reaches the model is counted by ``common.METER`` (the same counter for both frameworks).
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import tasks

BIG = 10**9  # "no limit" for DSPy's max_errors: a failing example scores 0, the run goes on


def main() -> None:
    framework, config_path, out_path = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    config = json.loads(config_path.read_text())
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    splits = tasks.load(config["task"], tuple(config["sizes"]), config["seed"], **config.get("options", {}))
    started = time.perf_counter()
    runner = LmprogRunner(config, splits) if framework == "lmprog" else DspyRunner(config, splits)
    methods: dict[str, Any] = {}
    for method in config["methods"]:
        try:
            methods[method] = runner.run(method)
        except Exception as e:
            traceback.print_exc()
            methods[method] = {"error": f"{type(e).__name__}: {e}"[:2000]}
        out_path.write_text(json.dumps(_report(config, framework, splits, methods, started), indent=1))
    out_path.write_text(json.dumps(_report(config, framework, splits, methods, started), indent=1))


def _report(config: dict, framework: str, splits: tasks.Splits, methods: dict, started: float) -> dict:
    return {
        "framework": framework,
        "task": config["task"],
        "sizes": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
        "notes": splits.notes,
        "methods": methods,
        "wall_seconds": round(time.perf_counter() - started, 2),
        "load_average_end": common.load_average(),
    }


class Runner:
    """What both frameworks' runners share: timing and metering one phase."""

    def __init__(self, config: dict, splits: tasks.Splits) -> None:
        self.config = config
        self.splits = splits
        self.litellm = common.litellm_module()
        common.set_llama_threads(config.get("llama_threads"))

    def run(self, method: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        budget = self.config["budgets"].get(method)
        program = self.fresh()
        if method != "zero_shot":
            before = common.METER.snapshot()
            common.METER.set_cap(budget)
            t0 = time.perf_counter()
            try:
                program, details = self.compile(method, program, budget)
            finally:
                common.METER.set_cap(None)
            out["optimize"] = {
                "seconds": round(time.perf_counter() - t0, 2),
                "budget": budget,
                "lm": common.METER.snapshot().minus(before).to_dict(),
                **details,
            }
        if not self.config.get("skip_test"):
            before = common.METER.snapshot()
            t0 = time.perf_counter()
            out["test"] = self.evaluate(program)
            out["test"]["seconds"] = round(time.perf_counter() - t0, 2)
            out["test"]["lm"] = common.METER.snapshot().minus(before).to_dict()
        return out

    def fresh(self) -> Any:
        raise NotImplementedError

    def compile(self, method: str, program: Any, budget: int | None) -> tuple[Any, dict[str, Any]]:
        raise NotImplementedError

    def evaluate(self, program: Any) -> dict[str, Any]:
        raise NotImplementedError

    def _summary(self, rows: list[dict], scores: list[float], predictions: list[Any], errors: int) -> dict:
        out: dict[str, Any] = {
            "score": round(100.0 * sum(scores) / max(1, len(scores)), 2),
            "n": len(scores),
            "errors": errors,
        }
        if self.splits.name == "hotpotqa":
            recalls = [
                tasks.title_recall(row["gold_titles"], getattr(pred, "titles", None) or [])
                for row, pred in zip(rows, predictions, strict=True)
            ]
            out["title_recall"] = round(100.0 * sum(recalls) / max(1, len(recalls)), 2)
        return out


class LmprogRunner(Runner):
    def __init__(self, config: dict, splits: tasks.Splits) -> None:
        super().__init__(config, splits)
        import lmprog_programs

        import lmprog

        self.lmprog = lmprog
        self.programs = lmprog_programs
        work = Path(config["workdir"])
        lmprog.configure(
            lm=config["model"],
            temperature=0.0,
            max_tokens=config["max_tokens"],
            cache=True,
            cache_dir=work / "lmprog-cache",
            load_prompts=False,
            trace=True,
        )
        self.program, self.metric = lmprog_programs.BUILDERS[splits.name](splits)

    def fresh(self) -> Any:
        from lmprog.function import LMFunction

        for fn in [self.program, self.programs.write_query, self.programs.answer_question]:
            if isinstance(fn, LMFunction):
                fn.reset()
        return self.program

    def compile(self, method: str, program: Any, budget: int | None) -> tuple[Any, dict[str, Any]]:
        options = dict(self.config[method]["lmprog"])
        valset = None
        if method == "mipro":
            valset = self.splits.val
            options["storage"] = str(Path(self.config["workdir"]) / "lmprog-optuna.db")
        result = self.lmprog.optimize(
            program,
            self.splits.train,
            self.metric,
            valset=valset,
            optimizer=method,
            budget=self.lmprog.Budget(max_calls=budget),
            seed=self.config["seed"],
            save=False,
            threads=1,
            progress=False,
            **options,
        )
        u = result.usage
        return program, {
            "framework_calls": u.calls,
            "framework_requests": u.requests,
            "cache_hits": u.cache_hits,
            "stopped_by": result.stopped_by,
            "val_score": result.score,
            "demos": {fn.name: len(state.demos) for fn, state in result.states.items()},
            "demo_outputs": {
                fn.name: [_short(d, fn.signature.output_names) for d in state.demos]
                for fn, state in result.states.items()
            },
            "details": {k: v for k, v in _plain(result.details).items() if k in ("runs", "passed", "trials")},
            "instructions": {
                fn.name: state.instruction for fn, state in result.states.items() if state.instruction
            },
        }

    def evaluate(self, program: Any) -> dict[str, Any]:
        res = self.lmprog.evaluate(program, self.splits.test, self.metric, threads=1, progress=False)
        scores = [r.value for r in res.results]  # the metric's values in [0, 1], as DSPy's
        preds = [r.prediction for r in res.results]
        errors = sum(r.error is not None for r in res.results)
        out = self._summary(self.splits.test, scores, preds, errors)
        out["framework_calls"] = res.usage.calls
        out["cache_hits"] = res.usage.cache_hits
        out["first_errors"] = [str(r.error)[:300] for r in res.results if r.error is not None][:3]
        return out


class DspyRunner(Runner):
    def __init__(self, config: dict, splits: tasks.Splits) -> None:
        super().__init__(config, splits)
        import dspy
        import dspy_programs

        self.dspy = dspy
        self.programs = dspy_programs
        work = Path(config["workdir"])
        dspy.configure_cache(
            enable_disk_cache=True, enable_memory_cache=True, disk_cache_dir=str(work / "dspy-cache")
        )
        self.lm = dspy.LM(
            common.dspy_model_name(config["model"]),
            temperature=0.0,
            max_tokens=config["max_tokens"],
            cache=True,
        )
        dspy.configure(lm=self.lm, max_errors=BIG)
        self.build = dspy_programs.BUILDERS[splits.name]
        self.metric = self.build(splits)[1]
        self.train = dspy_programs.examples(splits.train, splits.inputs)
        self.val = dspy_programs.examples(splits.val, splits.inputs)
        self.test = dspy_programs.examples(splits.test, splits.inputs)

    def fresh(self) -> Any:
        return self.build(self.splits)[0]

    def compile(self, method: str, program: Any, budget: int | None) -> tuple[Any, dict[str, Any]]:
        dspy = self.dspy
        options = dict(self.config[method]["dspy"])
        calls_before = len(self.lm.history)
        original = {name: p.signature.instructions for name, p in program.named_predictors()}
        if method == "bootstrap":
            optimizer = dspy.BootstrapFewShot(metric=self.metric, max_errors=BIG, **options)
            compiled = optimizer.compile(program, trainset=self.train)
        elif method == "mipro":
            compile_options = options.pop("compile", {})
            optimizer = dspy.MIPROv2(
                metric=self.metric,
                seed=self.config["seed"],
                num_threads=1,
                max_errors=BIG,
                verbose=False,
                **options,
            )
            compiled = optimizer.compile(program, trainset=self.train, valset=self.val, **compile_options)
        else:
            raise ValueError(method)
        history = self.lm.history[calls_before:]
        return compiled, {
            "framework_calls": len(history),
            "cache_hits": sum(bool(h.get("response") is not None and _cache_hit(h)) for h in history),
            "demos": {name: len(p.demos) for name, p in compiled.named_predictors()},
            "bootstrapped_demos": {
                name: sum(bool(d.get("augmented")) for d in p.demos)
                for name, p in compiled.named_predictors()
            },
            "demo_outputs": {
                name: [_short(d, p.signature.output_fields) for d in p.demos]
                for name, p in compiled.named_predictors()
            },
            "instructions": {
                name: p.signature.instructions
                for name, p in compiled.named_predictors()
                if p.signature.instructions != original.get(name)
            },
            "val_score": getattr(compiled, "score", None),
        }

    def evaluate(self, program: Any) -> dict[str, Any]:
        dspy = self.dspy
        calls_before = len(self.lm.history)
        evaluator = dspy.Evaluate(
            devset=self.test,
            metric=self.metric,
            num_threads=1,
            display_progress=False,
            max_errors=BIG,
            provide_traceback=False,
        )
        res = evaluator(program)
        rows, preds, scores, errors = [], [], [], 0
        for example, prediction, score in res.results:
            rows.append(dict(example))
            preds.append(prediction)
            scores.append(float(score or 0.0))
            fields = dict(prediction) if prediction is not None else {}
            errors += not fields
        out = self._summary(rows, scores, preds, errors)
        out["framework_calls"] = len(self.lm.history) - calls_before
        return out


def _plain(details: Any) -> dict[str, Any]:
    """An optimizer's details as a plain dict (MIPRO's are typed, with ``to_dict()``)."""
    return details.to_dict() if hasattr(details, "to_dict") else dict(details)


def _short(demo: Any, names: Any) -> str:
    """A demo's output values, short (what the model was shown as answers)."""
    return "; ".join(f"{k}={str(demo[k])[:60]}" for k in names if k in demo)


def _cache_hit(entry: dict) -> bool:
    response = entry.get("response")
    return bool(getattr(response, "cache_hit", False))


if __name__ == "__main__":
    main()
