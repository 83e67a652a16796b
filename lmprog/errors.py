"""Every exception lmprog raises, split by meaning under one root."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class LmprogError(Exception):
    """Root of all lmprog errors.

    Every lmprog error pickles (process workers send them back to the caller): the copy has the
    same class, message, ``args`` and attributes, whatever the subclass's ``__init__`` takes.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        # The default reduce calls ``cls(*self.args)``, which fails for an __init__ taking other
        # arguments than the message (OutputParseError, BudgetExceededError...).
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


def _rebuild(cls: type[LmprogError], args: tuple[Any, ...], state: dict[str, Any]) -> LmprogError:
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


class UsageError(LmprogError):
    """The developer used lmprog wrongly (bad annotation, bad argument, bad configuration).

    When the problem is in a user's function, the message names the function, its file and line.
    """

    def __init__(
        self, message: str, *, function: str | None = None, file: str | None = None, line: int | None = None
    ) -> None:
        self.function = function
        self.file = file
        self.line = line
        where = ""
        if function is not None:
            where = f"{function}"
            if file is not None:
                where += f" ({file}:{line})" if line is not None else f" ({file})"
            where += ": "
        super().__init__(where + message)


class SignatureError(UsageError):
    """An lm_function's signature cannot be turned into prompt fields (for example an unsupported hint)."""


class OutputParseError(LmprogError):
    """The model's output could not be parsed into the declared return type, after every retry.

    Attributes:
        function: the lm_function's qualified name.
        raw: the last completion.
        errors: what was wrong with it, as shown to the model (one message per problem,
            ``field: [path]: message``; see :class:`lmprog.signature.ParseFailure`).
        attempts: how many completions were tried.
    """

    def __init__(self, function: str, raw: str, errors: Sequence[str], attempts: int) -> None:
        self.function = function
        self.raw = raw
        self.errors = list(errors)
        self.attempts = attempts
        shown = raw if len(raw) <= 300 else raw[:300] + "..."
        super().__init__(
            f"{function}: could not parse the model output after {attempts} attempt(s): "
            f"{'; '.join(self.errors)}. Last completion: {shown!r}"
        )


class TruncatedOutputError(OutputParseError):
    """The model's reply was cut off at ``max_tokens`` (``finish_reason == "length"``), and so was
    the retry with a larger token budget (or no larger budget was possible).

    A cut reply is never parsed, even when its beginning would parse, and never cached. ``raw`` is
    the last, incomplete completion, ``max_tokens`` the budget it was cut at (None when unknown),
    ``attempts`` how many completions were tried; ``errors`` says what happened.
    """

    def __init__(self, function: str, raw: str, attempts: int, max_tokens: int | None) -> None:
        self.function = function
        self.raw = raw
        self.attempts = attempts
        self.max_tokens = max_tokens
        budget = f"max_tokens={max_tokens}" if max_tokens is not None else "the token limit"
        self.errors = [f"the reply was cut off at {budget} (finish_reason 'length')"]
        shown = raw if len(raw) <= 300 else raw[:300] + "..."
        LmprogError.__init__(
            self,
            f"{function}: the model's reply was cut off at {budget} after {attempts} attempt(s) (a "
            "cut reply is retried once with a larger token budget); raise the function's max_tokens "
            f"(@lm_function(max_tokens=...)) or ask for a shorter answer. Last (incomplete) "
            f"completion: {shown!r}",
        )


class MaxStepsError(LmprogError):
    """An lm_function with tools still called a tool after ``max_steps`` turns of tool calls.

    Attributes:
        function: the lm_function's qualified name.
        max_steps: the limit that was reached.
        transcript: every tool call of the run, in order: ``{"tool", "arguments", "result"}``
            or ``{"tool", "arguments", "error"}`` (what the model was shown).
        raw: the last completion (the call that was refused).
    """

    def __init__(self, function: str, max_steps: int, transcript: Sequence[Any], raw: str) -> None:
        self.function = function
        self.max_steps = max_steps
        self.transcript = list(transcript)
        self.raw = raw
        called = ", ".join(str(step.get("tool")) for step in self.transcript if isinstance(step, dict))
        shown = raw if len(raw) <= 300 else raw[:300] + "..."
        super().__init__(
            f"{function}: the model still called a tool after max_steps={max_steps} turns of tool "
            f"calls (called: {called or 'none'}); raise max_steps (@lm_function(max_steps=...)) or "
            f"give it demos that answer sooner. Last completion: {shown!r}"
        )


class LMError(LmprogError):
    """The language model provider failed (after retries where the failure was transient)."""

    def __init__(self, message: str, *, model: str | None = None, status_code: int | None = None) -> None:
        self.model = model
        self.status_code = status_code
        super().__init__(f"{model}: {message}" if model else message)


class TransientLMError(LMError):
    """A failure worth retrying: timeout, rate limit (429), server error (5xx), dropped connection,
    or an empty completion. ``retry_after`` is the provider's hint in seconds, if it gave one."""

    def __init__(
        self,
        message: str,
        *,
        model: str | None = None,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, model=model, status_code=status_code)


class MissingDependencyError(UsageError, ImportError):
    """An optional dependency is not installed; the message names the exact install command."""


class BudgetExceededError(LmprogError):
    """A ``Budget`` cap was reached; ``what`` names the cap (calls, cost, trials)."""

    def __init__(self, what: str, limit: Any, used: Any) -> None:
        self.what = what
        self.limit = limit
        self.used = used
        super().__init__(f"budget exhausted: {what} limit {limit} reached (used {used})")


class DatasetError(LmprogError):
    """A data set row or file is malformed; the message names the file, the row and the problem."""


class PromptFileError(LmprogError):
    """A prompt file is corrupt or unreadable; the message names the path and the line."""


class EvaluationError(LmprogError):
    """An evaluation stopped early: more examples failed than ``max_errors`` allows.

    ``result`` is the partial ``EvaluationResult`` (the examples finished before the stop).
    """

    def __init__(self, message: str, result: Any) -> None:
        self.result = result
        super().__init__(message)
