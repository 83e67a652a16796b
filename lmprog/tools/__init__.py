"""Tools for lm_functions: plain typed Python functions the model may call in a bounded loop
(``@lm_function(tools=[search, calculator], max_steps=5)``).

Holds ``_tool`` (:class:`Tool`: a function read by the signature code, its arguments validated,
each call run in a ``"tool"`` span) and ``_loop`` (:class:`ToolLoop`: one call's turns of tool
calls, native or in the text protocol, and their transcript) and ``_turns`` (the constraint of
each turn). May import: ``errors``,
``signature``, ``lm``, ``format``, ``trace``.
"""

from __future__ import annotations

from lmprog.tools._loop import Request, ToolLoop
from lmprog.tools._tool import Outcome, Tool, as_tool, tools_of, unknown_tool
from lmprog.tools._turns import CONSTRAINT_KEYS, TurnConstraints

__all__ = [
    "CONSTRAINT_KEYS",
    "Outcome",
    "Request",
    "Tool",
    "ToolLoop",
    "TurnConstraints",
    "as_tool",
    "tools_of",
    "unknown_tool",
]
