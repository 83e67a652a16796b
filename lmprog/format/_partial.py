"""Reading a reply while it is written: the output fields a partial completion already holds.

:func:`partial_fields` serves streaming (``fn.stream``): given the text so far of a reply with
several outputs, it returns the fields that are *complete* and valid, each validated by its own
type spec (the whole object, with its model validators, is validated only once the reply is
whole, by :func:`~lmprog.format.parse_output`). A field is complete:

- in the line format (``name: value``), once the header of a later output field has started
  (the last field being written is never reported: its value may still grow);
- in a JSON reply (a provider with a JSON schema), once a top-level ``,`` or the closing ``}``
  follows its value.

A field whose value does not validate yet is left out; nothing here raises.
"""

from __future__ import annotations

from typing import Any

from lmprog.format._read import _read_headers, _read_json
from lmprog.format._wire import header_key, header_pattern
from lmprog.signature import Signature

__all__ = ["partial_fields"]


def partial_fields(signature: Signature, text: str, *, structured: bool = False) -> dict[str, Any]:
    """The complete, valid output fields of the reply so far, by field name (see the module
    docs); ``{}`` for a single-output signature, whose one value is complete only at the end."""
    if not signature.multi_output:
        return {}
    body = text.lstrip()
    if body.startswith("```"):  # an opening code fence; its closing one may not be written yet
        body = body.partition("\n")[2].lstrip()
    if body.startswith("{"):
        closed = _closed_json(body)
        if closed is None:
            return {}
        reading = _read_json(signature, closed)
        return dict(reading.values) if reading is not None else {}
    if structured:
        return {}
    done = _before_last_header(signature, body)
    return dict(_read_headers(signature, done).values) if done.strip() else {}


def _before_last_header(signature: Signature, body: str) -> str:
    """``body`` up to the line that starts the last output header in it (the field being written)."""
    pattern = header_pattern(signature.output_names)
    if pattern is None:
        return ""
    outputs = {header_key(name) for name in signature.output_names}
    lines = body.split("\n")
    last = None
    for index, line in enumerate(lines):
        match = pattern.match(line)
        if match and header_key(match.group("name")) in outputs:
            last = index
    return "\n".join(lines[:last]) if last is not None else ""


def _closed_json(body: str) -> str | None:
    """The JSON object of ``body`` cut after its last complete top-level member and closed with
    ``}`` (the whole object when it is complete); None when no member is complete yet."""
    depth = 0
    in_string = escaped = False
    cut: int | None = None
    for index, char in enumerate(body):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
            if depth == 0:
                return body[: index + 1]
        elif char == "," and depth == 1:
            cut = index
    return None if cut is None else body[:cut] + "}"
