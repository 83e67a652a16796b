"""Whether a demo fits an lm_function's signature, and where each demo sits in a prompt file.

A demo maps field names to JSON-friendly values (see :func:`lmprog.format.render_messages`). It
fits its signature when:

- every key is an input or an output of the function (a multi-output demo may instead hold the
  whole return value under ``output``), or its ``reasoning`` text, or its ``tool_calls`` transcript;
- every input without a default is present (one with a default may be left out: it is rendered
  with its default, as in calls) and every output without a default is present;
- every value validates against its field's type spec (options of a ``Literal``, numbers,
  constraints from ``Annotated`` metadata...). A value equal to the field's default always fits.

Optimizers keep only demos that fit (:func:`fit_demo`), ``lmprog check`` reports the ones that do
not, and loading a prompt file refuses them (:func:`located_problems` names the line).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from lmprog._fingerprint import to_jsonable
from lmprog.signature import REASONING, TOOL_CALLS, Field, ParseFailure, Signature, field_spec

__all__ = ["DemoProblem", "demo_lines", "demo_problems", "file_problems", "fit_demo"]


class DemoProblem(NamedTuple):
    """One way a demo does not fit: ``key`` is the field it is about (None: the whole demo)."""

    key: str | None
    message: str


def demo_problems(signature: Signature, demo: Mapping[str, Any]) -> list[DemoProblem]:
    """Everything that keeps ``demo`` from fitting ``signature`` (empty when it fits)."""
    if not isinstance(demo, Mapping):
        return [DemoProblem(None, f"a demo is a mapping of field names to values, got {type(demo).__name__}")]
    problems: list[DemoProblem] = []
    inputs = {f.name: f for f in signature.inputs}
    outputs = {f.name: f for f in signature.outputs}
    whole = signature.multi_output and "output" not in outputs and "output" in demo
    for key in demo:
        if key == REASONING and isinstance(demo[key], str):
            continue  # the text of a reasoning=True function's thought (ignored by others)
        if key == TOOL_CALLS and _is_transcript(demo[key]):
            continue  # the tool calls of a run of a function with tools (ignored by others)
        if key not in inputs and key not in outputs and not (whole and key == "output"):
            problems.append(
                DemoProblem(str(key), f"{key!r} is not a field of {signature.name} ({_fields(signature)})")
            )
    for field in signature.inputs:
        if field.name in demo:
            problems.extend(_value_problems("input", field, demo[field.name]))
        elif not field.has_default:
            problems.append(DemoProblem(None, f"no value for input {field.name!r}"))
    if whole:
        try:
            signature.record_spec().validate(demo["output"])
        except ParseFailure as error:
            problems.append(DemoProblem("output", f"output: {error}"))
        return problems
    for field in signature.outputs:
        if field.name in demo:
            problems.extend(_value_problems("output", field, demo[field.name]))
        elif not field.has_default:
            problems.append(DemoProblem(None, f"no value for output {field.name!r}"))
    if signature.multi_output and not problems:  # the model's own validators, across fields
        values = {f.name: field_spec(f).validate(demo[f.name]) for f in signature.outputs if f.name in demo}
        try:
            signature.record_spec().construct(values)
        except ParseFailure as error:
            name = error.path.lstrip(".").split(".")[0].split("[")[0]
            problems.append(DemoProblem(name if name in outputs else None, f"output: {error}"))
    return problems


def fit_demo(signature: Signature, demo: Mapping[str, Any]) -> dict[str, Any] | None:
    """``demo`` with its output values in their canonical form (a ``Literal`` option as declared,
    ``"5"`` as 5 for an int), or None when it does not fit."""
    if demo_problems(signature, demo):
        return None
    out = dict(demo)
    for field in signature.outputs:
        if field.name in out and not _is_default(field, out[field.name]):
            out[field.name] = to_jsonable(field_spec(field).validate(out[field.name]))
    return out


def file_problems(signature: Signature, path: Path, demos: Sequence[Any]) -> list[str]:
    """``path:line: demo I: problem`` for every problem of the demos read from the prompt file at
    ``path``; the line is the offending key's when known, else the demo's."""
    lines = demo_lines(path.read_text(encoding="utf-8"))
    found = []
    for index, demo in enumerate(demos):
        where = lines[index] if index < len(lines) else {}
        for problem in demo_problems(signature, demo):
            line = where.get(problem.key, where.get(None, 1))
            found.append(f"{path}:{line}: demo {index + 1}: {problem.message}")
    return found


def demo_lines(text: str) -> list[dict[str | None, int]]:
    """For each item of the top-level ``demos`` list of a YAML prompt file: the line (1-based) of
    the item (key None) and of each of its keys. Empty when the text holds no such list."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return []
    if not isinstance(root, yaml.MappingNode):
        return []
    for key, value in root.value:
        if isinstance(key, yaml.ScalarNode) and key.value == "demos" and isinstance(value, yaml.SequenceNode):
            out = []
            for item in value.value:
                lines: dict[str | None, int] = {None: item.start_mark.line + 1}
                if isinstance(item, yaml.MappingNode):
                    for k, _ in item.value:
                        if isinstance(k, yaml.ScalarNode):
                            lines[k.value] = k.start_mark.line + 1
                out.append(lines)
            return out
    return []


def _value_problems(kind: str, field: Field, value: Any) -> list[DemoProblem]:
    if _is_default(field, value):
        return []
    try:
        field_spec(field).validate(value)
    except ParseFailure as error:
        name = "output" if kind == field.name == "output" else f"{kind} {field.name!r}"
        return [DemoProblem(field.name, f"{name}: {error}")]
    return []


def _is_transcript(value: Any) -> bool:
    """Whether ``value`` is a demo's tool-call transcript: a list of ``{"tool": name, ...}``."""
    return isinstance(value, list) and all(
        isinstance(step, Mapping) and isinstance(step.get("tool"), str) for step in value
    )


def _is_default(field: Field, value: Any) -> bool:
    if not field.has_default:
        return False
    try:
        return bool(value == to_jsonable(field.default))
    except Exception:  # a default whose comparison fails is simply not equal
        return False


def _fields(signature: Signature) -> str:
    inputs = ", ".join(signature.input_names) or "none"
    return f"inputs: {inputs}; outputs: {', '.join(signature.output_names)}"
