"""The ``@lm_function`` decorator and ``LMFunction``, the callable it returns.

The decorated function's body never runs: its signature (parameters, type hints, docstring) is the
spec. Calling an LMFunction binds the arguments, renders messages from the signature, the
instruction and the demos, asks the LM (with a grammar or JSON schema when the LM takes one and
``constrain`` is on, see :mod:`lmprog.constrain`), and parses and validates the completion.

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

import contextvars
import functools
import inspect
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args, get_origin, overload

from lmprog import settings
from lmprog._function_pickle import by_reference, find, rebuild
from lmprog.constrain import constraint_params
from lmprog.errors import OutputParseError, TruncatedOutputError, UsageError
from lmprog.prompt import ParseFailure, parse_output, render_messages, retry_messages
from lmprog.signature import Signature, signature_from_function
from lmprog.trace import Span, span
from lmprog.usage import track

if TYPE_CHECKING:
    from lmprog.lm import BaseLM, Completion


@dataclass(frozen=True)
class State:
    """What optimization changes in an lm_function: its instruction and its demonstrations.

    ``instruction=None`` means the docstring's instruction. Each demo maps input and output field
    names to values.
    """

    instruction: str | None = None
    demos: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)


_overrides: contextvars.ContextVar[Mapping[LMFunction, State] | None] = contextvars.ContextVar(
    "lmprog_state_overrides", default=None
)


@contextmanager
def use_states(states: Mapping[LMFunction, State]) -> Iterator[None]:
    """Run the block with these lm_functions' states replaced, in this context only (thread-safe:
    optimizers evaluate candidate states in parallel this way)."""
    merged = {**(_overrides.get() or {}), **states}
    token = _overrides.set(merged)
    try:
        yield
    finally:
        _overrides.reset(token)


class LMFunction:
    """A typed function whose body is a language model call. See :func:`lm_function`."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        lm: str | BaseLM | None = None,
        max_retries: int = 2,
        temperature: float | None = None,
        name: str | None = None,
        max_tokens: int | None = None,
        constrain: bool | None = None,
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
        self.lm = lm
        self.max_retries = max_retries
        self.temperature = temperature
        self.max_tokens = max_tokens if max_tokens is not None else _short_output_tokens(self.signature)
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
        override = _overrides.get()
        if override is not None and self in override:
            return override[self]
        self._load_prompt_file()
        return self._state

    @state.setter
    def state(self, value: State) -> None:
        with self._state_lock:
            self._file_state_loaded = True
            self._state = value
        with _set_states_lock:
            _set_states.add(self)

    @property
    def instruction(self) -> str:
        """The instruction the LM sees: the optimized one if set, else the docstring's."""
        inst = self.state.instruction
        return self.signature.instruction if inst is None else inst

    @instruction.setter
    def instruction(self, value: str | None) -> None:
        self.state = State(instruction=value, demos=self.state.demos)

    @property
    def demos(self) -> list[Mapping[str, Any]]:
        return list(self.state.demos)

    @demos.setter
    def demos(self, value: Sequence[Mapping[str, Any]]) -> None:
        self.state = State(instruction=self.state.instruction, demos=tuple(dict(d) for d in value))

    @property
    def signature_hash(self) -> str:
        """A hash of everything that shapes this function's prompt (see ``lmprog.source``)."""
        known: str | None = self.__dict__.get("_known_signature_hash")  # a copy made by pickle
        if known is not None:
            return known
        from lmprog.source import signature_hash

        return signature_hash(self)

    @property
    def prompt_file(self) -> Path:
        """Where this function's prompt file is read from and written to."""
        from lmprog.promptfile import prompt_path

        return prompt_path(self)

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
                from lmprog import promptfile

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
        return render_messages(
            self.signature, self.bind(*args, **kwargs), instruction=state.instruction, demos=state.demos
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.is_async:
            return self._acall(self.bind(*args, **kwargs))
        return self._call(self.bind(*args, **kwargs))

    def _call(self, inputs: dict[str, Any]) -> Any:
        run = _Run(self, inputs)
        with span(self.name, self.signature.qualname, "lm", inputs, self) as sp, _counted(sp):
            run.span = sp
            while (msgs := run.next_messages()) is not None:
                run.feed(run.lm.complete(msgs, **run.params))
            return run.result()

    async def _acall(self, inputs: dict[str, Any]) -> Any:
        run = _Run(self, inputs)
        with span(self.name, self.signature.qualname, "lm", inputs, self) as sp, _counted(sp):
            run.span = sp
            while (msgs := run.next_messages()) is not None:
                run.feed(await run.lm.acomplete(msgs, **run.params))
            return run.result()

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
        }
        state = self._state if self._file_state_loaded else None
        # The copy's source may not be found again (a function in __main__): send the hash along.
        return (rebuild, (self.fn, options, state, self.signature_hash))

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other


_set_states: weakref.WeakSet[LMFunction] = weakref.WeakSet()  # lm_functions given a state
_set_states_lock = threading.Lock()


def states_in_force() -> dict[LMFunction, State]:
    """The states in force here that a copy of the program in another process would not see
    (process workers run under them): the state set on each lm_function that pickles by
    reference (one that pickles by value carries its own), and this context's ``use_states``
    overrides on top."""
    with _set_states_lock:
        given = list(_set_states)
    states = {fn: fn.state for fn in given if by_reference(fn)}
    states.update(_overrides.get() or {})
    return states


class _BoundLMFunction:
    """An lm_function reached through an instance; attribute access falls through to it."""

    def __init__(self, func: LMFunction, obj: Any) -> None:
        self.__func__ = func
        self.__self__ = obj

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__func__(self.__self__, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__func__, name)


#: Retries of a reply in the wrong format (one retry: at most 2 requests per format failure).
FORMAT_RETRIES = 1
#: Retries of a reply cut at ``max_tokens``, each with twice the budget, up to MAX_RETRY_TOKENS.
TRUNCATION_RETRIES = 1
MAX_RETRY_TOKENS = 4096


@contextmanager
def _counted(sp: Span | None) -> Iterator[None]:
    """Add to ``sp`` the usage of every LM request made inside the block: the same requests,
    failed ones included, that ``lm.usage`` and the ``track()`` scopes (budgets) count."""
    if sp is None:
        yield
        return
    with track() as scope:
        try:
            yield
        finally:
            sp.add_usage(scope.total)


class _Run:
    """One call's attempts: messages out, completions in, until a parse succeeds or retries run out.

    Shared by the sync and async paths so the retry logic lives in one place (see the module
    docs for the policy).
    """

    def __init__(self, func: LMFunction, inputs: dict[str, Any]) -> None:
        from lmprog.lm import resolve_lm

        self.func = func
        self.lm = resolve_lm(func.lm)
        state = func.state
        self.messages = render_messages(
            func.signature, inputs, instruction=state.instruction, demos=state.demos
        )
        self.params: dict[str, Any] = {}
        if func.temperature is not None:
            self.params["temperature"] = func.temperature
        if func.max_tokens is not None:
            self.params["max_tokens"] = func.max_tokens
        constrain = func.constrain if func.constrain is not None else settings.current().constrain
        kind = self.lm.constraint_kind() if constrain else None
        self.params.update(constraint_params(func.signature, kind))
        self.structured = "response_format" in self.params
        # a grammar leaves no other format to write: a format failure is a reply cut short
        self.format_retries = 0 if "grammar" in self.params else min(FORMAT_RETRIES, func.max_retries)
        self.truncation_retries = min(TRUNCATION_RETRIES, func.max_retries)
        self.attempts = 0
        self.span: Span | None = None
        self._done = False
        self._value: Any = None
        self._raw = ""
        self._errors: list[str] = []
        self._format_failures = 0
        self._truncations = 0
        self._last_cut = False  # the last reply was cut at max_tokens...
        self._cut_at: int | None = None  # ...at this budget (None: unknown)
        self._gave_up = False
        self._all_cached = True

    def next_messages(self) -> list[dict[str, str]] | None:
        if (
            self._done
            or self._gave_up
            or self.attempts > self.func.max_retries
            or self._format_failures > self.format_retries
        ):
            return None
        return self.messages

    def feed(self, completion: Completion) -> None:
        self.attempts += 1
        self._raw = completion.text
        self._all_cached = self._all_cached and completion.cache_hit
        sp = self.span
        if sp is not None:
            sp.model = completion.model
            sp.messages = self.messages
            sp.raw = completion.text
            sp.cache_hit = self._all_cached
        self._last_cut = completion.finish_reason == "length"
        if self._last_cut:  # a cut reply may still parse (the "1" of "12"): never read it
            self._cut_short()
            return
        try:
            self._value = parse_output(self.func.signature, completion.text, structured=self.structured)
        except ParseFailure as e:
            self._errors = list(e.errors)
            self._format_failures += 0 if e.validation else 1
            if sp is not None:
                sp.parse_retries = self.attempts
            self.messages = retry_messages(self.messages, completion.text, self._errors)
            return
        self._done = True

    def _cut_short(self) -> None:
        """The reply was cut at ``max_tokens``: ask again with a larger budget, or give up."""
        budget = self._cut_at = self._token_budget()
        self._truncations += 1
        self._errors = [f"the reply was cut off at max_tokens={budget} (finish_reason 'length')"]
        if self.span is not None:
            self.span.parse_retries = self.attempts
        larger = _larger_budget(budget)
        if larger is None or self._truncations > self.truncation_retries:
            self._gave_up = True
            return
        self.params["max_tokens"] = larger

    def _token_budget(self) -> int | None:
        """The ``max_tokens`` the LM sends: the call's, else the LM's default, else the settings'."""
        for value in (self.params.get("max_tokens"), self.lm.params.get("max_tokens")):
            if value is not None:
                return value if isinstance(value, int) else None
        return settings.current().max_tokens

    def result(self) -> Any:
        if not self._done:
            name, attempts = self.func.signature.qualname, self.attempts
            if self._last_cut:
                raise TruncatedOutputError(name, self._raw, attempts, self._cut_at)
            raise OutputParseError(name, self._raw, self._errors, attempts)
        if self.span is not None:
            self.span.output = self._value
        return self._value


@overload
def lm_function(fn: Callable[..., Any], /) -> LMFunction: ...
@overload
def lm_function(
    *,
    lm: str | BaseLM | None = None,
    max_retries: int = 2,
    temperature: float | None = None,
    name: str | None = None,
    max_tokens: int | None = None,
    constrain: bool | None = None,
) -> Callable[[Callable[..., Any]], LMFunction]: ...
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
) -> LMFunction | Callable[[Callable[..., Any]], LMFunction]:
    """Turn a typed, documented function (sync or async) into a language model call.

    ``lm`` picks the model for this function (default: the configured one), ``max_retries`` how
    many times a completion a validator refused is retried with the errors shown to the model
    (a completion in the wrong format is retried at most once of those, and not at all under a
    grammar: see the module docs),
    ``temperature`` a sampling temperature for this function, ``name`` its name in prompts,
    traces and prompt files, ``max_tokens`` a cap on the completion length (by default
    ``SHORT_OUTPUT_TOKENS`` for a single short answer — a Literal, Enum, bool or number — and the
    configured ``max_tokens`` otherwise, so a small model that rambles stops early; a reply cut
    at it is retried once with twice the budget, then raises ``TruncatedOutputError``),
    ``constrain`` whether to constrain decoding to the reply format (a grammar for the embedded
    model, a JSON schema for providers with structured outputs; ``None`` follows
    ``lmprog.configure(constrain=...)``, on by default).
    """

    def wrap(f: Callable[..., Any]) -> LMFunction:
        return LMFunction(
            f,
            lm=lm,
            max_retries=max_retries,
            temperature=temperature,
            name=name,
            max_tokens=max_tokens,
            constrain=constrain,
        )

    return wrap(fn) if fn is not None else wrap


SHORT_OUTPUT_TOKENS = 48


def _larger_budget(budget: int | None) -> int | None:
    """The token budget of a retry after a reply cut at ``budget``: twice as large, at most
    ``MAX_RETRY_TOKENS``; None when no larger budget is possible (or the budget is unknown)."""
    if budget is None or budget <= 0:
        return None
    larger = min(2 * budget, max(budget, MAX_RETRY_TOKENS))
    return larger if larger > budget else None


def _short_output_tokens(signature: Signature) -> int | None:
    """A completion cap for functions answering with one short value (an option or a number)."""
    if len(signature.outputs) != 1:
        return None
    annotation = signature.outputs[0].annotation
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) is Literal:
        return SHORT_OUTPUT_TOKENS
    if isinstance(annotation, type) and issubclass(annotation, Enum | bool | int | float):
        return SHORT_OUTPUT_TOKENS
    return None
