"""Reading completions: the parser half of the wire format (described in ``lmprog.format._prompt``).

Every failure is a :class:`~lmprog.signature.ParseFailure`: one problem from a type spec for a
single output, one problem per bad field (located by field name) plus a ``missing line(s)``
problem for a reply with several outputs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from lmprog.format._wire import header_key, header_pattern, strip_output_header
from lmprog.signature import ParseFailure, Problem, Signature, field_spec, iter_json, unfence


@dataclasses.dataclass
class _Reading:
    values: dict[str, Any]
    problems: list[Problem]
    found: int


def parse_single(signature: Signature, text: str) -> Any:
    """A single output: the whole completion, minus an ``output:`` label, read by its spec.
    When that fails, also try the text up to a hallucinated input header (``ticket: ...``) and a
    JSON object ``{"output": ...}``."""
    spec = field_spec(signature.outputs[0])
    body = strip_output_header(text)
    try:
        return spec.parse_text(body)
    except ParseFailure as error:
        first = error
    cut = _cut_at_input_header(signature, body)
    if cut is not None:
        try:
            return spec.parse_text(cut)
        except ParseFailure:
            pass
    for candidate in iter_json(body, "{"):
        if isinstance(candidate, dict) and len(candidate) == 1:
            key, value = next(iter(candidate.items()))
            if isinstance(key, str) and header_key(key) == "output":
                try:
                    return spec.validate(value)
                except ParseFailure:
                    break
    raise first


def parse_structured(signature: Signature, text: str) -> Any:
    """A reply constrained by :func:`lmprog.format.json_schema`: one JSON object with a key per
    output field (``{"output": ...}`` for a single output). A reply that is no such object is
    read in the text format instead (a provider may ignore the schema)."""
    body = unfence(text)
    if body.startswith("{"):
        if signature.multi_output:
            reading = _read_json(signature, body)
            if reading is not None and reading.found:
                if reading.problems:
                    raise ParseFailure(reading.problems)
                return signature.build_return(reading.values)
        else:
            for candidate in iter_json(body, "{"):
                if isinstance(candidate, dict) and "output" in candidate:
                    return field_spec(signature.outputs[0]).validate(candidate["output"])
                break
    return parse_multi(signature, text) if signature.multi_output else parse_single(signature, text)


def parse_multi(signature: Signature, text: str) -> Any:
    """Several outputs: ``name: value`` lines, or one JSON object with the field names."""
    body = unfence(text)
    json_first = body.startswith("{")
    readings = [_read_json(signature, body)] if json_first else []
    readings.append(_read_headers(signature, body))
    if not json_first:
        readings.append(_read_json(signature, body))
    best: _Reading | None = None
    for reading in readings:
        if reading is None:
            continue
        if not reading.problems:
            return signature.build_return(reading.values)
        if best is None or reading.found > best.found:
            best = reading
    if best is None:
        raise ParseFailure([])
    raise ParseFailure(best.problems)


def _read_headers(signature: Signature, body: str) -> _Reading:
    outputs = signature.output_names
    lookup = {header_key(name): name for name in signature.input_names}
    lookup.update({header_key(name): name for name in outputs})
    pattern = header_pattern(lookup.values())
    sections: dict[str, list[str]] = {}
    bold_tail: set[str] = set()
    preamble: list[str] = []
    current: str | None = None
    for line in body.split("\n"):
        match = pattern.match(line) if pattern is not None else None
        name = lookup.get(header_key(match.group("name"))) if match else None
        if match and name in outputs:
            if name in sections:  # a second round: the model started another example
                break
            sections[name] = [line[match.end() :]]
            current = name
            if match.group("pre") and not (match.group("post") or match.group("after")):
                bold_tail.add(name)
            continue
        if match and len(sections) == len(outputs):  # an input header after every output
            break
        (preamble if current is None else sections[current]).append(line)

    first = signature.outputs[0]
    if sections and first.name not in sections and field_spec(first).free_text and "".join(preamble).strip():
        sections[first.name] = preamble  # the first (free-text) field written without its label
    if not sections and len(outputs) == 1:
        sections[first.name] = preamble  # a one-field record answered bare
    values: dict[str, Any] = {}
    problems: list[Problem] = []
    for field in signature.outputs:
        if field.name not in sections:
            continue
        raw = "\n".join(sections[field.name]).strip()
        if field.name in bold_tail:
            raw = raw.removesuffix("**").removesuffix("__")
        try:
            values[field.name] = field_spec(field).parse_text(raw)
        except ParseFailure as error:
            problems.extend(error.in_field(field.name).problems)
    missing = _missing(signature, values.keys() | sections.keys())
    if missing:
        problems.insert(0, Problem(f"missing line(s): {', '.join(f'{name}:' for name in missing)}"))
    return _Reading(values, problems, found=len(sections))


def _read_json(signature: Signature, body: str) -> _Reading | None:
    record = signature.record_spec()
    keys = {header_key(name): name for name in signature.output_names}
    keys.update({header_key(item.key): name for name, item in record.fields.items() if item.key})
    fields = {field.name: field for field in signature.outputs}
    for candidate in iter_json(body, "{"):
        if not isinstance(candidate, dict):
            continue
        matched = {
            keys[header_key(k)]: v
            for k, v in candidate.items()
            if isinstance(k, str) and header_key(k) in keys
        }
        if not matched:
            continue
        values: dict[str, Any] = {}
        problems: list[Problem] = []
        for name, raw in matched.items():
            try:
                values[name] = field_spec(fields[name]).validate(raw)
            except ParseFailure as error:
                problems.extend(error.in_field(name).problems)
        missing = _missing(signature, matched.keys())
        if missing:
            problems.insert(0, Problem(f"missing key(s): {', '.join(missing)}"))
        return _Reading(values, problems, found=len(matched))
    return None


def _missing(signature: Signature, present: Any) -> list[str]:
    record = signature.record_spec()
    return [name for name, item in record.fields.items() if item.required and name not in present]


def _cut_at_input_header(signature: Signature, body: str) -> str | None:
    """``body`` up to the first later line that starts an input field (a made-up next example)."""
    pattern = header_pattern(signature.input_names)
    if pattern is None:
        return None
    lines = body.split("\n")
    for index in range(1, len(lines)):
        if pattern.match(lines[index]):
            return "\n".join(lines[:index])
    return None
