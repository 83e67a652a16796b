"""Reasoning before the answer: the wire signature of ``@lm_function(reasoning=True)``.

:func:`with_reasoning` turns a signature into the one the model sees: a multi-output signature
whose first output is a free-text ``reasoning`` field, followed by the declared output fields (a
single output keeps its name, ``output``). The prompt's reply format, the parser, the grammar and
the JSON schema all follow from it like from any multi-output signature, so the model is asked
(and, under constrained decoding, forced) to write ``reasoning: ...`` before its answer.

The record it parses into is a plain mapping of field values; :func:`split_reasoning` separates
the reasoning from the declared outputs, which ``Signature.build_return`` of the *declared*
signature turns into the return value. The reasoning field is required when a reply is read (a
reply without it is a format failure, retried like any other) but has an empty default for
rendering, so a labeled demo without reasoning still renders (without a ``reasoning:`` line).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from lmprog.signature._signature import Field, Signature, field_spec
from lmprog.signature._specs import StrSpec
from lmprog.signature._specs_json import RecordField, RecordSpec

__all__ = ["REASONING", "split_reasoning", "with_reasoning"]

#: the name of the reasoning field on the wire, in demos and in replies
REASONING = "reasoning"
_DESCRIPTION = "think step by step about the inputs before you answer"


def with_reasoning(signature: Signature) -> Signature:
    """The signature the model sees when it reasons first: ``reasoning`` then the outputs."""
    if REASONING in signature.output_names:
        raise ValueError(f"{signature.qualname} already returns a field named {REASONING!r}")
    text = StrSpec(str)
    reasoning = Field(REASONING, str, _DESCRIPTION, default="", _spec=text)
    record = RecordSpec(dict)
    record.fields[REASONING] = RecordField(REASONING, text, str, required=True)
    declared = signature.record_spec().fields if signature.multi_output else {}
    for field in signature.outputs:
        record.fields[field.name] = declared.get(field.name) or RecordField(
            field.name, field_spec(field), field.annotation, required=not field.has_default
        )
    return dataclasses.replace(
        signature,
        outputs=(reasoning, *signature.outputs),
        return_annotation=dict,
        multi_output=True,
        _record=record,
    )


def split_reasoning(values: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The reasoning and the declared output values of a reply read by a reasoning signature."""
    rest = dict(values)
    return str(rest.pop(REASONING, "") or ""), rest
