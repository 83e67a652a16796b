"""What every optimizer shares: the task it is given, the result it returns, the base class."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmprog.errors import LMError, TransientLMError
from lmprog.function import LMFunction, State, use_states
from lmprog.optimize.budget import Budget
from lmprog.usage import Usage

if TYPE_CHECKING:
    from lmprog.data import Example
    from lmprog.evaluate import EvaluationResult

logger = logging.getLogger("lmprog.optimize")

States = Mapping[LMFunction, State]
Metric = Callable[..., Any]


@dataclass
class Task:
    """Everything an optimizer works from. ``evaluate`` runs the program on data under states."""

    program: Callable[..., Any]
    trainset: list[Example]
    valset: list[Example]
    metric: Metric
    budget: Budget
    seed: int
    threads: int = 8
    progress: bool = True
    functions: list[LMFunction] = field(default_factory=list)

    def evaluate(
        self, data: Sequence[Example], states: States | None = None, **kwargs: Any
    ) -> EvaluationResult:
        from lmprog.evaluate import evaluate

        with use_states(states or {}):
            kwargs.setdefault("progress", "auto" if self.progress else False)
            result = evaluate(self.program, data, self.metric, threads=self.threads, **kwargs)
        check_provider(result)
        return result


def provider_failed(error: BaseException | None) -> bool:
    """Whether an example failed because the provider did, not because of the prompt: a transient
    failure that outlasted the retries, or a refusal of every request (401, 402, 403, 404).

    Per-request refusals (400: a content filter, a prompt too long) stay the example's error.
    """
    if isinstance(error, TransientLMError):
        return True
    return isinstance(error, LMError) and error.status_code in _PROVIDER_DOWN


_PROVIDER_DOWN = frozenset({401, 402, 403, 404})


def check_provider(result: EvaluationResult) -> None:
    """Raise ``LMError`` when examples failed because the provider did: scored as 0 they would
    rank prompts by the provider's outages, and be stored as such in resumable studies."""
    failed = [r for r in result.results if provider_failed(r.exception)]
    if not failed:
        return
    first = failed[0].exception
    assert isinstance(first, LMError)
    error = LMError(
        f"{len(failed)} of {len(result.results)} example(s) failed because the provider did "
        f"(first: {first}); the optimization stops rather than score prompts by provider failures. "
        "What was finished is kept (response cache, optimizer storage): run it again to resume.",
        status_code=first.status_code,
    )
    error.model = first.model
    raise error from first


@dataclass
class Candidate:
    """One configuration an optimizer scored: the states of the lm_functions and its score."""

    states: dict[LMFunction, State]
    score: float | None
    label: str = ""
    evaluated_on: int = 0
    prompt_tokens: float | None = None


@dataclass
class OptimizationResult:
    """What ``optimize()`` returns.

    ``states`` are the chosen instruction and demos per lm_function (already applied to the
    functions unless ``apply=False``), ``score`` the chosen configuration's validation score
    (0-100), ``baseline_score`` the unoptimized program's score on the same data when it was
    measured, ``candidates`` every configuration scored, ``usage`` the LM usage of the whole run,
    ``files`` the prompt files written, ``stopped_by`` the budget cap that ended the run, if any.
    """

    optimizer: str
    states: dict[LMFunction, State]
    score: float | None
    baseline_score: float | None = None
    candidates: list[Candidate] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    files: list[Path] = field(default_factory=list)
    stopped_by: str | None = None
    seed: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    def apply(self) -> None:
        """Set the chosen states on the lm_functions (process-wide)."""
        for fn, state in self.states.items():
            fn.state = state

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Use the chosen states inside a block only (this context)."""
        with use_states(self.states):
            yield

    def summary(self) -> str:
        lines = [f"optimizer: {self.optimizer} (seed {self.seed})"]
        if self.baseline_score is not None:
            lines.append(f"baseline score: {self.baseline_score:.1f}")
        if self.score is not None:
            lines.append(f"optimized score: {self.score:.1f}")
        for fn, state in self.states.items():
            lines.append(
                f"  {fn.signature.qualname}: {len(state.demos)} demos, "
                f"instruction {'optimized' if state.instruction is not None else 'from docstring'}"
            )
        u = self.usage
        lines.append(
            f"LM usage: {u.calls} calls ({u.requests} requests, {u.cache_hits} cache hits), "
            f"{u.total_tokens} tokens, cost {u.cost:.4f}"
        )
        if self.stopped_by:
            lines.append(f"stopped by budget: {self.stopped_by}")
        return "\n".join(lines)


class Optimizer(ABC):
    """An optimization strategy. ``optimize()`` builds the Task, calls :meth:`run` inside a usage
    scope capped by the budget, then applies and saves the result. ``run`` returns the best
    configuration found; when the budget runs out (``BudgetExceededError`` from any LM call) it
    returns the best found so far instead of failing."""

    name: str = ""
    #: score candidates on a validation set (split off the training set when none is given)
    needs_valset: bool = False

    @abstractmethod
    def run(self, task: Task) -> OptimizationResult:
        """Search for better states of ``task.functions``."""

    def estimate_calls(self, task: Task) -> int:
        """An upper estimate of the LM calls a fresh run makes (before cache hits); shown before
        starting. The default assumes one run of the program per training and validation example."""
        return (len(task.trainset) + len(task.valset)) * max(1, len(task.functions))
