"""A tool: a plain typed Python function an lm_function's model may call.

:class:`Tool` reads the function once, at decoration time, with the signature code that reads
lm_functions (:func:`~lmprog.signature.signature_from_function`): its name, docstring summary and
parameters become what the model is shown (:mod:`lmprog.format._tools`), and the arguments record
(:func:`~lmprog.signature.arguments_record`) validates what the model wrote: JSON only, read by
:mod:`json`, checked and converted field by field (pydantic models and ``Annotated`` constraints by
pydantic), never evaluated. A call runs inside a ``"tool"`` span (a child of the lm_function's
span) holding the arguments and the result or the error.

An exception raised by the tool is not an error of the lm_function: its text goes back to the
model, which may try again (a :class:`~lmprog.errors.BudgetExceededError` still stops the run).
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lmprog.errors import BudgetExceededError, SignatureError, UsageError
from lmprog.signature import ParseFailure, RecordSpec, Signature, arguments_record, signature_from_function
from lmprog.trace import Span, span

__all__ = ["Outcome", "Tool", "as_tool", "tools_of", "unknown_tool"]


@dataclass(frozen=True)
class Outcome:
    """What one tool call gave back to the model: ``result``, or ``error`` (its text)."""

    tool: str
    arguments: Any
    result: Any = None
    error: str | None = None

    def step(self) -> dict[str, Any]:
        """The transcript entry of this call (JSON-friendly where the values are)."""
        out: dict[str, Any] = {"tool": self.tool, "arguments": self.arguments}
        if self.error is not None:
            out["error"] = self.error
        else:
            out["result"] = self.result
        return out


class Tool:
    """A Python function the model may call, with the spec it is shown and validated by.

    Args:
        fn: a typed function (sync, or async for async lm_functions only); its docstring's
            summary describes it to the model, its ``Args:`` section each argument.
        name: the name the model calls it by (default: the function's name).

    Raises:
        SignatureError: a parameter's annotation cannot be carried by a prompt.
    """

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None) -> None:
        if not callable(fn):
            raise UsageError(f"a tool is a function, got {fn!r}")
        self.fn = fn
        self.signature: Signature = signature_from_function(fn, name=name)
        self.name = self.signature.name
        self.record: RecordSpec = arguments_record(self.signature)
        self.is_async = inspect.iscoroutinefunction(fn)

    def __repr__(self) -> str:
        return f"<tool {self.name}>"

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its function and name (the spec is read again on the other side)."""
        return (_rebuild, (self.fn, self.name))

    def arguments(self, raw: Any) -> dict[str, Any]:
        """The validated keyword arguments of a call from what the model wrote (a JSON object,
        or its JSON text); raises ParseFailure with a message for the model."""
        if isinstance(raw, str):
            try:
                raw = json.loads(raw) if raw.strip() else {}
            except ValueError as error:
                raise ParseFailure([f"the arguments are not valid JSON ({error})"]) from None
        if not isinstance(raw, Mapping):
            raise ParseFailure([f"the arguments must be a JSON object like {self.record.shape()}"])
        unknown = [str(key) for key in raw if key not in self.record.fields]
        if unknown:
            raise ParseFailure(
                [f"unknown argument(s) {', '.join(unknown)}; {self.name} takes {self.record.shape()}"]
            )
        checked: dict[str, Any] = self.record.validate(dict(raw))
        return checked

    def call(self, raw: Any) -> Outcome:
        """Validate the arguments and run the tool, in a ``"tool"`` span."""
        with span(self.name, _qualname(self.fn), "tool", _inputs(raw)) as sp:
            try:
                kwargs = self.arguments(raw)
            except ParseFailure as failure:
                return _failed(sp, self.name, raw, f"bad arguments: {failure}")
            try:
                result = self.fn(**kwargs)
            except BudgetExceededError:
                raise
            except Exception as error:
                return _failed(sp, self.name, kwargs, f"{type(error).__name__}: {error}")
            return _done(sp, self.name, kwargs, result)

    async def acall(self, raw: Any) -> Outcome:
        """The async twin of :meth:`call`: an async tool is awaited, a sync one runs in a thread."""
        with span(self.name, _qualname(self.fn), "tool", _inputs(raw)) as sp:
            try:
                kwargs = self.arguments(raw)
            except ParseFailure as failure:
                return _failed(sp, self.name, raw, f"bad arguments: {failure}")
            try:
                if self.is_async:
                    result = await self.fn(**kwargs)
                else:
                    result = await asyncio.to_thread(self.fn, **kwargs)
            except BudgetExceededError:
                raise
            except Exception as error:
                return _failed(sp, self.name, kwargs, f"{type(error).__name__}: {error}")
            return _done(sp, self.name, kwargs, result)


def _rebuild(fn: Callable[..., Any], name: str) -> Tool:
    return Tool(fn, name=name)


def as_tool(tool: Tool | Callable[..., Any]) -> Tool:
    """``tool`` itself when it is a :class:`Tool`, else a Tool made from the function."""
    if isinstance(tool, Tool):
        return tool
    try:
        return Tool(tool)
    except SignatureError:
        raise
    except UsageError as error:
        raise UsageError(f"tools=: {error}") from None


def tools_of(tools: Sequence[Tool | Callable[..., Any]], function: str, is_async: bool) -> tuple[Tool, ...]:
    """The tools of an lm_function, checked: a list, distinct names, async tools for async
    functions only (raises UsageError naming ``function``)."""
    if isinstance(tools, str | bytes) or not isinstance(tools, Sequence):
        raise UsageError(f"tools must be a list of functions, got {tools!r}", function=function)
    made = tuple(as_tool(tool) for tool in tools)
    names = [tool.name for tool in made]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise UsageError(f"two tools are named {', '.join(repeated)}", function=function)
    for tool in made:
        if tool.is_async and not is_async:
            raise UsageError(
                f"tool {tool.name} is async: give it to an async lm_function (async def)", function=function
            )
    return made


def unknown_tool(name: str, raw: Any, tools: Mapping[str, Tool]) -> Outcome:
    """The outcome of a call of a tool that does not exist (recorded in a span too)."""
    names = ", ".join(tools) or "none"
    with span(name, "<unknown tool>", "tool", _inputs(raw)) as sp:
        return _failed(sp, name, raw, f"there is no tool named {name!r} (tools: {names})")


def _failed(sp: Span | None, name: str, arguments: Any, error: str) -> Outcome:
    if sp is not None:
        sp.error = error
    return Outcome(name, arguments, error=error)


def _done(sp: Span | None, name: str, arguments: dict[str, Any], result: Any) -> Outcome:
    if sp is not None:
        sp.inputs = dict(arguments)  # as validated and passed to the tool
        sp.output = result
    return Outcome(name, arguments, result=result)


def _inputs(raw: Any) -> dict[str, Any]:
    return dict(raw) if isinstance(raw, Mapping) else {"arguments": raw}


def _qualname(fn: Callable[..., Any]) -> str:
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__)
