"""What ``evaluate`` returns: one :class:`ExampleResult` per example and the :class:`EvaluationResult`
that sums them up (score, usage, errors, a summary table); and the progress bar shown meanwhile.

One scale for scores: a ``score`` is 0-100 wherever it is shown (an example's, the mean, an
optimizer's). The metric's own value, a bool or a number in [0, 1], is kept as ``value``.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from lmprog.data import Example, location
from lmprog.usage import Usage

if TYPE_CHECKING:
    from rich.console import Group

    from lmprog.metrics import Feedback
    from lmprog.trace import Span, Trace


@dataclass(frozen=True)
class ExampleResult:
    """The run of the program on one example.

    Attributes:
        example: The row, with its inputs marked (``example.inputs()``).
        prediction: What the program returned (None when it raised).
        value: The metric's value as it returned it, in [0, 1] (a bool as 0.0 or 1.0); 0 when
            ``error`` is set. :attr:`score` is the same on the 0-100 scale lmprog shows.
        error: The failure's message (a missing input, the program raising, the metric
            raising), else None.
        trace: The spans of the program's run (empty when tracing is off in the settings).
        usage: The LM usage of the program and of the metric.
        seconds: The program's run time.
        index: The example's position in the data.
        exception: The exception behind ``error``, if any.
        feedback: The metric's :class:`~lmprog.metrics.Feedback`, or one holding ``error``.
    """

    example: Example
    prediction: Any
    value: float
    error: str | None
    trace: Trace | None
    usage: Usage
    seconds: float
    index: int = 0
    exception: BaseException | None = field(default=None, repr=False, compare=False)
    feedback: Feedback | None = None

    @property
    def feedback_text(self) -> str | None:
        """The feedback's text (the error of a failed example), or None."""
        return None if self.feedback is None else self.feedback.text

    @property
    def score(self) -> float:
        """The example's score, 0-100: ``100 * value``."""
        return 100.0 * self.value

    @property
    def ok(self) -> bool:
        return self.error is None

    def describe_error(self) -> str:
        """The error prefixed with where the example comes from (``train.jsonl, line 4: ...``)."""
        where = location(self.example, self.index)
        message = self.error or "no error"
        return message if message.startswith(where) else f"{where}: {message}"


@dataclass
class EvaluationResult:
    """The results of one ``evaluate`` run, in the order of the data.

    Attributes:
        results: One :class:`ExampleResult` per example that finished, in the order of the data
            (after an early stop, ``max_errors``, only those that finished).
        wall_time: Seconds the whole run took.
        program: The program's name, as shown in summaries.
        metric: The metric's name.
        total: How many examples were asked for.

    Example:
        >>> result = lmprog.evaluate(classify, "test.jsonl", metrics.exact_match)  # doctest: +SKIP
        >>> result.score, len(result.errors)  # 0-100, failed examples  # doctest: +SKIP
        (87.5, 0)
    """

    results: list[ExampleResult]
    wall_time: float = 0.0
    program: str = "program"
    metric: str = "metric"
    total: int = 0

    @property
    def score(self) -> float:
        """The mean score, 0-100 (failed examples count as 0)."""
        if not self.results:
            return 0.0
        return 100.0 * sum(r.value for r in self.results) / len(self.results)

    @property
    def scores(self) -> list[float]:
        """Every example's score, 0-100, in the order of the data."""
        return [r.score for r in self.results]

    @property
    def values(self) -> list[float]:
        """Every example's metric value as the metric returned it (in [0, 1])."""
        return [r.value for r in self.results]

    @property
    def errors(self) -> list[ExampleResult]:
        """The results that failed."""
        return [r for r in self.results if r.error is not None]

    @property
    def usage(self) -> Usage:
        """The LM usage of the whole run: the sum over examples."""
        total = Usage()
        for r in self.results:
            total = total + r.usage
        return total

    def summary(self, rows: int = 10, width: int = 110) -> str:
        """A compact text report: the score, errors and usage, then the first ``rows`` results."""
        from rich.console import Console

        buffer = io.StringIO()
        console = Console(file=buffer, width=width, color_system=None, force_terminal=False, soft_wrap=True)
        console.print(self.renderable(rows))
        return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"

    def renderable(self, rows: int = 10) -> Group:
        """The summary as a rich renderable, e.g. for ``rich.print(result.renderable())``."""
        from rich import box
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        errors = self.errors
        usage = self.usage
        done = "" if len(self.results) == self.total else f" of {self.total}"
        lines = [
            f"{self.program} / {self.metric}: {self.score:.1f} on {len(self.results)}{done} example(s), "
            f"{len(errors)} error(s), {self.wall_time:.1f}s",
            f"LM: {usage.calls} call(s) ({usage.describe_requests()}, {usage.cache_hits} cached), "
            f"{usage.total_tokens} tokens, ${usage.cost:.4f}",
        ]
        lines += [_short(r.describe_error(), 200) for r in errors[:3]]
        if len(errors) > 3:
            lines.append(f"... and {len(errors) - 3} more error(s)")
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("#", justify="right")
        table.add_column("inputs", overflow="ellipsis", max_width=40, no_wrap=True)
        table.add_column("label", overflow="ellipsis", max_width=24, no_wrap=True)
        table.add_column("prediction", overflow="ellipsis", max_width=28, no_wrap=True)
        table.add_column("score", justify="right")
        for r in self.results[:rows]:
            marked = r.example.input_keys is not None
            inputs = r.example.inputs() if marked else dict(r.example)
            labels = r.example.labels() if marked else {}
            shown_label: Any = next(iter(labels.values())) if len(labels) == 1 else labels
            prediction = f"ERROR {r.error}" if r.error and r.prediction is None else repr(r.prediction)
            table.add_row(
                str(r.index),
                _short(", ".join(f"{k}={v!r}" for k, v in inputs.items()), 200),
                _short(repr(shown_label), 200),
                _short(prediction, 200),
                f"{r.score:.1f}",
            )
        if len(self.results) > rows:
            table.add_row("...", f"{len(self.results) - rows} more", "", "", "")
        return Group(Text("\n".join(lines)), table)

    def __repr__(self) -> str:
        return (
            f"EvaluationResult(score={self.score:.2f}, n={len(self.results)}, "
            f"errors={len(self.errors)}, wall_time={self.wall_time:.2f}s)"
        )


def usage_from_spans(spans: Iterable[Span]) -> Usage:
    """The LM usage recorded in a trace's lm spans: completions (retries included), provider
    requests, cache hits, tokens and cost."""
    total = Usage()
    for s in spans:
        if s.kind == "lm":
            total = total + s.usage
    return total


def _short(text: str | None, limit: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ProgressBar:
    """A rich progress bar on stderr showing the running mean score; silent when disabled."""

    def __init__(self, mode: bool | Literal["auto"], total: int, name: str) -> None:
        self.mode = mode
        self.total = total
        self.name = name
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> ProgressBar:
        if self.mode is False or self.total == 0:
            return self
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        console = Console(stderr=True)
        if self.mode == "auto" and not console.is_terminal:
            return self
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self._task = self._progress.add_task(self.name, total=self.total, status="")
        self._progress.start()
        return self

    def advance(self, mean_score: float, errors: int) -> None:
        """One more example done; ``mean_score`` is the running mean score, 0-100."""
        if self._progress is None:
            return
        status = f"score {mean_score:.1f}" + (f", {errors} error(s)" if errors else "")
        self._progress.update(self._task, advance=1, status=status)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
