"""The wire format: a signature, an instruction and demos become chat messages; a completion
becomes the function's return value; and what constrains a model to write only readable replies
(GBNF grammars, JSON schemas).

Holds ``_prompt`` (render and parse, retry messages), ``_wire`` (how values are written),
``_read`` (the parser), ``_partial`` (the complete fields of a reply being streamed),
``_grammar``, ``_schema``, ``_constrain`` and ``_tools`` (tools on the
wire). May import: ``errors``, ``_fingerprint``, ``signature`` and, for the constraint kinds,
``lm``.
"""

from __future__ import annotations

from lmprog.format._constrain import constraint_params, grammar, json_schema, response_format
from lmprog.format._partial import partial_fields
from lmprog.format._prompt import (
    ParseFailure,
    format_output,
    output_values,
    parse_output,
    render_messages,
    reply_format,
    retry_messages,
)
from lmprog.format._tools import (
    read_tool_call,
    step_messages,
    tool_call_text,
    tool_grammar,
    tool_result_text,
    tool_schemas,
    tools_section,
)
from lmprog.format._wire import to_jsonable

__all__ = [
    "ParseFailure",
    "constraint_params",
    "format_output",
    "grammar",
    "json_schema",
    "output_values",
    "parse_output",
    "partial_fields",
    "read_tool_call",
    "render_messages",
    "reply_format",
    "response_format",
    "retry_messages",
    "step_messages",
    "to_jsonable",
    "tool_call_text",
    "tool_grammar",
    "tool_result_text",
    "tool_schemas",
    "tools_section",
]
