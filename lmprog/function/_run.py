"""One call of an lm_function: messages out, completions in, until a reply parses or the retries
run out (the retry policy is described in :mod:`lmprog.function._function`).

The layout a call uses (:func:`layout_for`) is the state's, unless the LM cannot take it: the
``"completion"`` layout is a plain-text prompt (:mod:`lmprog.format._layout`), and an LM whose
``takes_prompt()`` is false (a litellm chat model) gets the ``"transcript"`` layout instead, the same
content as chat messages, with a warning logged once per function and model. Falling back rather
than failing keeps a prompt file optimized on the embedded model usable on a chat model; the span's
messages show what was sent. A reply of the completion layout that fails to parse is retried as a
transcript (a plain prompt cannot carry the errors back).

With tools, a completion may instead ask for tool calls: :class:`_Run` then holds them in
``pending`` for the driver (the sync or async call) to run, and continues the conversation with
their results (:meth:`_Run.tools_done`); the turns, their constraints and the transcript are kept
by :mod:`lmprog.tools`. Turns of tool calls do not count as retries. Each request's usage is added
to the lm span as it is made, so a tool's own lm_function calls count in their own spans only.

Tools and a ``History`` input need the chat layout: with another layout the call is a UsageError
(raised by ``render_messages``), since a transcript or a plain prompt has no turns to hold them.

:class:`_Run` reads the function through the :class:`RunSpec` protocol (an ``LMFunction`` is
one), so this module does not import the class it serves.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from lmprog import settings
from lmprog.errors import OutputParseError, TruncatedOutputError
from lmprog.format import (
    COMPLETION_STOP,
    Layout,
    ParseFailure,
    constraint_params,
    lead_space_grammar,
    parse_output,
    render_messages,
    reply_format,
    retry_messages,
)
from lmprog.lm import BaseLM, Completion, resolve_lm
from lmprog.promptfile import State
from lmprog.signature import Signature, split_reasoning
from lmprog.tools import CONSTRAINT_KEYS, Outcome, Request, Tool, ToolLoop, TurnConstraints
from lmprog.trace import Span
from lmprog.usage import track


class RunSpec(Protocol):
    """What one call reads of its lm_function."""

    @property
    def signature(self) -> Signature: ...

    @property
    def state(self) -> State: ...

    @property
    def lm(self) -> str | BaseLM | None: ...

    @property
    def temperature(self) -> float | None: ...

    @property
    def max_tokens(self) -> int | None: ...

    @property
    def constrain(self) -> bool | None: ...

    @property
    def max_retries(self) -> int: ...

    @property
    def reasoning(self) -> bool: ...

    @property
    def reasoning_effort(self) -> str | None: ...

    @property
    def wire_signature(self) -> Signature: ...


_logger = logging.getLogger("lmprog.function")

#: Retries of a reply in the wrong format (one retry: at most 2 requests per format failure).
FORMAT_RETRIES = 1
#: Retries of a reply cut at ``max_tokens``, each with twice the budget, up to MAX_RETRY_TOKENS.
TRUNCATION_RETRIES = 1
MAX_RETRY_TOKENS = 4096
#: The ``reasoning_effort`` sent to a natively reasoning model when neither the function nor the
#: LM's default parameters set one.
DEFAULT_REASONING_EFFORT = "medium"


def native_reasoning(func: RunSpec, lm: BaseLM) -> bool:
    """Whether a call of ``func`` on ``lm`` uses the model's native reasoning (``reasoning=True``
    on an LM whose :meth:`~lmprog.lm.BaseLM.native_reasoning` is true) instead of a text field."""
    return func.reasoning and lm.native_reasoning()


def wire_signature(func: RunSpec, lm: BaseLM) -> Signature:
    """The signature the model sees on ``lm``: the declared one under native reasoning, else
    ``func.wire_signature`` (with a ``reasoning`` field first when ``reasoning=True``)."""
    return func.signature if native_reasoning(func, lm) else func.wire_signature


#: How many turns of tool calls an lm_function with tools may take by default.
DEFAULT_MAX_STEPS = 5


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

    def __init__(self, func: RunSpec, inputs: dict[str, Any]) -> None:
        self.func = func
        self.lm = resolve_lm(func.lm)
        state = func.state
        self.native = native_reasoning(func, self.lm)
        self.wire = wire_signature(func, self.lm)  # with a reasoning field first, if asked for
        demos = wire_demos(func.signature, state.demos_for(inputs))
        self.layout = layout_for(func, self.lm, state.layout)
        self._inputs, self._demos, self._instruction = inputs, demos, state.instruction
        tools: tuple[Tool, ...] = tuple(getattr(func, "tools", ()) or ())
        native = bool(tools) and self.lm.supports_tools()
        self.messages: list[dict[str, Any]] = render_messages(
            self.wire,
            inputs,
            instruction=state.instruction,
            demos=demos,
            tools=[tool.signature for tool in tools],
            native_tools=native,
            layout=self.layout,
        )
        self.params: dict[str, Any] = {}
        if func.temperature is not None:
            self.params["temperature"] = func.temperature
        if func.max_tokens is not None:
            self.params["max_tokens"] = func.max_tokens
        if self.native:
            self.params["reasoning_effort"] = (
                func.reasoning_effort or self.lm.params.get("reasoning_effort") or DEFAULT_REASONING_EFFORT
            )
        constrain = func.constrain if func.constrain is not None else settings.current().constrain
        kind = self.lm.constraint_kind() if constrain else None
        answer = constraint_params(self.wire, kind)
        self.params.update(answer)
        self._chat_grammar = self.params.get("grammar")
        if self.layout == "completion":  # after a single output's "name:" cue comes a space
            if self._chat_grammar is not None and not self.wire.multi_output:
                self.params["grammar"] = lead_space_grammar(self._chat_grammar)
            self.params["stop"] = [COMPLETION_STOP]
        #: the tool loop (None without tools) and the constraints of each of its turns
        self.loop: ToolLoop | None = None
        self._turns: TurnConstraints | None = None
        if tools:
            self.loop = ToolLoop(tools, _max_steps(func), native=native, function=func.signature.qualname)
            self._turns = TurnConstraints(
                self.wire,
                [tool.signature for tool in tools],
                native=native,
                kind=kind,
                answer=answer,
                tool_first=bool(getattr(func, "tool_first", False)),
            )
        self.pending: list[Request] = []  # tool calls of the last completion, for the driver to run
        self._pending_completion: Completion | None = None
        self._tool_turns = 0
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

    def next_messages(self) -> list[dict[str, Any]] | None:
        if (
            self._done
            or self._gave_up
            or self.attempts - self._tool_turns > self.func.max_retries
            or self._format_failures > self.format_retries
        ):
            return None
        if self.loop is not None and self._turns is not None:  # this turn's constraint
            for key in CONSTRAINT_KEYS:
                self.params.pop(key, None)
            self.params.update(self._turns.params(self.loop))
        self.structured = "response_format" in self.params
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
        if self.loop is not None:
            if sp is not None:
                sp.tool_calls = self.loop.transcript
            self.pending = self.loop.requests(completion)  # MaxStepsError after the last step
            if self.pending:
                self._tool_turns += 1
                self._pending_completion = completion
                return
        try:
            self._value = parse_output(self.wire, completion.text, structured=self.structured)
            if self.native:
                if sp is not None:
                    sp.reasoning = completion.reasoning
            elif self.func.reasoning:
                reasoning, values = split_reasoning(self._value)
                self._value = self.func.signature.build_return(values)
                if sp is not None:
                    sp.reasoning = reasoning
        except ParseFailure as e:
            self._errors = list(e.errors)
            self._format_failures += 0 if e.validation else 1
            if sp is not None:
                sp.parse_retries = self.attempts
            self.messages = retry_messages(
                self._retry_base(), completion.text, self._errors, reply_format(self.wire)
            )
            return
        self._done = True

    def _retry_base(self) -> list[dict[str, str]]:
        """The conversation a retry continues: a plain-text prompt cannot carry the errors back,
        so a retry of the completion layout is its transcript as chat messages."""
        if self.layout != "completion":
            return self.messages
        self.layout = "transcript"
        self.params.pop("stop", None)
        if self._chat_grammar is not None:
            self.params["grammar"] = self._chat_grammar
        return render_messages(
            self.wire, self._inputs, instruction=self._instruction, demos=self._demos, layout="transcript"
        )

    def tools_done(self, outcomes: list[Outcome]) -> None:
        """The driver ran :attr:`pending`: continue the conversation with the results."""
        if self.loop is None or self._pending_completion is None:
            raise RuntimeError("tools_done() without pending tool calls")
        self.messages = self.loop.continued(self.messages, self._pending_completion, self.pending, outcomes)
        self.pending = []
        self._pending_completion = None
        if self.span is not None:
            self.span.tool_calls = self.loop.transcript
            self.span.messages = self.messages

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

    @property
    def errors(self) -> tuple[str, ...]:
        """What was wrong with the last reply (empty before any)."""
        return tuple(self._errors)

    def result(self) -> Any:
        if not self._done:
            name, attempts = self.func.signature.qualname, self.attempts
            if self._last_cut:
                raise TruncatedOutputError(name, self._raw, attempts, self._cut_at)
            raise OutputParseError(name, self._raw, self._errors, attempts)
        if self.span is not None:
            self.span.output = self._value
        return self._value


_warned: set[tuple[str, str]] = set()
_lock = threading.Lock()


def layout_for(func: Any, lm: BaseLM, layout: Layout) -> Layout:
    """The layout a call of ``func`` on ``lm`` uses for the state's ``layout``."""
    if layout != "completion" or lm.takes_prompt():
        return layout
    key = (str(func.signature.qualname), lm.model)
    with _lock:
        first = key not in _warned
        _warned.add(key)
    if first:
        _logger.warning(
            "%s: layout 'completion' needs an LM that continues plain text (the embedded model); "
            "%s takes chat messages only, so the 'transcript' layout is used",
            func.signature.qualname,
            lm.model,
        )
    return "transcript"


def wire_demos(signature: Signature, demos: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Demos as the wire signature reads them: a multi-output demo holding its whole return value
    under ``"output"`` gets one key per output field (its ``reasoning``, if any, is kept)."""
    out: list[Mapping[str, Any]] = []
    for demo in demos:
        if signature.multi_output and "output" in demo and not any(n in demo for n in signature.output_names):
            demo = {**demo, **signature.split_return(demo["output"])}
            del demo["output"]
        out.append(demo)
    return out


def _max_steps(func: RunSpec) -> int:
    steps = getattr(func, "max_steps", DEFAULT_MAX_STEPS)
    return steps if isinstance(steps, int) else DEFAULT_MAX_STEPS


def _larger_budget(budget: int | None) -> int | None:
    """The token budget of a retry after a reply cut at ``budget``: twice as large, at most
    ``MAX_RETRY_TOKENS``; None when no larger budget is possible (or the budget is unknown)."""
    if budget is None or budget <= 0:
        return None
    larger = min(2 * budget, max(budget, MAX_RETRY_TOKENS))
    return larger if larger > budget else None
