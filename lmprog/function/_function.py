"""``LMFunction``, the callable the ``@lm_function`` decorator returns (see ``_decorator``).

The decorated function's body never runs: its signature (parameters, type hints, docstring) is the
spec. Calling an LMFunction binds the arguments, renders messages from the signature, the
instruction and the demos, asks the LM (with a grammar or JSON schema when the LM takes one and
``constrain`` is on, see :mod:`lmprog.format`), and parses and validates the completion.

Retries happen only where they can help (:class:`_Run`): a reply a validator refused (a pydantic
validator or field constraint) is retried with the error shown, up to ``max_retries`` times; a
reply in the wrong format is retried at most once (2 requests per failure), and never when a
grammar constrained it (the model could only have been cut short by ``max_tokens``). A reply the
provider cut at ``max_tokens`` (``finish_reason == "length"``) is never parsed: it is retried once
with twice the token budget (at most :data:`MAX_RETRY_TOKENS`), then reported as
:class:`~lmprog.errors.TruncatedOutputError`. A call makes at most ``1 + max_retries`` requests,
not counting the retries of failed provider requests (see :mod:`lmprog.lm`).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, ParamSpec, TypeVar, cast

from lmprog import promptfile, settings
from lmprog.errors import UsageError
from lmprog.format import render_messages
from lmprog.function._pickle import by_reference, find
from lmprog.function._run import DEFAULT_MAX_STEPS, _counted, _Run, layout_for, wire_demos, wire_signature
from lmprog.function._score import start_run
from lmprog.function._states import mark_set, overridden
from lmprog.function._stream import StreamEvent, astream_events, stream_events
from lmprog.lm import BaseLM, resolve_lm
from lmprog.promptfile import State
from lmprog.signature import Signature, field_spec, signature_from_function, with_reasoning
from lmprog.tools import Tool, tools_of
from lmprog.trace import span

P = ParamSpec("P")
R = TypeVar("R")


class LMFunction(Generic[P, R]):
    """A typed function whose body is a language model call (what :func:`lm_function` returns).

    Generic in the decorated function's parameters ``P`` and return type ``R``: calling it takes
    the same arguments and returns ``R`` to a type checker as at run time. Made from an
    ``async def``, it is an :class:`AsyncLMFunction`, whose call returns an awaitable.

    Attributes:
        fn: the decorated function (its body never runs).
        signature: the input and output fields read from ``fn``.
        name: the function's name in prompts, traces and prompt files.
        lm: the LM for this function (a model name or an LM object); ``None`` = the configured one.
        max_retries: how many times a refused completion is retried.
        temperature: the sampling temperature for this function, if set.
        max_tokens: the completion cap, if any.
        constrain: constrained decoding for this function; ``None`` follows the settings.
        reasoning: the model reasons before its answer (recorded in the lm span's ``reasoning``
            and in bootstrapped demos, never returned): natively on a model that reasons
            natively (``reasoning_effort`` sent), else in a ``reasoning:`` line it writes first.
        reasoning_effort: the ``reasoning_effort`` sent to natively reasoning models (``None``:
            the LM's default parameter, else ``"medium"``).
        wire_signature: the signature a model without native reasoning sees: ``signature`` with
            a ``reasoning`` output first when ``reasoning`` is on, else ``signature`` itself.
        tools: the :class:`~lmprog.tools.Tool` objects the model may call (empty: none).
        max_steps: how many turns of tool calls the model may take before it must answer.
        tool_first: the first reply must be a tool call (where a constraint can force it).

    Its optimizable state is read through ``instruction``, ``demos`` and ``prompt_file``; the
    ``signature_hash`` identifies the signature a prompt file was written for.
    """

    #: how static analysis (:mod:`lmprog.source`, a lower layer) knows an lm_function
    __lmprog_lm_function__ = True

    def __init__(
        self,
        fn: Callable[P, R],
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
    ) -> None:
        if constrain is not None and not isinstance(constrain, bool):
            raise UsageError(
                f"constrain must be True, False or None, got {constrain!r}",
                function=getattr(fn, "__qualname__", None),
            )
        if max_retries < 0:
            raise UsageError("max_retries must be >= 0", function=getattr(fn, "__qualname__", None))
        self.fn = fn
        self.signature: Signature = signature_from_function(fn, name=name)
        self.reasoning = bool(reasoning)
        if reasoning_effort is not None and (not isinstance(reasoning_effort, str) or not reasoning_effort):
            raise UsageError(
                "reasoning_effort must be a non-empty string such as 'low', 'medium' or 'high', "
                f"got {reasoning_effort!r}",
                function=self.signature.qualname,
            )
        self.reasoning_effort = reasoning_effort
        try:
            #: the signature the model sees (``reasoning`` first when ``reasoning=True``)
            self.wire_signature = with_reasoning(self.signature) if reasoning else self.signature
        except ValueError as error:
            raise UsageError(f"reasoning=True: {error}", function=self.signature.qualname) from None
        self.tools: tuple[Tool, ...] = tools_of(
            tools, self.signature.qualname, inspect.iscoroutinefunction(fn)
        )
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise UsageError(
                f"max_steps must be an int >= 1, got {max_steps!r}", function=self.signature.qualname
            )
        self.max_steps = max_steps
        if tool_first and not self.tools:
            raise UsageError("tool_first=True needs tools", function=self.signature.qualname)
        self.tool_first = bool(tool_first)
        self.lm = lm
        self.max_retries = max_retries
        self.temperature = temperature
        self.max_tokens = (
            max_tokens
            if max_tokens is not None or reasoning or self.tools
            else _short_output_tokens(self.signature)
        )
        self.constrain = constrain
        self.name = self.signature.name
        self.is_async = inspect.iscoroutinefunction(fn)
        self._py_signature = inspect.signature(fn)
        params = list(self._py_signature.parameters)
        self._skip_first = bool(params) and params[0] not in self.signature.input_names
        self._state = State()
        self._state_lock = threading.Lock()
        self._file_state_loaded = False
        functools.update_wrapper(self, fn)

    # -- state ---------------------------------------------------------------------------------
    @property
    def state(self) -> State:
        """The state in force here: a context override, else the function's own."""
        override = overridden(self)
        if override is not None:
            return override
        self._load_prompt_file()
        return self._state

    @state.setter
    def state(self, value: State) -> None:
        with self._state_lock:
            self._file_state_loaded = True
            self._state = value
        mark_set(self)

    @property
    def instruction(self) -> str:
        """The instruction the LM sees: the optimized one if set, else the docstring's."""
        inst = self.state.instruction
        return self.signature.instruction if inst is None else inst

    @instruction.setter
    def instruction(self, value: str | None) -> None:
        self.state = dataclasses.replace(self.state, instruction=value)

    @property
    def demos(self) -> list[Mapping[str, Any]]:
        return list(self.state.demos)

    @demos.setter
    def demos(self, value: Sequence[Mapping[str, Any]]) -> None:
        self.state = dataclasses.replace(
            self.state, demos=tuple(dict(d) for d in value), pool=None, vote=None
        )

    @property
    def signature_hash(self) -> str:
        """A hash of everything that shapes this function's prompt (see ``lmprog.source``)."""
        known: str | None = self.__dict__.get("_known_signature_hash")  # a copy made by pickle
        if known is not None:
            return known
        from lmprog.source import signature_hash  # libcst, loaded on first use

        return signature_hash(self)

    @property
    def prompt_file(self) -> Path:
        """Where this function's prompt file is read from and written to."""
        return promptfile.prompt_path(self)

    def reset(self) -> None:
        """Forget optimized state (back to the docstring, no demos)."""
        self.state = State()

    def _load_prompt_file(self) -> None:
        if self._file_state_loaded:
            return
        with self._state_lock:
            if self._file_state_loaded:
                return
            if settings.current().load_prompts:
                loaded = promptfile.load_state(self)  # a corrupt file raises here, every call
                if loaded is not None:
                    self._state = loaded
            self._file_state_loaded = True

    # -- calling -------------------------------------------------------------------------------
    def bind(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The input values of a call, by input field name, defaults applied; an argument that
        breaks a constraint of its annotation raises UsageError."""
        try:
            bound = self._py_signature.bind(*args, **kwargs)
        except TypeError as e:
            raise UsageError(f"bad arguments: {e}", function=self.signature.qualname) from e
        bound.apply_defaults()
        values = {k: v for k, v in bound.arguments.items() if k in self.signature.input_names}
        self.signature.check_inputs(values)  # constraints from Annotated metadata
        return values

    def messages(self, *args: Any, **kwargs: Any) -> list[dict[str, str]]:
        """The exact messages the LM would see for this call (nothing is sent)."""
        state = self.state
        values = self.bind(*args, **kwargs)
        demos = wire_demos(self.signature, state.demos_for(values))
        lm = resolve_lm(self.lm)
        native = bool(self.tools) and lm.supports_tools()
        return render_messages(
            wire_signature(self, lm),
            values,
            instruction=state.instruction,
            demos=demos,
            tools=[tool.signature for tool in self.tools],
            native_tools=native,
            layout=layout_for(self, lm, state.layout),
        )

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the LM on these arguments and return the parsed, validated output.

        Raises:
            OutputParseError: the last completion could not be read or validated.
            UsageError: the arguments do not fit the function's parameters.
            LMError: the provider failed (after its retries).
        """
        if self.is_async:
            return cast(R, self._acall(self.bind(*args, **kwargs)))
        return cast(R, self._call(self.bind(*args, **kwargs)))

    def _call(self, inputs: dict[str, Any]) -> Any:
        run = start_run(self, inputs)
        with span(self.name, self.signature.qualname, "lm", inputs, self) as sp:
            run.span = sp
            while (msgs := run.next_messages()) is not None:
                with _counted(sp):  # the requests only: a tool's own lm calls have their spans
                    completion = run.lm.complete(msgs, **run.params)
                run.feed(completion)
                if isinstance(run, _Run) and run.pending and run.loop is not None:
                    run.tools_done([run.loop.call(request) for request in run.pending])
            return run.result()

    async def _acall(self, inputs: dict[str, Any]) -> Any:
        run = start_run(self, inputs)
        with span(self.name, self.signature.qualname, "lm", inputs, self) as sp:
            run.span = sp
            while (msgs := run.next_messages()) is not None:
                with _counted(sp):
                    completion = await run.lm.acomplete(msgs, **run.params)
                run.feed(completion)
                if isinstance(run, _Run) and run.pending and run.loop is not None:
                    run.tools_done([await run.loop.acall(request) for request in run.pending])
            return run.result()

    def stream(self, *args: P.args, **kwargs: P.kwargs) -> Iterator[StreamEvent]:
        """Run the LM on these arguments and yield the reply as it is written: text chunks,
        partial outputs, restarts, then a :class:`FinalOutput` holding the value ``fn(...)``
        returns (see :mod:`lmprog.function._stream`). An argument error raises here; a failed
        call raises from the iteration. On an async lm_function, the same as :meth:`astream`."""
        if self.is_async:  # an async def wrapped by LMFunction itself rather than the decorator
            return self.astream(*args, **kwargs)  # type: ignore[return-value]
        return stream_events(self, self.name, self.bind(*args, **kwargs), self)

    def astream(self, *args: P.args, **kwargs: P.kwargs) -> AsyncIterator[StreamEvent]:
        """The async twin of :meth:`stream` (for sync and async lm_functions alike)."""
        return astream_events(self, self.name, self.bind(*args, **kwargs), self)

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        """Methods: ``instance.fn(...)`` passes the instance, which is not an input."""
        if obj is None or not self._skip_first:
            return self
        return _BoundLMFunction(self, obj)

    def __repr__(self) -> str:
        return f"<lm_function {self.signature.qualname}>"

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle by reference (``module`` and ``qualname``) when the function is reachable that
        way, so a process worker uses the very function its module defines; else (a function
        defined in ``__main__`` or inside another function) by value: the decorated function
        (which ``cloudpickle``, the pickler of joblib's process backends, can send), the
        decorator's options and its own state. A ``use_states`` override, and a state set on a
        function pickled by reference, do not travel this way: see :func:`states_in_force`."""
        if by_reference(self):
            return (find, (self.__module__, getattr(self, "__qualname__", "")))
        options = {
            "lm": self.lm,
            "max_retries": self.max_retries,
            "temperature": self.temperature,
            "name": None if self.name == getattr(self.fn, "__name__", None) else self.name,
            "max_tokens": self.max_tokens,
            "reasoning": self.reasoning,
            "reasoning_effort": self.reasoning_effort,
            "constrain": self.constrain,
            "tools": self.tools,
            "max_steps": self.max_steps,
            "tool_first": self.tool_first,
        }
        state = self._state if self._file_state_loaded else None
        # The copy's source may not be found again (a function in __main__): send the hash along.
        return (type(self)._rebuild, (self.fn, options, state, self.signature_hash))

    @classmethod
    def _rebuild(
        cls, fn: Callable[..., Any], options: dict[str, Any], state: State | None, signature_hash: str
    ) -> LMFunction[Any, Any]:
        """A copy of an lm_function pickled by value: the same function, options and state; its
        signature hash is the original's (the copy's source may not be found again)."""
        func = cls(fn, **options)
        func.__dict__["_known_signature_hash"] = signature_hash
        if state is not None:
            func._state = state
            func._file_state_loaded = True
        return func

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other


class AsyncLMFunction(LMFunction[P, Awaitable[R]]):
    """An lm_function made from an ``async def``: calling it returns an awaitable of ``R``, and
    :meth:`stream` an async iterator (the same as :meth:`astream`)."""

    def stream(self, *args: P.args, **kwargs: P.kwargs) -> AsyncIterator[StreamEvent]:  # type: ignore[override]
        return self.astream(*args, **kwargs)


class _BoundLMFunction:
    """An lm_function reached through an instance; attribute access falls through to it."""

    def __init__(self, func: LMFunction[Any, Any], obj: Any) -> None:
        self.__func__ = func
        self.__self__ = obj

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__func__(self.__self__, *args, **kwargs)

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        return self.__func__.stream(self.__self__, *args, **kwargs)

    def astream(self, *args: Any, **kwargs: Any) -> Any:
        return self.__func__.astream(self.__self__, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__func__, name)


SHORT_OUTPUT_TOKENS = 48


def _short_output_tokens(signature: Signature) -> int | None:
    """A completion cap for functions answering with one short value (an option or a number)."""
    if len(signature.outputs) != 1:
        return None
    return SHORT_OUTPUT_TOKENS if field_spec(signature.outputs[0]).base.short else None
