"""``best_of`` and ``refine``: run a program several times for one input and keep the best output.

Both wrap a callable and return a callable with the same parameters and return type (generic in
its ``ParamSpec`` and return type, so a type checker keeps them)::

    best = lmprog.best_of(5, answer, reward)        # then best(question="...")
    better = lmprog.refine(answer, reward, attempts=3, threshold=1.0)

``reward(inputs, prediction)`` scores one output: ``inputs`` maps the program's parameter names to
the call's arguments; it returns a number, a bool or a :class:`~lmprog.metrics.Feedback` (a score
with a text saying what is wrong, which ``refine`` shows to the model).

Rollouts the cache keeps apart: rollout 0 is the plain call (it shares its cache entry with an
ordinary call); rollout ``i > 0`` runs with the setting ``rollout`` set, which every LM adds to
the request's cache key without sending anything to the provider (see :mod:`lmprog.lm`). Inside a
block that already sets ``rollout`` (an optimizer's), rollout ``i > 0`` is ``base * 1000 + i``.
Identical requests at temperature 0 would give identical outputs, so when the settings'
temperature is 0, rollouts ``i > 0`` run at :data:`ROLLOUT_TEMPERATURE` (or the ``temperature``
given); a temperature set on the LM or the lm_function takes precedence, as always. A second run
of the same rollouts is served from the cache, rollout by rollout.

Every rollout is a span (kind ``"traced"``, named ``"rollout <i>"``, inputs with ``rollout`` and
the program's arguments, output the prediction) under a span named ``best_of`` or ``refine``.
A rollout whose reply did not parse (:class:`~lmprog.errors.OutputParseError`) is skipped and
recorded in its span; when every rollout failed, the last error is raised. Sync programs only.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeAlias, TypeVar

from lmprog import settings
from lmprog.errors import OutputParseError, UsageError
from lmprog.function import LMFunction, use_states
from lmprog.metrics import Feedback
from lmprog.trace import span

P = ParamSpec("P")
R = TypeVar("R")

logger = logging.getLogger("lmprog.ensemble")

#: The temperature of rollouts after the first when the settings' temperature is 0.
ROLLOUT_TEMPERATURE = 0.7

#: What a reward returns: a score (higher is better), or a score with a text for the model.
Reward: TypeAlias = Callable[[dict[str, Any], R], "float | bool | Feedback"]


def best_of(
    n: int, fn: Callable[P, R], reward: Reward[R], *, temperature: float | None = None
) -> Callable[P, R]:
    """``fn`` run ``n`` times per call (rollouts kept apart by the cache); returns the output with
    the highest ``reward(inputs, prediction)`` (the first of equals).

    Args:
        n: the number of rollouts (>= 1).
        fn: an lm_function or any sync program of lm_functions (every LM call inside a rollout
            gets that rollout's cache identity).
        reward: scores one output (a number, a bool or a ``Feedback``).
        temperature: the temperature of rollouts after the first when the settings' is 0
            (default :data:`ROLLOUT_TEMPERATURE`).

    Returns:
        A callable with ``fn``'s parameters and return type.

    Raises:
        UsageError: ``n`` < 1, or ``fn`` is async (when made).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UsageError(f"best_of: n must be an int >= 1, got {n!r}")
    _check_sync(fn, "best_of")
    name = _name(fn)

    @functools.wraps(fn, updated=())  # not the instance dict of an LMFunction
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        inputs = _inputs(fn, args, kwargs)
        best: tuple[float, R] | None = None
        error: OutputParseError | None = None
        with span("best_of", f"best_of({name})", "traced", {"n": n, **inputs}) as outer:
            for i in range(n):
                try:
                    out = _rollout(i, temperature, inputs, lambda: fn(*args, **kwargs))
                except OutputParseError as e:
                    logger.info("best_of(%s): rollout %d failed: %s", name, i, e)
                    error = e
                    continue
                score, _ = _score(reward, inputs, out)
                if best is None or score > best[0]:
                    best = (score, out)
            if best is None:
                assert error is not None
                raise error
            if outer is not None:
                outer.output = best[1]
            return best[1]

    return run


def refine(
    fn: LMFunction[P, R],
    reward: Reward[R],
    *,
    attempts: int = 3,
    threshold: float = 1.0,
    temperature: float | None = None,
) -> Callable[P, R]:
    """``fn`` called until ``reward(inputs, prediction)`` reaches ``threshold`` or ``attempts`` run
    out; each attempt after the first sees the previous prediction, its score and the reward's
    feedback text, appended to the instruction. Returns the best output seen (the first of equals).

    Args:
        fn: a sync lm_function (its instruction carries the feedback).
        reward: scores one output (a number, a bool or a ``Feedback``, whose text the model sees).
        attempts: the most calls to make (>= 1).
        threshold: the score that ends the loop.
        temperature: as in :func:`best_of`, for attempts after the first.

    Returns:
        A callable with ``fn``'s parameters and return type.

    Raises:
        UsageError: ``attempts`` < 1, or ``fn`` is not a sync lm_function (when made).
    """
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise UsageError(f"refine: attempts must be an int >= 1, got {attempts!r}")
    if not isinstance(fn, LMFunction):
        raise UsageError(f"refine: fn must be an lm_function, got {type(fn).__name__}")
    _check_sync(fn, "refine")

    @functools.wraps(fn, updated=())  # not the instance dict of an LMFunction
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        inputs = _inputs(fn, args, kwargs)
        best: tuple[float, R] | None = None
        error: OutputParseError | None = None
        hint: str | None = None
        with span("refine", f"refine({fn.name})", "traced", {"attempts": attempts, **inputs}) as outer:
            for i in range(attempts):
                state = fn.state
                if hint is not None:
                    state = dataclasses.replace(state, instruction=fn.instruction + hint)
                try:
                    with use_states({fn: state}):
                        out = _rollout(i, temperature, inputs, lambda: fn(*args, **kwargs))
                except OutputParseError as e:
                    logger.info("refine(%s): attempt %d failed: %s", fn.name, i, e)
                    error = e
                    hint = f"\n\nA previous attempt failed: {e}\nAnswer again, in the required format."
                    continue
                score, text = _score(reward, inputs, out)
                if best is None or score > best[0]:
                    best = (score, out)
                if score >= threshold:
                    break
                hint = _hint(out, score, threshold, text)
            if best is None:
                assert error is not None
                raise error
            if outer is not None:
                outer.output = best[1]
            return best[1]

    return run


def _rollout(i: int, temperature: float | None, inputs: dict[str, Any], call: Callable[[], R]) -> R:
    with (
        _rollout_context(i, temperature),
        span(f"rollout {i}", "rollout", "traced", {"rollout": i, **inputs}) as s,
    ):
        out = call()
        if s is not None:
            s.output = out
        return out


@contextmanager
def _rollout_context(i: int, temperature: float | None) -> Iterator[None]:
    if i == 0:
        yield
        return
    current = settings.current()
    override: dict[str, Any] = {"rollout": (current.rollout or 0) * 1000 + i}
    if not current.temperature:
        override["temperature"] = ROLLOUT_TEMPERATURE if temperature is None else temperature
    with settings.context(**override):
        yield


def _score(reward: Reward[R], inputs: dict[str, Any], out: R) -> tuple[float, str | None]:
    value = reward(dict(inputs), out)
    if isinstance(value, Feedback):
        return float(value.score), value.text
    if not isinstance(value, (int, float)):
        raise UsageError(f"a reward must return a number, a bool or a Feedback, got {type(value).__name__}")
    return float(value), None


def _hint(out: Any, score: float, threshold: float, text: str | None) -> str:
    lines = [
        "",
        "",
        "A previous attempt answered:",
        _show(out),
        f"It scored {score:.3g} (the goal is {threshold:.3g}).",
    ]
    if text:
        lines.append(f"Feedback: {text}")
    lines.append("Give a better answer.")
    return "\n".join(lines)


def _show(value: Any) -> str:
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        value = dump(mode="json")
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _inputs(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    bound = inspect.signature(fn).bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


def _check_sync(fn: Callable[..., Any], what: str) -> None:
    if inspect.iscoroutinefunction(fn) or getattr(fn, "is_async", False):
        raise UsageError(f"{what}: {_name(fn)} is async; only sync programs are supported")


def _name(fn: Callable[..., Any]) -> str:
    return str(getattr(fn, "name", None) or getattr(fn, "__qualname__", None) or repr(fn))
