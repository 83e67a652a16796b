"""Constrained decoding: what an lm_function sends so that the model can only write a readable reply.

Two kinds, chosen by what the LM takes (:meth:`lmprog.lm.BaseLM.constraint_kind`):

- ``"grammar"`` (the embedded llama.cpp model): a GBNF grammar of the *text* wire format, the
  very form demos are rendered in (``lmprog.format._grammar``); sent as the request parameter
  ``grammar``. The reply is parsed as usual.
- ``"json_schema"`` (litellm models for which ``litellm.supports_response_schema`` is true): an
  OpenAI-style ``response_format`` whose schema is a JSON object with one key per output field
  (``{"output": ...}`` for a single output; ``lmprog.format._schema``). The reply is read as that
  object (``lmprog.format._read.parse_structured``), falling back to the text format.

Both are derived from the signature's type specs, so the prompt, the parser and the constraint
cannot disagree. A single free-text output (``str``) needs no constraint under a grammar. The
constraint is a request parameter, hence part of the cache key. ``lmprog.configure(constrain=False)``
or ``lm_function(constrain=False)`` turns it off.
"""

from __future__ import annotations

import re
from typing import Any

from lmprog.format._grammar import Grammar, literal, text_rule
from lmprog.format._schema import Schemas, object_schema, value_schema
from lmprog.lm import ConstraintKind
from lmprog.signature import Signature, field_spec

__all__ = ["answer_rule", "constraint_params", "grammar", "json_schema", "response_format"]


def grammar(signature: Signature) -> str | None:
    """The GBNF grammar of a reply in the text wire format; None when any text is a valid reply."""
    g = Grammar()
    root = answer_rule(signature, g)
    return None if root == "text" else g.render(root)


def answer_rule(signature: Signature, g: Grammar) -> str:
    """The GBNF expression of a whole reply of ``signature``, its rules added to ``g``; ``"text"``
    when any text is a valid reply."""
    if not signature.multi_output:
        return text_rule(field_spec(signature.outputs[0]), g, line=False)
    lines = [
        f"{literal(f'{field.name}: ')} {text_rule(field_spec(field), g, line=True)}"
        for field in signature.outputs
    ]
    return ' "\\n" '.join(lines)


def json_schema(signature: Signature) -> dict[str, Any]:
    """The JSON schema of a structured reply: one property per output field."""
    schemas = Schemas()
    properties = {field.name: value_schema(field_spec(field), schemas) for field in signature.outputs}
    if signature.multi_output:  # a pydantic alias is the key the model writes
        record = signature.record_spec()
        properties = {
            (record.fields[name].key or name) if name in record.fields else name: schema
            for name, schema in properties.items()
        }
    return schemas.finish(object_schema(properties))


def response_format(signature: Signature) -> dict[str, Any]:
    """The OpenAI-style ``response_format`` carrying :func:`json_schema`."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", signature.name)[:64] or "reply"
    return {"type": "json_schema", "json_schema": {"name": name, "schema": json_schema(signature)}}


def constraint_params(signature: Signature, kind: ConstraintKind | None) -> dict[str, Any]:
    """The request parameters constraining a reply for an LM taking ``kind`` (empty for None)."""
    if kind == "grammar":
        text = grammar(signature)
        return {} if text is None else {"grammar": text}
    if kind == "json_schema":
        return {"response_format": response_format(signature)}
    return {}
