"""Tools read like lm_functions: a plain typed Python function is a tool whose *inputs* are its
arguments.

A tool's :class:`Signature` is read by :func:`signature_from_function`, the very code that reads an
lm_function: parameters with type hints and defaults, the docstring's summary and argument
descriptions. :func:`arguments_record` turns its inputs into a :class:`RecordSpec` over a plain
``dict``: the one spec that gives the JSON schema and the grammar of the arguments a model may
write and that validates (and converts) the arguments it wrote (a pydantic model argument is
validated by pydantic, constraints from ``Annotated`` metadata by pydantic too).

:data:`TOOL_CALLS` is the key under which a demo keeps the tool calls of the run it came from
(a list of ``{"tool", "arguments", "result"}`` or ``{"tool", "arguments", "error"}`` steps).
"""

from __future__ import annotations

from lmprog.signature._signature import Signature, field_spec
from lmprog.signature._specs_json import RecordField, RecordSpec

__all__ = ["TOOL_CALLS", "arguments_record"]

#: the key of a demo's tool-call transcript
TOOL_CALLS = "tool_calls"


def arguments_record(signature: Signature) -> RecordSpec:
    """The arguments of a tool as one JSON object: a field per parameter, required unless it has
    a default; validating a model's object returns a ``dict`` of converted values by name."""
    record = RecordSpec(dict)
    for field in signature.inputs:
        record.fields[field.name] = RecordField(
            field.name,
            field_spec(field),
            field.annotation,
            required=not field.has_default,
            default=field.default,
            description=field.description,
        )
    return record
