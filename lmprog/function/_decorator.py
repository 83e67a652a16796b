"""The ``@lm_function`` decorator, typed so that a call of the decorated function has its declared
return type in a type checker: ``@lm_function def classify(ticket: str) -> Label`` makes
``classify`` an ``LMFunction[(ticket: str), Label]``, and an ``async def`` an
``AsyncLMFunction`` whose call returns ``Awaitable[Label]``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, ParamSpec, Protocol, TypeVar, overload

from lmprog.function._function import AsyncLMFunction, LMFunction
from lmprog.function._run import DEFAULT_MAX_STEPS
from lmprog.lm import BaseLM
from lmprog.tools import Tool

P = ParamSpec("P")
R = TypeVar("R")


class LMFunctionDecorator(Protocol):
    """What ``lm_function(...)`` with options returns: a decorator keeping the function's types."""

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> AsyncLMFunction[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> LMFunction[P, R]: ...


@overload
def lm_function(fn: Callable[P, Coroutine[Any, Any, R]], /) -> AsyncLMFunction[P, R]: ...
@overload
def lm_function(fn: Callable[P, R], /) -> LMFunction[P, R]: ...
@overload
def lm_function(
    *,
    lm: str | BaseLM | None = None,
    max_retries: int = 2,
    temperature: float | None = None,
    name: str | None = None,
    max_tokens: int | None = None,
    constrain: bool | None = None,
    reasoning: bool = False,
    reasoning_effort: str | None = None,
    tools: Sequence[Tool | Callable[..., Any]] = (),
    max_steps: int = DEFAULT_MAX_STEPS,
    tool_first: bool = False,
) -> LMFunctionDecorator: ...
def lm_function(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    lm: str | BaseLM | None = None,
    max_retries: int = 2,
    temperature: float | None = None,
    name: str | None = None,
    max_tokens: int | None = None,
    constrain: bool | None = None,
    reasoning: bool = False,
    reasoning_effort: str | None = None,
    tools: Sequence[Tool | Callable[..., Any]] = (),
    max_steps: int = DEFAULT_MAX_STEPS,
    tool_first: bool = False,
) -> Any:
    """Turn a typed, documented function (sync or async) into a language model call.

    The function's body never runs: its parameters are the inputs, its return annotation the
    output (``str`` when absent), its docstring the instruction and the field descriptions. Use
    it bare (``@lm_function``) or with options (``@lm_function(max_retries=3)``).

    Args:
        fn: the function to decorate (when used bare).
        lm: the model for this function, a model name or an LM object; default: the configured one.
        max_retries: how many times a completion a validator refused is retried with the errors
            shown to the model (a completion in the wrong format is retried at most once of those,
            and not at all under a grammar).
        temperature: a sampling temperature for this function.
        name: its name in prompts, traces and prompt files (default: the function's name).
        max_tokens: a cap on the completion length; by default ``SHORT_OUTPUT_TOKENS`` for a
            single short answer (a Literal, Enum, bool or number) and the configured
            ``max_tokens`` otherwise, so a small model that rambles stops early. A reply cut at
            it is retried once with twice the budget, then raises ``TruncatedOutputError``.
        constrain: whether to constrain decoding to the reply format (a grammar for the
            embedded model, a JSON schema for providers with structured outputs); ``None``
            follows ``lmprog.configure(constrain=...)``, on by default.
        reasoning: make the model think before it answers: the reply format asks for a
            ``reasoning:`` line before the output(s) (a grammar or JSON schema forces it). The
            reasoning is kept in the lm span (``span.reasoning``) and in bootstrapped demos; the
            call still returns the declared type. A reply without it is a format failure
            (retried once). On a model that reasons natively (litellm's ``supports_reasoning``;
            ``BaseLM.native_reasoning``) no field is added: ``reasoning_effort`` is sent and the
            provider's own reasoning (``reasoning_content``, thinking blocks) is what the span
            and demos keep.
        reasoning_effort: the ``reasoning_effort`` sent to a natively reasoning model
            (``"low"``, ``"medium"``, ``"high"``...); default: the LM's own default parameter,
            else ``"medium"``.
        tools: plain typed Python functions the model may call before it answers (sync ones;
            async ones too for an ``async def``). Their names, docstrings and parameters are
            shown to the model; what it passes is validated against their type hints (never
            evaluated); a tool's exception, an unknown tool or bad arguments go back to the model
            as the call's result. Native tool calling where litellm reports it, else a text
            protocol (constrained by a grammar on the embedded model). Each call is a ``"tool"``
            span; the calls are kept in the lm span (``span.tool_calls``) and bootstrapped demos.
        max_steps: how many turns of tool calls the model may take; the request after the last
            is constrained to the answer where the LM takes a constraint, and a tool call there
            raises ``MaxStepsError`` (with the transcript).
        tool_first: the model's first reply must be a tool call, forced by a grammar of calls
            only (the embedded model) or ``tool_choice="required"`` (native tool calling); a
            small model with no demos otherwise tends to answer at once.

    Returns:
        An :class:`LMFunction` (an :class:`AsyncLMFunction` for an ``async def``), or, called
        with options only, a decorator that makes one.

    Raises:
        SignatureError: the function's annotations cannot be carried by a prompt.
        UsageError: an option is out of range, or a tool is async for a sync function.

    Example:
        >>> from typing import Literal
        >>> import lmprog
        >>> from lmprog.testing import ScriptedLM
        >>> @lmprog.lm_function(max_retries=2)
        ... def classify(ticket: str) -> Literal["billing", "bug", "feature"]:
        ...     '''Classify a support ticket by its topic.
        ...
        ...     Args:
        ...         ticket: the customer's message, verbatim.
        ...     '''
        >>> with lmprog.context(lm=ScriptedLM(["Billing."])):
        ...     classify("I was charged twice.")
        'billing'
    """

    def wrap(f: Callable[..., Any]) -> LMFunction[Any, Any]:
        cls: type[LMFunction[Any, Any]] = AsyncLMFunction if inspect.iscoroutinefunction(f) else LMFunction
        return cls(
            f,
            lm=lm,
            max_retries=max_retries,
            temperature=temperature,
            name=name,
            max_tokens=max_tokens,
            constrain=constrain,
            reasoning=reasoning,
            reasoning_effort=reasoning_effort,
            tools=tools,
            max_steps=max_steps,
            tool_first=tool_first,
        )

    return wrap(fn) if fn is not None else wrap


#: how static analysis (:mod:`lmprog.source`, a lower layer) knows the decorator in source code
lm_function.__lmprog_decorator__ = True  # type: ignore[attr-defined]
