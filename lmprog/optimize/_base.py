"""What every optimizer shares: the task it is given, the result it returns, the base class."""

from __future__ import annotations

import logging
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmprog.errors import EvaluationError, LMError, OutputParseError, TransientLMError
from lmprog.evaluate import evaluate
from lmprog.function import LMFunction, State, use_states
from lmprog.optimize.balance import format_counts
from lmprog.optimize.budget import Budget
from lmprog.usage import Usage

if TYPE_CHECKING:
    from lmprog.data import Example
    from lmprog.evaluate import EvaluationResult

logger = logging.getLogger("lmprog.optimize")

States = Mapping[LMFunction[..., Any], State]
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
    functions: list[LMFunction[..., Any]] = field(default_factory=list)

    def evaluate(
        self, data: Sequence[Example], states: States | None = None, **kwargs: Any
    ) -> EvaluationResult:
        with use_states(states or {}):
            kwargs.setdefault("progress", "auto" if self.progress else False)
            result = evaluate(self.program, data, self.metric, threads=self.threads, **kwargs)
        check_provider(result)
        check_errors(result, self.program)
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


def check_errors(result: EvaluationResult, program: Any = None) -> None:
    """Raise ``EvaluationError`` when most examples failed because the program or the metric raised
    (not because the model's reply could not be parsed, which prompts can fix): their zero scores
    say nothing about the prompts, and optimizing against them would pick at random and overwrite
    good prompt files. The message shows the first errors: where each was raised, the example and
    the exception."""
    failed = [r for r in result.results if r.exception is not None and not _prompt_fixable(r.exception)]
    if not failed or 2 * len(failed) <= len(result.results):
        return
    name = getattr(program, "__qualname__", None) or getattr(program, "__name__", "the program")
    lines = [
        f"{len(failed)} of {len(result.results)} example(s) failed in {name}: the program or the "
        "metric raised, so the scores would be zeros that say nothing about the prompts; the "
        "optimization stops and writes no prompt file. Fix the error and run it again. First errors:"
    ]
    for r in failed[:3]:
        lines.append(f"  {r.describe_error()} [raised in {raised_in(r.exception)}]")
    if len(failed) > 3:
        lines.append(f"  ... and {len(failed) - 3} more")
    raise EvaluationError("\n".join(lines), result)


def _prompt_fixable(error: BaseException) -> bool:
    """A failure better prompts can fix: the model's reply did not parse (after its retries)."""
    return isinstance(error, OutputParseError)


def raised_in(error: BaseException | None) -> str:
    """``function (file:line)`` of the innermost frame of ``error`` outside lmprog itself."""
    frames = traceback.extract_tb(error.__traceback__) if error is not None else []
    own = [f for f in frames if not _is_lmprog_file(f.filename)]
    if not own:
        return "lmprog"
    frame = own[-1]
    return f"{frame.name} ({Path(frame.filename).name}:{frame.lineno})"


def _is_lmprog_file(filename: str) -> bool:
    return Path(filename).resolve().is_relative_to(_LMPROG_DIR)


_LMPROG_DIR = Path(__file__).resolve().parent.parent


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

    states: dict[LMFunction[..., Any], State]
    score: float | None
    label: str = ""
    evaluated_on: int = 0
    prompt_tokens: float | None = None
    #: per categorical function (qualname): validation predictions per label (see ``balance``)
    label_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    #: whether those predictions collapsed to one label while the validation labels did not
    collapsed: bool = False


@dataclass
class OptimizationResult:
    """What ``optimize()`` returns. Every score is on the 0-100 scale.

    Attributes:
        optimizer: The optimizer's name.
        states: The chosen instruction and demos per lm_function (already applied to the
            functions unless ``apply=False``).
        score: The chosen configuration's validation score, or None when it was not measured.
        baseline_score: The unoptimized program's score on the same data, when measured.
        candidates: Every configuration scored.
        usage: The LM usage of the whole run.
        files: The prompt files written.
        stopped_by: The budget cap that ended the run (``"max_calls"``...), if any.
        seed: The seed of the run.
        details: What the optimizer reports besides (a dict; MIPRO's is typed, see
            :class:`~lmprog.optimize.mipro.MiproDetails`).
        kept: Why no prompt file was written when saving was asked for (the result was not
            measured, or did not beat the committed prompt files on the same validation data),
            else None.
        warnings: Problems the run met that did not stop it, one sentence each (also logged),
            e.g. ``"bootstrap: found no demo for classify: ..."``.
        label_counts: The chosen configuration's validation predictions per label, per
            function with a categorical output (``{"classify": {"negative": 21, "positive":
            29}}``), when it was scored.
    """

    optimizer: str
    states: dict[LMFunction[..., Any], State]
    score: float | None
    baseline_score: float | None = None
    candidates: list[Candidate] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    files: list[Path] = field(default_factory=list)
    stopped_by: str | None = None
    seed: int = 0
    details: MutableMapping[str, Any] = field(default_factory=dict)
    kept: str | None = None
    warnings: list[str] = field(default_factory=list)
    label_counts: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def measured(self) -> bool:
        """Whether the chosen configuration was scored on validation data."""
        return self.score is not None

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
        lines.extend(f"predicted labels: {line}" for line in format_counts(self.label_counts))
        variants = self.details.get("variants") if isinstance(self.details, Mapping) else None
        if variants:
            chosen = next(iter(self.states.values()), None)
            if chosen is not None:
                lines.append(
                    f"layout: {chosen.layout}, decode: {chosen.decode} "
                    f"(best of {sum('score' in v for v in variants)} variants tried on validation data)"
                )
        for fn, state in self.states.items():
            demos = f"{len(state.demos)} demos"
            if state.pool is not None:
                demos = f"{state.pool.k} retrieved demos of a pool of {len(state.pool.demos)}"
            lines.append(
                f"  {fn.signature.qualname}: {demos}, "
                f"instruction {'optimized' if state.instruction is not None else 'from docstring'}"
            )
        u = self.usage
        lines.append(
            f"LM usage: {u.calls} calls ({u.describe_requests()}, {u.cache_hits} cache hits), "
            f"{u.total_tokens} tokens, cost {u.cost:.4f}"
        )
        if self.stopped_by:
            lines.append(f"stopped by budget: {self.stopped_by}")
        if self.score is None:
            lines.append("not measured: no validation score")
        if self.kept:
            lines.append(f"no prompt file written: {self.kept}")
        lines.extend(f"warning: {w}" for w in self.warnings)
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

    def min_calls(self, task: Task) -> int:
        """The smallest ``Budget(max_calls=...)`` a run of ``task`` accepts (0: any). ``optimize()``
        never sets calls aside for the variants step that would leave the optimizer fewer."""
        return 0

    def estimate_calls(self, task: Task) -> int:
        """An upper estimate of the LM calls a fresh run makes (before cache hits); shown before
        starting. The default assumes one run of the program per training and validation example."""
        return (len(task.trainset) + len(task.valset)) * max(1, len(task.functions))
