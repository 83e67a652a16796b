"""How tools appear on the wire: the tool list in the system message, the text protocol of a tool
call and its result, the grammar that constrains a reply to a call or an answer, and the
OpenAI-style function schemas of native tool calling.

A tool is described by its :class:`~lmprog.signature.Signature` (read from the Python function
like an lm_function's): its name, its instruction (the docstring's summary) and its inputs, whose
:func:`~lmprog.signature.arguments_record` gives the shape, grammar and schema of the arguments.

The text protocol (models without native tool calling, the embedded one included): a reply is
either a tool call, exactly one line of JSON::

    {"tool": "multiply", "arguments": {"a": 3, "b": 4}}

or the function's answer in its own reply format. The result comes back as a user message
``Result of multiply: 12`` (``Error from multiply: ...`` when the call failed). Under a grammar
(:func:`tool_grammar`) the model can only write one of the named tools with arguments of their
types, or a well-formed answer. A demo keeps the calls of the run it came from
(:data:`~lmprog.signature.TOOL_CALLS`); :func:`step_messages` renders them in this same protocol.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal, overload

from lmprog.format._constrain import answer_rule
from lmprog.format._grammar import Grammar, json_rule, literal
from lmprog.format._schema import Schemas, value_schema
from lmprog.format._wire import render_plain, to_jsonable
from lmprog.signature import Signature, arguments_record, field_spec, iter_json

__all__ = [
    "read_tool_call",
    "step_messages",
    "tool_call_text",
    "tool_grammar",
    "tool_result_text",
    "tool_schemas",
    "tools_section",
]


def tools_section(tools: Sequence[Signature], *, native: bool = False) -> str:
    """The part of the system message that lists the tools and how to call them."""
    lines = ["Tools (call one per reply when you need it, then answer):"]
    for tool in tools:
        summary = tool.instruction.strip().splitlines()[0] if tool.instruction.strip() else ""
        args = arguments_record(tool).shape()
        lines.append(f"- {tool.name} {args}" + (f": {summary}" if summary else ""))
    if not native:
        lines.append(
            'To call a tool, reply with only this JSON: {"tool": "<name>", "arguments": {...}}. '
            "Its result comes back in the next message."
        )
    return "\n".join(lines)


def tool_call_text(name: str, arguments: Any) -> str:
    """A tool call in the text protocol: one line of JSON (the separators the grammar allows)."""
    return json.dumps({"tool": name, "arguments": to_jsonable(arguments)}, ensure_ascii=False)


def tool_result_text(name: str, result: Any = None, *, error: str | None = None) -> str:
    """The message that brings a tool's result (or its error) back to the model."""
    if error is not None:
        return f"Error from {name}: {error}"
    shown = result if isinstance(result, str) else render_plain(to_jsonable(result))
    return f"Result of {name}: {shown}"


def read_tool_call(text: str) -> tuple[str, Any] | None:
    """The ``(tool name, arguments)`` of a text-protocol tool call, or None when ``text`` is not
    one (an answer). Only :mod:`json` reads it; the arguments are checked by the caller."""
    stripped = text.strip()
    if not stripped.startswith(("{", "```")):
        return None
    for value in iter_json(stripped, "{"):
        if isinstance(value, dict) and isinstance(value.get("tool"), str):
            return value["tool"], value.get("arguments", {})
        return None
    return None


def step_messages(steps: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """The messages of a demo's tool calls: the call, then its result, for each step."""
    out: list[dict[str, str]] = []
    for step in steps:
        name = str(step.get("tool", ""))
        out.append({"role": "assistant", "content": tool_call_text(name, step.get("arguments", {}))})
        error = step.get("error")
        result = tool_result_text(name, step.get("result"), error=None if error is None else str(error))
        out.append({"role": "user", "content": result})
    return out


@overload
def tool_grammar(signature: Signature, tools: Sequence[Signature], *, calls_only: Literal[True]) -> str: ...
@overload
def tool_grammar(
    signature: Signature, tools: Sequence[Signature], *, calls_only: bool = False
) -> str | None: ...
def tool_grammar(signature: Signature, tools: Sequence[Signature], *, calls_only: bool = False) -> str | None:
    """The GBNF grammar of a reply that is a call of one of ``tools`` or the answer of
    ``signature``; None when the answer is free text (any reply is then valid). ``calls_only``:
    a call and nothing else."""
    g = Grammar()
    answer = "" if calls_only else answer_rule(signature, g)
    if answer == "text":
        return None
    # every record stays alive until the grammar is built: ``Grammar`` names rules by ``id(spec)``,
    # and a record freed early could lend its id (and so its rule) to the next tool's
    records = [arguments_record(tool) for tool in tools]
    calls = []
    for tool, record in zip(tools, records, strict=True):
        head = literal(f'{{"tool": {json.dumps(tool.name)}, "arguments": ')
        calls.append(f"{head} {json_rule(record, g)} {literal('}')}")
    g.rules["call"] = " | ".join(calls)
    return g.render(f"call | {answer}" if answer else "call")


def tool_schemas(tools: Sequence[Signature]) -> list[dict[str, Any]]:
    """The ``tools`` request parameter of native tool calling (OpenAI function schemas)."""
    out = []
    for tool in tools:
        schemas = Schemas()
        properties = {}
        for field in tool.inputs:
            schema = value_schema(field_spec(field), schemas)
            properties[field.name] = (
                {**schema, "description": field.description} if field.description else schema
            )
        parameters = schemas.finish(
            {
                "type": "object",
                "properties": properties,
                "required": [f.name for f in tool.inputs if not f.has_default],
            }
        )
        function = {"name": tool.name, "description": tool.instruction.strip(), "parameters": parameters}
        out.append({"type": "function", "function": function})
    return out
