"""What constrains each turn of a tool loop: the request parameters that let the model call a
tool, force it to, or leave it only the answer.

Three sets, chosen by the loop's state (:meth:`TurnConstraints.params`):

- a regular turn: native tool calling sends the function schemas (``tools``) besides the answer's
  own constraint; the text protocol under a grammar sends the grammar of "a call of a named tool
  or the answer" (:func:`~lmprog.format.tool_grammar`); a JSON schema of the answer is not sent
  (a call could not fit it);
- the first turn of a function with ``tool_first=True``: a call is required (``tool_choice``
  ``"required"`` natively, a grammar of calls only), so even a model that would answer at once
  (a small one with no demos) goes through the tools; without a constraint it cannot be forced;
- the turn after the last step: the answer only (``tool_choice`` ``"none"`` natively, the
  answer's own grammar or schema otherwise).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lmprog.format import tool_grammar, tool_schemas
from lmprog.signature import Signature
from lmprog.tools._loop import ToolLoop

__all__ = ["CONSTRAINT_KEYS", "TurnConstraints"]

#: the request parameters a turn's constraint may set (all others are left alone)
CONSTRAINT_KEYS = ("grammar", "response_format", "tools", "tool_choice")


class TurnConstraints:
    """The constraint parameters of each turn of one call's tool loop.

    Args:
        wire: the signature the model answers in.
        tools: the tools' signatures.
        native: the LM takes native tool calling.
        kind: the constraint the LM takes (``"grammar"``, ``"json_schema"`` or None).
        answer: the constraint parameters of the answer alone (``constraint_params``).
        tool_first: the first reply must be a tool call where a constraint can force it.
    """

    def __init__(
        self,
        wire: Signature,
        tools: Sequence[Signature],
        *,
        native: bool,
        kind: str | None,
        answer: Mapping[str, Any],
        tool_first: bool = False,
    ) -> None:
        self.last = dict(answer)
        if native:
            self.regular = {**answer, "tools": tool_schemas(tools)}
            self.first = {**self.regular, "tool_choice": "required"} if tool_first else self.regular
            self.last = {**self.regular, "tool_choice": "none"}
        elif kind == "grammar":
            either = tool_grammar(wire, tools)
            self.regular = {} if either is None else {"grammar": either}
            self.first = (
                {"grammar": tool_grammar(wire, tools, calls_only=True)} if tool_first else self.regular
            )
        else:
            self.regular = {k: v for k, v in answer.items() if k != "response_format"}
            self.first = self.regular

    def params(self, loop: ToolLoop) -> dict[str, Any]:
        """The constraint parameters of the next request of ``loop``."""
        if loop.answer_due:
            return self.last
        return self.first if loop.turns == 0 else self.regular
