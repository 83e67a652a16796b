"""ScriptedLM: a deterministic, offline LM for tests."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from lmprog._fingerprint import code_identity, digest
from lmprog.errors import UsageError
from lmprog.format import choice_texts, forced_text, format_output, is_prompt, to_jsonable
from lmprog.lm import CONSTRAINT_KINDS, BaseLM, Completion, ConstraintKind, Messages, StreamItem, ToolCall
from lmprog.usage import Usage

ScriptedResponse: TypeAlias = (
    str | Mapping[str, Any] | Completion | ToolCall | Sequence[ToolCall] | BaseException
)
"""A raw completion, a dict of output values by field name, a :class:`~lmprog.lm.Completion` (to
give a ``finish_reason``, e.g. ``"length"`` for a reply cut at ``max_tokens``), a
:class:`~lmprog.lm.ToolCall` or a list of them (native tool calls, with ``native_tools=True``), or
an exception to raise."""


@dataclass(frozen=True)
class ScriptedCall:
    """One request ScriptedLM received: the messages and the parameters sent to the provider."""

    messages: Messages
    params: dict[str, Any]

    @property
    def constraint(self) -> str | dict[str, Any] | None:
        """The constraint sent with the request: the GBNF ``grammar`` string, the
        ``response_format`` dict, or None."""
        grammar = self.params.get("grammar")
        return grammar if grammar is not None else self.params.get("response_format")


class ScriptedLM(BaseLM):
    """An LM that answers from a script instead of a model.

    ``responses`` is a list, used in order (one entry per request, retries included; running out
    raises :class:`~lmprog.errors.UsageError`), or a callable ``messages -> response``. A response
    is a raw completion string; a dict of output values keyed by output field name, rendered in
    the exact format lmprog's parser expects; a :class:`~lmprog.lm.Completion`, whose ``text``,
    ``finish_reason`` and ``logprobs`` are returned (``Completion("4", finish_reason="length")``
    plays a reply cut at ``max_tokens``, ``Completion("")`` an empty one); or an exception
    instance, raised to simulate a provider failure (a ``TransientLMError`` is retried like a
    real one).

    Every request is recorded in :attr:`calls`. Token usage counts whitespace-separated words of
    the messages (prompt) and of the completion. The cache is off unless ``cache=True``, and
    retries do not wait unless ``backoff_base``/``backoff_max`` are given. Other keyword
    arguments are those of :class:`~lmprog.lm.BaseLM` (``num_retries``, ``sleep``, default
    request parameters...).

    ``native_tools=True`` plays a provider with native tool calling: lm_functions with tools then
    send ``tools`` (function schemas; see ``calls[i].params``), and a scripted
    ``ToolCall("multiply", {"a": 3, "b": 4})`` (or a list of them) is returned as the
    completion's tool calls. Without it, script a tool call as the text protocol's JSON line
    (``'{"tool": "multiply", "arguments": {"a": 3, "b": 4}}'``).

    ``constraint`` plays a provider that takes a ``"grammar"`` or a ``"json_schema"``
    (constrained decoding; the default None takes neither). What it received is in
    ``calls[i].constraint``; the script is not checked against it, except that a dict response
    to a request carrying a ``response_format`` is written as the JSON object a provider with
    structured outputs returns.

    ``takes_prompt=True`` plays a model that continues plain text (the embedded model): it
    accepts the ``"completion"`` layout's single ``{"role": "prompt"}`` message. ``logprobs``
    plays a model that returns token logprobs (label scoring): a callable ``(messages, text) ->
    float`` answers every request whose grammar forces one text (a scoring request) with that
    text as one token of that logprob, without using the script; ``True`` only says logprobs are
    returned (the script gives them as ``Completion(..., logprobs=[...])``).

    Streamed (:meth:`~lmprog.lm.BaseLM.stream`, ``fn.stream``), a reply comes in pieces of one
    word each, with its trailing whitespace.

    ``native_reasoning=True`` plays a model that reasons natively (``reasoning_effort``, thoughts
    returned apart from the answer): a dict response's ``"reasoning"`` entry, or a Completion's
    ``reasoning``, is returned in ``Completion.reasoning``, not in the text.

    Example:
        >>> import lmprog
        >>> from lmprog.testing import ScriptedLM
        >>> @lmprog.lm_function
        ... def sentiment(review: str) -> bool:
        ...     '''Whether the review is positive.'''
        >>> lm = ScriptedLM(["maybe", {"output": True}])  # a bad reply, then a good one
        >>> with lmprog.context(lm=lm):
        ...     sentiment("Loved it.")
        True
        >>> len(lm.calls)  # the bad reply was retried with the errors shown to the model
        2
    """

    def __init__(
        self,
        responses: Sequence[ScriptedResponse] | Callable[[Messages], ScriptedResponse],
        *,
        model: str = "scripted",
        cache: bool | None = False,
        backoff_base: float = 0.0,
        backoff_max: float = 0.0,
        constraint: ConstraintKind | None = None,
        takes_prompt: bool = False,
        logprobs: Callable[[Messages, str], float] | bool | None = None,
        native_reasoning: bool = False,
        native_tools: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, cache=cache, backoff_base=backoff_base, backoff_max=backoff_max, **kwargs)
        if constraint is not None and constraint not in CONSTRAINT_KINDS:
            raise UsageError(f"constraint must be one of {CONSTRAINT_KINDS} or None, got {constraint!r}")
        self.constraint = constraint
        self._takes_prompt = bool(takes_prompt)
        self._logprobs = logprobs
        self._native = bool(native_reasoning)
        self.native_tools = bool(native_tools)
        if callable(responses):
            self._script: list[ScriptedResponse] | None = None
            self._respond: Callable[[Messages], ScriptedResponse] | None = responses
        elif isinstance(responses, str | bytes) or not isinstance(responses, Sequence):
            raise UsageError(
                f"ScriptedLM needs a list of responses or a callable messages -> response, got {responses!r}"
            )
        else:
            self._script = list(responses)
            self._respond = None
        self._calls: list[ScriptedCall] = []
        self._lock = threading.Lock()

    def fingerprint(self) -> dict[str, Any]:
        """The LM's fingerprint plus its script: a list by its responses, a callable by its code
        (so a ScriptedLM with other answers is another model to stored results)."""
        ident = super().fingerprint()
        if self._script is not None:
            ident["script"] = digest([repr(r) for r in self._script])
        elif self._respond is not None:
            ident["script"] = code_identity(self._respond)
        if callable(self._logprobs):
            ident["logprobs"] = code_identity(self._logprobs)
        if self._native:
            ident["native_reasoning"] = True
        return ident

    def __getstate__(self) -> dict[str, Any]:
        """A ScriptedLM pickles (for process workers) when its script does; the copy answers from
        the whole script on its own and records its own calls."""
        with self._lock:
            state = dict(self.__dict__)
            state["_calls"] = list(self._calls)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def calls(self) -> list[ScriptedCall]:
        """The requests received so far, in order (a copy)."""
        with self._lock:
            return list(self._calls)

    def constraint_kind(self) -> ConstraintKind | None:
        return self.constraint

    def takes_prompt(self) -> bool:
        return self._takes_prompt

    def returns_logprobs(self) -> bool:
        return bool(self._logprobs)

    def native_reasoning(self) -> bool:
        return self._native

    def supports_tools(self) -> bool:
        return self.native_tools

    @property
    def remaining(self) -> int | None:
        """How many scripted responses are left (``None`` for a callable script)."""
        with self._lock:
            return None if self._script is None else len(self._script) - len(self._calls)

    def _request(self, messages: Messages, params: dict[str, Any]) -> Completion:
        if is_prompt(messages) and not self._takes_prompt:
            raise UsageError("this ScriptedLM takes chat messages only (pass takes_prompt=True)")
        forced = forced_text(params["grammar"]) if isinstance(params.get("grammar"), str) else None
        score = self._logprobs if callable(self._logprobs) and params.get("logprobs") else None
        choices = choice_texts(params["grammar"]) if isinstance(params.get("grammar"), str) else None
        if score is not None and forced is None and choices is not None:
            return self._choose(messages, params, choices, score)
        if score is not None and forced is not None:
            with self._lock:
                self._calls.append(ScriptedCall(messages=[dict(m) for m in messages], params=dict(params)))
            logprob = float(score(messages, forced))
            return Completion(
                text=forced,
                usage=Usage(prompt_tokens=_words(messages), completion_tokens=len(forced.split())),
                model=self.model,
                finish_reason="stop",
                logprobs=[{"token": forced, "logprob": logprob, "top_logprobs": []}],
            )
        with self._lock:
            index = len(self._calls)
            self._calls.append(ScriptedCall(messages=[dict(m) for m in messages], params=dict(params)))
            if self._script is not None:
                if index >= len(self._script):
                    raise UsageError(
                        f"ScriptedLM ran out of responses: {len(self._script)} scripted, "
                        f"this is request {index + 1}"
                    )
                response = self._script[index]
        if self._respond is not None:
            response = self._respond(messages)
        calls = _tool_calls(response, self.native_tools)
        if calls:
            return Completion(
                text="",
                usage=Usage(
                    prompt_tokens=_words(messages),
                    completion_tokens=sum(len(c.arguments.split()) + 1 for c in calls),
                ),
                model=self.model,
                finish_reason="tool_calls",
                tool_calls=calls,
            )
        given = response if isinstance(response, Completion) else None
        reasoning = given.reasoning if given is not None else None
        if self._native and isinstance(response, Mapping) and "reasoning" in response:
            reasoning = str(response["reasoning"])
            response = {k: v for k, v in response.items() if k != "reasoning"}
        text = given.text if given is not None else _render(response, structured="response_format" in params)
        return Completion(
            text=text,
            usage=Usage(
                prompt_tokens=_words(messages),
                completion_tokens=len(text.split()),
            ),
            model=self.model,
            finish_reason=given.finish_reason if given is not None else None,
            logprobs=given.logprobs if given is not None else None,
            reasoning=reasoning if self._native else None,
        )

    def _choose(
        self,
        messages: Messages,
        params: dict[str, Any],
        choices: Sequence[str],
        score: Callable[[Messages, str], float],
    ) -> Completion:
        """A one-token reply under a grammar allowing ``choices``: each choice is one token scored
        by ``score``, the alternatives are the best ``top_logprobs`` of them."""
        with self._lock:
            self._calls.append(ScriptedCall(messages=[dict(m) for m in messages], params=dict(params)))
        ranked = sorted(((float(score(messages, c)), c) for c in choices), key=lambda x: -x[0])
        top = [{"token": c, "logprob": lp} for lp, c in ranked[: int(params.get("top_logprobs") or 0)]]
        return Completion(
            text=ranked[0][1],
            usage=Usage(prompt_tokens=_words(messages), completion_tokens=1),
            model=self.model,
            finish_reason="length",
            logprobs=[{"token": ranked[0][1], "logprob": ranked[0][0], "top_logprobs": top}],
        )

    def _request_stream(self, messages: Messages, params: dict[str, Any]) -> Iterator[StreamItem]:
        completion = self._request(messages, params)
        yield from _PIECE.findall(completion.text)
        yield completion


_PIECE = re.compile(r"\s*\S+\s*|\s+")  # a word with its whitespace: a streamed piece


def _tool_calls(response: ScriptedResponse, native: bool) -> tuple[ToolCall, ...]:
    """The native tool calls a scripted response stands for (none for other responses)."""
    if isinstance(response, ToolCall):
        calls: tuple[ToolCall, ...] = (response,)
    elif isinstance(response, Sequence) and not isinstance(response, str) and response:
        calls = tuple(response) if all(isinstance(c, ToolCall) for c in response) else ()
    else:
        calls = ()
    if calls and not native:
        raise UsageError("a scripted ToolCall needs ScriptedLM(native_tools=True)")
    return calls


def _words(messages: Messages) -> int:
    return sum(len(str(m.get("content", "")).split()) for m in messages)


def _render(response: ScriptedResponse, *, structured: bool) -> str:
    if isinstance(response, BaseException):
        raise response
    if isinstance(response, str):
        return response
    if isinstance(response, Mapping):
        if structured:
            return json.dumps({str(k): to_jsonable(v) for k, v in response.items()}, ensure_ascii=False)
        return format_output(dict(response))
    raise UsageError(
        "a scripted response is a string, a dict of output values, a Completion, a ToolCall (or a "
        "list of them) or an exception, "
        f"got {response!r}"
    )
