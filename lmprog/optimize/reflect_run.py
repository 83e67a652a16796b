"""The steps of one reflective run (see :mod:`lmprog.optimize.reflect` for the algorithm).

:meth:`ReflectRun.start` makes the starting demos and validates the seed candidate;
:meth:`ReflectRun.iterate` runs one iteration (a reflection or a merge). Every decision is drawn
from the seed and the records in the store, and each step's records are written in one store
write when it completes, so a resumed run repeats what the uninterrupted one did.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from lmprog import settings
from lmprog.data import Example
from lmprog.errors import BudgetExceededError, LmprogError
from lmprog.evaluate import EvaluationResult
from lmprog.function import LMFunction, State
from lmprog.optimize._base import Task, provider_failed
from lmprog.optimize.balance import expected_counts, is_collapsed, predicted_counts
from lmprog.optimize.bootstrap import BootstrapFewShot
from lmprog.optimize.demos import sample_labeled
from lmprog.optimize.knn import KNNFewShot
from lmprog.optimize.propose import check_instruction, clean_instruction, describe_function
from lmprog.optimize.reflect_config import ReflectConfig, start_calls
from lmprog.optimize.reflect_front import choose_parent, merge_pair
from lmprog.optimize.reflect_gate import Plan, choose_gate, gate_verdict
from lmprog.optimize.reflect_prompt import blame, describe_history, describe_runs, reflect_instruction
from lmprog.optimize.reflect_result import states_of
from lmprog.optimize.reflect_store import CandidateRecord, IterationRecord, ReflectStore
from lmprog.promptfile import DEFAULT_MAX_POOL, DemoPool

__all__ = ["ReflectRun"]

logger = logging.getLogger("lmprog.optimize.reflect")


class ReflectRun:
    """The steps of one reflective run; every decision reads the store, so a resumed run repeats
    the uninterrupted one."""

    def __init__(self, cfg: ReflectConfig, task: Task, store: ReflectStore, ids: list[str], listing: str):
        self.cfg, self.task, self.store, self.ids, self.listing = cfg, task, store, ids, listing
        #: the validation labels per function: the same for every candidate
        self.expected = expected_counts(task.functions, task.valset)
        self.plan = Plan(
            train=len(task.trainset),
            val=len(task.valset),
            per_example=max(1, len(task.functions)),
            start_calls=start_calls(cfg, task),
            max_calls=task.budget.max_calls,
        )

    def states(self, record: CandidateRecord) -> dict[LMFunction[..., Any], State]:
        store = self.store
        return states_of(record, self.task.functions, self.ids, store.demos() or {}, store.pools())

    def start(self) -> None:
        """The starting demos (bootstrapped or retrieved when asked) and the seed candidate,
        validated."""
        task = self.task
        if self.store.demos() is None:
            demos: dict[str, list[dict[str, Any]]] = {}
            pools: dict[str, dict[str, Any]] = {}
            if self.cfg.init == "knn":
                knn = KNNFewShot(k=self.cfg.max_demos)
                rng = random.Random(f"{task.seed}-reflect-pool")
                for fn, fid in zip(task.functions, self.ids, strict=True):
                    rows = sample_labeled(fn, task.trainset, DEFAULT_MAX_POOL, rng)
                    if rows:
                        pools[fid] = knn.pool_for(fn, rows).to_doc()
            if self.cfg.init == "bootstrap":
                boot = BootstrapFewShot(max_bootstrapped_demos=self.cfg.max_demos, max_labeled_demos=0)
                order = list(range(len(task.trainset)))
                random.Random(f"{task.seed}-reflect-demos").shuffle(order)
                found = boot.bootstrap(task, order)
                if found.budget_error is not None:  # never store truncated demos as complete
                    raise found.budget_error
                states = boot.states_from(task, found, random.Random(task.seed))
                demos = {
                    fid: [dict(d) for d in states[fn].demos]
                    for fn, fid in zip(task.functions, self.ids, strict=True)
                }
            self.store.put_demos(demos, pools)
        if not self.store.candidates():
            seed = CandidateRecord(
                0,
                {fid: fn.signature.instruction for fn, fid in zip(task.functions, self.ids, strict=True)},
                (),
                -1,
                None,
                (),
            )
            self.store.put_candidate(self._validate(seed))

    def _validate(self, record: CandidateRecord) -> CandidateRecord:
        """``record`` with its values, label counts and collapse on the validation set."""
        result = self.task.evaluate(self.task.valset, self.states(record))
        counts = predicted_counts(self.task.functions, result)
        return replace(
            record,
            values=tuple(result.values),
            label_counts=counts,
            collapsed=is_collapsed(counts, self.expected),
        )

    def iterate(self, i: int) -> None:
        cands, its = self.store.candidates(), self.store.iterations()
        rng = random.Random(f"{self.task.seed}-reflect-{i}")
        merges = [it for it in its if it.kind == "merge"]
        if self.cfg.merge and len(merges) < self.cfg.max_merges and its and its[-1].accepted:
            pair = merge_pair(cands, {(it.parent, it.other_parent or -1) for it in merges})
            if pair is not None:
                self._merge(i, *pair)
                return
        parent = cands[choose_parent(cands, rng)]
        gate = choose_gate(self.cfg, its, self.plan)
        if gate.reason is not None and (not its or its[-1].accepted):
            logger.info("reflect: iteration %d: gate %d %s (%s)", i, gate.size, gate.test, gate.reason)
        train = self.task.trainset
        batch = tuple(sorted(rng.sample(range(len(train)), min(gate.size, len(train)))))
        before = self._run_batch(parent, batch)
        fid = self._select(its, before)
        fn = self.task.functions[self.ids.index(fid)]
        feedback = tuple(
            r.feedback.text for r in before.results if r.feedback is not None and r.feedback.text
        )
        record = IterationRecord(
            i,
            "reflect",
            parent.index,
            fid,
            minibatch=batch,
            parent_minibatch=before.score,
            gate=gate.test,
            feedback=feedback,
        )
        if all(v >= 1.0 for v in before.values):
            self.store.put_iteration(_with(record, note="perfect on the minibatch"))
            return
        text, why = self._reflect(i, fn, fid, parent, before, its)
        record = _with(record, instruction=text)
        if why is not None:
            self.store.put_iteration(_with(record, note=why))
            return
        child = CandidateRecord(len(cands), {**parent.instructions, fid: text}, (parent.index,), i, fid, ())
        after = self._run_batch(child, batch)
        record = _with(record, child_minibatch=after.score)
        why = gate_verdict(gate, self.cfg.gate_alpha, before.values, after.values)
        if why is not None:
            self.store.put_iteration(_with(record, note=why))
            return
        child = self._validate(child)
        logger.info(
            "reflect: iteration %d: %s accepted, validation %.1f (parent %.1f)",
            i,
            fid,
            child.score,
            parent.score,
        )
        self.store.put_step(
            child,
            _with(
                record,
                accepted=True,
                candidate=child.index,
                val_score=child.score,
                parent_val_score=parent.score,
            ),
        )

    def _select(self, its: list[IterationRecord], before: EvaluationResult) -> str:
        """The function to edit: round-robin over the reflections so far or, by blame, the one
        blamed most on the minibatch (round-robin order among equals)."""
        start = sum(it.kind == "reflect" for it in its) % len(self.ids)
        order = self.ids[start:] + self.ids[:start]
        if self.cfg.select == "round_robin":
            return order[0]
        fns = {fid: self.task.functions[self.ids.index(fid)] for fid in order}
        scores = {fid: blame(fns[fid], before) for fid in order}
        return max(order, key=lambda fid: scores[fid])  # max keeps the first of equals

    def _merge(self, i: int, a: int, b: int, merged: dict[str, str]) -> None:
        cands = self.store.candidates()
        child = CandidateRecord(len(cands), merged, (a, b), i, None, ())
        child = self._validate(child)
        logger.info("reflect: iteration %d: merged %d and %d, validation %.1f", i, a, b, child.score)
        best_parent = max(cands[a].score, cands[b].score)
        self.store.put_step(
            child,
            IterationRecord(
                i,
                "merge",
                a,
                other_parent=b,
                accepted=True,
                candidate=child.index,
                val_score=child.score,
                parent_val_score=best_parent,
            ),
        )

    def _run_batch(self, record: CandidateRecord, batch: tuple[int, ...]) -> EvaluationResult:
        rows = [self.task.trainset[j] for j in batch]
        states = {fn: _leave_out(state, rows) for fn, state in self.states(record).items()}
        with settings.context(trace=True):
            return self.task.evaluate(rows, states)

    def _reflect(
        self,
        i: int,
        fn: LMFunction[..., Any],
        fid: str,
        parent: CandidateRecord,
        before: EvaluationResult,
        its: list[IterationRecord],
    ) -> tuple[str, str | None]:
        """The reflection model's new instruction, and why it is refused (None: usable)."""
        current = parent.instructions[fid]
        override = {"lm": self.cfg.reflection_lm} if self.cfg.reflection_lm is not None else {}
        program = f"{self.listing}\n\n(The function to improve: {fn.signature.qualname}.)"
        try:
            with settings.context(**override, rollout=1 + i):
                raw = reflect_instruction(
                    program=program,
                    function=describe_function(fn, current),
                    runs=describe_runs(fn, before),
                    history=describe_history(fid, fn.signature.instruction, its),
                )
        except BudgetExceededError:
            raise
        except LmprogError as e:
            if provider_failed(e):
                raise
            return "", f"reflection failed: {str(e)[:200]}"
        text = clean_instruction(raw)
        why = check_instruction(text, fn)
        if why == "same as the original" and text != current:
            why = None  # going back to the docstring is a fair edit
        if why is None and text.strip().lower() == current.strip().lower():
            why = "unchanged"
        return text, why


def _leave_out(state: State, rows: list[Example]) -> State:
    """``state`` without the pool demos made from ``rows`` (same values in the pool's fields): a
    training row run on the minibatch must not retrieve itself as a demo (with ``init="knn"``
    every training row is in the pool, and every minibatch would look perfect)."""
    pool = state.pool
    if pool is None:
        return state

    def made_from_a_row(demo: Mapping[str, Any]) -> bool:
        return any(all(f in row and demo.get(f) == row[f] for f in pool.fields) for row in rows)

    kept = tuple(d for d in pool.demos if not made_from_a_row(d))
    return replace(state, pool=DemoPool(pool.k, kept, pool.fields, pool.embedder))


def _with(record: Any, **changes: Any) -> Any:
    return replace(record, **changes)
