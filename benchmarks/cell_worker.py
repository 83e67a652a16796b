"""Compute benchmark v2 cells of ONE framework in one process (started by ``run.py``).

    python benchmarks/cell_worker.py lmprog|dspy PLAN.json

``PLAN.json`` lists the cells (their coordinates and settings) and where the store is. Each cell
not already stored under its key is computed — the optimizer under its LM-call budget (the same
cap for both frameworks, enforced at the litellm boundary by ``common.METER``), then the test
evaluation — and saved at once, so a killed worker loses at most the cell it was computing. An
optimizer that raises (DSPy's MIPROv2 proposer does when the small model's reply does not parse
or the budget runs out under it) leaves its user with the unoptimized program: that program is
evaluated, and the error is kept in the cell and flagged in the report.
Every cell gets its own response cache (``cells.cache_dir``): no cell is made cheaper by another,
and the cache is emptied when the cell starts, so a cell computed again (killed half-way, or its
result set aside) is not made cheaper by its own earlier run: its counts are those of one whole
run. Inside the run the cache serves repeated requests (lmprog's calibrated labels after scored
ones re-read the same requests; DSPy's evaluations of the same program), as it would for a user.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sys
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cells
import common
import configs
import tasks

BIG = 10**9  # DSPy's max_errors: a failing example scores 0, the run goes on


def main() -> None:
    framework, plan_path = sys.argv[1], Path(sys.argv[2])
    plan = json.loads(plan_path.read_text())
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("dspy").setLevel(logging.CRITICAL)  # per-example parse errors: counted, not logged
    common.set_llama_threads(plan.get("llama_threads"))
    store = cells.CellStore(Path(plan["store"]))
    work = Path(plan["work"])
    runner = LmprogCells(plan) if framework == "lmprog" else DspyCells(plan)
    for spec in plan["cells"]:
        cell = cells.Cell(spec["task"], framework, spec["method"], spec["seed"], spec["settings"])
        if store.load(cell) is not None:
            continue
        started = time.perf_counter()
        print(f"cell {cell.task}/{cell.name}: start", flush=True)
        cache = cells.cache_dir(work, cell)
        shutil.rmtree(cache, ignore_errors=True)  # no answers left from an earlier, unfinished run
        cache.mkdir(parents=True)
        try:
            result = runner.run(cell, cache)
        except Exception as e:  # recorded, not stored: the next run tries the cell again
            traceback.print_exc()
            print(f"cell {cell.task}/{cell.name}: FAILED {type(e).__name__}: {e}", flush=True)
            continue
        result["cell_seconds"] = round(time.perf_counter() - started, 2)
        result["lmprog_commit"] = plan.get("lmprog_commit")
        result["load_average_end"] = common.load_average()
        store.save(cell, result)
        print(
            f"cell {cell.task}/{cell.name}: {result['test']['score']:.1f} in {result['cell_seconds']:.0f}s",
            flush=True,
        )


def splits_of(cell: cells.Cell) -> tasks.Splits:
    base, options = configs.TASKS[cell.task]
    s = cell.settings
    return tasks.load(base, tuple(s["sizes"]), cell.seed, test_seed=s["test_seed"], **options)


class CellRunner:
    """Shared by both frameworks: metering the optimization and the test evaluation."""

    def __init__(self, plan: dict[str, Any]) -> None:
        self.plan = plan
        self.litellm = common.litellm_module()

    def run(self, cell: cells.Cell, cache: Path) -> dict[str, Any]:
        splits = splits_of(cell)
        spec = cell.settings["optimizer"]
        program = self.prepare(cell, splits, cache)
        out: dict[str, Any] = {
            "optimizer": spec,
            "sizes": [len(splits.train), len(splits.val), len(splits.test)],
        }
        if spec is not None:
            before = common.METER.snapshot()
            common.METER.set_cap(cell.settings["budget"])
            t0, c0 = time.perf_counter(), time.process_time()
            own: dict[str, int] = {}
            try:
                with self.own_usage(own):
                    program, details = self.compile(cell, splits, program)
            except Exception as e:  # the optimizer failed: its user is left with the unoptimized program
                traceback.print_exc()
                details = {"error": f"{type(e).__name__}: {e}"[:500]}
                program = self.prepare(cell, splits, cache)
            finally:
                common.METER.set_cap(None)
            out["optimize"] = {
                "seconds": round(time.perf_counter() - t0, 2),
                "cpu_seconds": round(time.process_time() - c0, 2),
                "lm": common.METER.snapshot().minus(before).to_dict(),
                **({"lm_own": own} if own else {}),
                **details,
            }
        before = common.METER.snapshot()
        t0, c0 = time.perf_counter(), time.process_time()
        own_test: dict[str, int] = {}
        with self.own_usage(own_test):
            preds, scores, kinds = self.evaluate(program, splits)
        gold = [_gold(row) for row in splits.test]
        out["test"] = {
            "seconds": round(time.perf_counter() - t0, 2),
            "cpu_seconds": round(time.process_time() - c0, 2),
            "lm": common.METER.snapshot().minus(before).to_dict(),
            **({"lm_own": own_test} if own_test else {}),
            "score": round(100.0 * sum(scores) / max(1, len(scores)), 2),
            "n": len(scores),
            "errors": sum(kinds.values()),
            # why the failed examples failed: exception type -> examples (lmprog), or DSPy's
            # "no prediction" (its Evaluate keeps no error)
            "error_kinds": dict(sorted(kinds.items())),
            "scores": [round(float(x), 4) for x in scores],
            "predictions": [None if p is None else str(p)[:60] for p in preds],
            "gold": [str(g)[:60] for g in gold],
        }
        return out

    @contextlib.contextmanager
    def own_usage(self, into: dict[str, int]) -> Iterator[None]:
        """The framework's own request count, where it has one (filled into ``into``): lmprog
        sends the completion layout to llama.cpp directly, past the litellm meter."""
        yield

    def prepare(self, cell: cells.Cell, splits: tasks.Splits, cache: Path) -> Any:
        raise NotImplementedError

    def compile(self, cell: cells.Cell, splits: tasks.Splits, program: Any) -> tuple[Any, dict[str, Any]]:
        raise NotImplementedError

    def evaluate(self, program: Any, splits: tasks.Splits) -> tuple[list[Any], list[float], Counter[str]]:
        raise NotImplementedError


def _kind(result: Any) -> str:
    """What kind of failure an lmprog example result holds: its exception's type name (the
    message alone when the evaluation kept no exception)."""
    if result.exception is not None:
        return type(result.exception).__name__
    return str(result.error).split(":", 1)[0][:60]


def _gold(row: dict[str, Any]) -> Any:
    return row.get("label", row.get("answer"))


def _answer(prediction: Any) -> Any:
    """The scored part of a prediction: the label, or the answer of a structured output."""
    if prediction is None or isinstance(prediction, (str, int, float, bool)):
        return prediction
    for name in ("label", "answer"):
        value = getattr(prediction, name, None)
        if value is not None:
            return value
    return str(prediction)


class LmprogCells(CellRunner):
    def __init__(self, plan: dict[str, Any]) -> None:
        super().__init__(plan)
        import lmprog_programs

        import lmprog

        self.lmprog = lmprog
        self.programs = lmprog_programs
        self.metric: Any = None

    def prepare(self, cell: cells.Cell, splits: tasks.Splits, cache: Path) -> Any:
        from lmprog.function import LMFunction

        self.lmprog.configure(
            lm=self.plan["model"],
            temperature=0.0,
            max_tokens=cell.settings["max_tokens"],
            cache=True,
            cache_dir=cache,
            load_prompts=False,
            trace=True,
        )
        program, self.metric = self.programs.BUILDERS[splits.name](splits)
        for fn in [
            program,
            self.programs.write_query,
            self.programs.answer_question,
            self.programs.solve_math,
        ]:
            if isinstance(fn, LMFunction):
                fn.reset()
        return program

    @contextlib.contextmanager
    def own_usage(self, into: dict[str, int]) -> Iterator[None]:
        from lmprog.usage import track

        with track() as scope:
            try:
                yield
            finally:
                total = scope.total
                into.update(
                    requests=total.requests,
                    prompt_tokens=total.prompt_tokens,
                    completion_tokens=total.completion_tokens,
                )

    def compile(self, cell: cells.Cell, splits: tasks.Splits, program: Any) -> tuple[Any, dict[str, Any]]:
        name, options = cell.settings["optimizer"]
        options = dict(options)
        if name in ("mipro", "reflect"):
            options["storage"] = str(cells.cache_dir(Path(self.plan["work"]), cell) / "study.db")
        result = self.lmprog.optimize(
            program,
            splits.train,
            self.metric,
            valset=splits.val or None,
            optimizer=name,
            budget=self.lmprog.Budget(max_calls=cell.settings["budget"]),
            seed=cell.seed,
            save=False,
            threads=1,
            progress=False,
            **options,
        )
        return program, {
            "stopped_by": result.stopped_by,
            "val_score": result.score,
            "demos": {fn.name: len(st.demos) for fn, st in result.states.items()},
            "instructions": {fn.name: st.instruction for fn, st in result.states.items() if st.instruction},
            "warnings": [str(w)[:300] for w in getattr(result, "warnings", [])][:5],
            "layouts": {
                fn.name: [getattr(st, "layout", "chat"), getattr(st, "decode", "sample")]
                for fn, st in result.states.items()
            },
            # what the variants step tried (scores, label counts, budget skips) and its reserve
            "variants": result.details.get("variants"),
            "variants_budget": result.details.get("variants_budget"),
        }

    def evaluate(self, program: Any, splits: tasks.Splits) -> tuple[list[Any], list[float], Counter[str]]:
        res = self.lmprog.evaluate(program, splits.test, self.metric, threads=1, progress=False)
        preds = [_answer(r.prediction) if r.error is None else None for r in res.results]
        kinds = Counter(_kind(r) for r in res.results if r.error is not None)
        return preds, [float(r.value) for r in res.results], kinds


class DspyCells(CellRunner):
    def __init__(self, plan: dict[str, Any]) -> None:
        super().__init__(plan)
        import dspy
        import dspy_programs

        self.dspy = dspy
        self.programs = dspy_programs
        dspy.disable_logging()  # per-example parse errors: counted in the cell, not logged
        self.model = common.dspy_model_name(plan["model"])
        self.metric: Any = None

    def prepare(self, cell: cells.Cell, splits: tasks.Splits, cache: Path) -> Any:
        dspy = self.dspy
        dspy.configure_cache(
            enable_disk_cache=True, enable_memory_cache=True, disk_cache_dir=str(cache / "dspy")
        )
        self.lm = dspy.LM(self.model, temperature=0.0, max_tokens=cell.settings["max_tokens"], cache=True)
        dspy.configure(lm=self.lm, max_errors=BIG)
        program, self.metric = self.programs.BUILDERS[splits.name](splits)
        return program

    def compile(self, cell: cells.Cell, splits: tasks.Splits, program: Any) -> tuple[Any, dict[str, Any]]:
        dspy = self.dspy
        name, options = cell.settings["optimizer"]
        options = dict(options)
        train = self.programs.examples(splits.train, splits.inputs)
        val = self.programs.examples(splits.val, splits.inputs) or None
        seed = cell.seed
        if name == "LabeledFewShot":
            compiled = dspy.LabeledFewShot(**options).compile(program, trainset=train)
        elif name == "BootstrapFewShot":
            compiled = dspy.BootstrapFewShot(metric=self.metric, max_errors=BIG, **options).compile(
                program, trainset=train
            )
        elif name == "BootstrapFewShotWithRandomSearch":
            opt = dspy.BootstrapFewShotWithRandomSearch(
                metric=self.metric, num_threads=1, max_errors=BIG, **options
            )
            compiled = opt.compile(program, trainset=train, valset=val)
        elif name == "MIPROv2":
            extra = options.pop("compile", {})
            opt = dspy.MIPROv2(
                metric=self.metric, seed=seed, num_threads=1, max_errors=BIG, verbose=False, **options
            )
            compiled = opt.compile(program, trainset=train, valset=val, **extra)
        elif name == "KNNFewShot":
            import bow

            vectorizer = bow.HashedTfidf().fit([bow.knn_text(e) for e in train])
            opt = dspy.KNNFewShot(
                trainset=train, vectorizer=dspy.Embedder(vectorizer, caching=False), **options
            )
            compiled = opt.compile(program)
        elif name == "GEPA":
            reflection = dspy.LM(
                self.model, temperature=1.0, max_tokens=configs.REFLECTION_MAX_TOKENS, cache=True
            )
            opt = dspy.GEPA(
                metric=feedback_metric(self.metric, dspy),
                max_metric_calls=cell.settings["budget"],
                reflection_lm=reflection,
                num_threads=1,
                seed=seed,
                **options,
            )
            compiled = opt.compile(program, trainset=train, valset=val)
        else:
            raise ValueError(f"unknown DSPy optimizer {name!r}")
        return compiled, {
            "demos": {n: len(p.demos) for n, p in compiled.named_predictors()},
            "instructions": {n: p.signature.instructions[:500] for n, p in compiled.named_predictors()},
        }

    def evaluate(self, program: Any, splits: tasks.Splits) -> tuple[list[Any], list[float], Counter[str]]:
        test = self.programs.examples(splits.test, splits.inputs)
        evaluator = self.dspy.Evaluate(
            devset=test,
            metric=self.metric,
            num_threads=1,
            display_progress=False,
            max_errors=BIG,
            provide_traceback=False,
        )
        res = evaluator(program)
        preds, scores, kinds = [], [], Counter[str]()
        for _example, prediction, score in res.results:
            fields = dict(prediction) if prediction is not None else {}
            preds.append(_answer(prediction) if fields else None)
            scores.append(float(score or 0.0))
            if not fields:
                kinds["no prediction"] += 1
        return preds, scores, kinds


def feedback_metric(metric: Any, dspy: Any) -> Any:
    """DSPy's GEPA wants ``(gold, pred, trace, pred_name, pred_trace)`` and text feedback: the
    score plus the expected answer (what lmprog's reflect is shown as well)."""

    def gepa_metric(
        gold: Any, pred: Any, trace: Any = None, pred_name: Any = None, pred_trace: Any = None
    ) -> Any:
        score = float(metric(gold, pred, trace) or 0.0)
        expected = gold.get("label", gold.get("answer"))
        got = _answer(pred)
        text = "Correct." if score >= 1.0 else f"Wrong: answered {got!r}, expected {expected!r}."
        return dspy.Prediction(score=score, feedback=text)

    return gepa_metric


if __name__ == "__main__":
    main()
