"""Conversation history: the parameter type that makes an lm_function a chat program.

A parameter annotated :data:`History` (a list of :class:`Turn`, ``{"role": "user" | "assistant",
"content": str}``) is an input like any other to callers, datasets, traces, demos and optimizers,
but the prompt shows it as prior chat turns, not as an input line: after the demos and before
the current user message (a demo that holds a history shows its turns before its own user
message). At most one parameter per function may be a history. Any value whose JSON form is
such a list is accepted (dicts, a user's own pydantic ``Turn`` model...); ``None`` is no history.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypedDict, get_args, get_origin

__all__ = ["HISTORY", "History", "Turn", "history_turns", "is_history"]


class Turn(TypedDict):
    """One prior message of a conversation."""

    role: Literal["user", "assistant"]
    content: str


class _HistoryMarker:
    """What marks :data:`History` in an annotation (``Annotated`` metadata)."""

    def __repr__(self) -> str:
        return "lmprog.HISTORY"


#: the ``Annotated`` metadata that marks a history parameter
HISTORY = _HistoryMarker()

#: A conversation so far: the turns before the current user message, oldest first.
History = Annotated[list[Turn], HISTORY]


def is_history(annotation: Any) -> bool:
    """Whether a parameter annotation is :data:`History` (possibly ``History | None``)."""
    if get_origin(annotation) is Annotated:
        return any(meta is HISTORY for meta in annotation.__metadata__)
    args = get_args(annotation)
    return bool(args) and any(is_history(arg) for arg in args if arg is not type(None))


def history_turns(value: Any) -> list[dict[str, str]]:
    """Chat messages from a history value already validated as a list of turns (JSON form)."""
    if value is None:
        return []
    return [
        {"role": str(turn["role"]), "content": str(turn["content"])}
        for turn in value
        if isinstance(turn, Mapping)
    ]
