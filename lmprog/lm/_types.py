"""What passes between lmprog and an LM: messages, completions (and the tool calls in them), and the
constraint kinds a provider may take. The vocabulary of :mod:`lmprog.lm`; imports nothing of
lmprog but usage and errors."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from lmprog.errors import UsageError
from lmprog.usage import Usage

Messages = list[dict[str, str]]
#: What a provider constrains replies with (see :mod:`lmprog.format`).
ConstraintKind = Literal["grammar", "json_schema"]
CONSTRAINT_KINDS: tuple[ConstraintKind, ...] = ("grammar", "json_schema")
#: the role of the single message that carries a plain-text prompt for the model to continue
#: (no chat template); only an LM whose ``takes_prompt()`` is true accepts it
PROMPT_ROLE = "prompt"


@dataclass(frozen=True)
class ToolCall:
    """A tool call a model asked for through a provider's native tool calling.

    Attributes:
        name: the tool's name, as the model wrote it (checked by the caller, not here).
        arguments: the arguments as the provider returned them: JSON text (a mapping given here
            is written as JSON); read with :mod:`json` only, never evaluated.
        id: the provider's id of the call (what a tool result message refers to).
    """

    name: str
    arguments: str = "{}"
    id: str = ""

    def __init__(self, name: str, arguments: str | Mapping[str, Any] = "{}", id: str = "") -> None:
        text = arguments if isinstance(arguments, str) else json.dumps(dict(arguments), ensure_ascii=False)
        object.__setattr__(self, "name", str(name))
        object.__setattr__(self, "arguments", text)
        object.__setattr__(self, "id", str(id))

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


@dataclass(frozen=True)
class Completion:
    """One completion and what it cost.

    Attributes:
        text: the completion's text.
        usage: this call's usage (``calls=1``; ``requests`` every provider request it took,
            failed ones included, 0 for a cache hit).
        cache_hit: it came from the persistent cache.
        model: the model that answered.
        latency: the wall time of the whole call in seconds (retries included).
        attempts: how many provider requests it took (0 for a cache hit).
        finish_reason: the provider's (``"stop"``; ``"length"`` when cut at ``max_tokens``: such
            a completion is never cached; None when unknown).
        logprobs: the OpenAI-style per-token list (``token``, ``logprob``, ``top_logprobs``) when
            the request asked for ``logprobs`` and the provider returned them.
        reasoning: what a model with native reasoning thought before it answered (litellm's
            ``reasoning_content`` or thinking blocks); None when the provider returned none.
        tool_calls: the tool calls the model asked for through native tool calling (the request
            carried ``tools``); empty otherwise. A completion with tool calls may have no text.
    """

    text: str
    usage: Usage = field(default_factory=Usage)
    cache_hit: bool = False
    model: str = ""
    latency: float = 0.0
    attempts: int = 1
    finish_reason: str | None = None
    logprobs: list[dict[str, Any]] | None = None
    reasoning: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True)
class TextDelta:
    """A piece of a completion as :meth:`BaseLM.stream` yields it.

    Attributes:
        text: the new text (appended to the text so far).
        restart: the request was retried (a transient failure after some text had come): the
            text so far is void and the next deltas start the completion over. ``text`` is empty
            on a restart delta.
    """

    text: str
    restart: bool = False


#: What a provider's ``_request_stream`` yields: text pieces, then exactly one whole Completion.
StreamItem = str | Completion


def check_messages(messages: Sequence[Mapping[str, str]]) -> Messages:
    """``messages`` as plain dicts, or a :class:`~lmprog.errors.UsageError` naming the bad one."""
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence) or not messages:
        raise UsageError(
            f"messages must be a non-empty list of {{'role', 'content'}} dicts, got {messages!r}"
        )
    out: Messages = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise UsageError(f"message {i} must be a dict with a 'role' and a 'content', got {message!r}")
        content = message.get("content")
        if not isinstance(content, str):
            raise UsageError(f"message {i} needs a string 'content', got {content!r}")
        out.append(dict(message))
    return out
