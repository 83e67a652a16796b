"""Dotprompt export: an lm_function's prompt (current instruction and demos) as a ``.prompt`` file,
the format Genkit and other Dotprompt tools read (``lmprog export``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from pydantic import TypeAdapter

from lmprog.errors import PromptFileError
from lmprog.format import render_messages
from lmprog.promptfile._atomic import atomic_write_text
from lmprog.promptfile._files import PromptFunction, State, dump_yaml, function_id, prompt_path, read


class ExportedFunction(PromptFunction, Protocol):
    """What the export reads of an lm_function besides its prompt file's keys."""

    @property
    def state(self) -> State: ...

    @property
    def temperature(self) -> float | None: ...

    @property
    def lm(self) -> object: ...


def export_dotprompt(
    fn: ExportedFunction, path: str | os.PathLike[str] | None = None, *, model: str | None = None
) -> Path:
    """Write ``fn``'s prompt, with its current instruction and demos, as a Dotprompt ``.prompt`` file.

    The YAML front matter holds the model (``model``, else the function's own LM, else the one
    recorded in its prompt file), the sampling temperature, the input and output schemas
    (Picoschema when every field fits it, else JSON Schema) and the lmprog function id and
    signature hash under ``metadata.lmprog``. The Handlebars body renders the same messages as
    lmprog: ``{{role "system"}}`` with the instruction, one user/model turn per demo, then the
    input turn, where string inputs are ``{{name}}`` and other inputs ``{{json name}}``. A
    ``History`` parameter is not an input of the prompt: Dotprompt passes a conversation as
    messages, which its ``{{history}}`` helper inserts where lmprog puts the turns (before the
    input turn). Default path: the prompt file's, with the suffix ``.prompt``.
    """
    target = Path(path) if path is not None else prompt_path(fn).with_suffix(".prompt")
    sig, state = fn.signature, fn.state
    inputs = [f for f in sig.inputs if f.name != sig.history]
    sentinels = {f.name: f"@@lmprog-input-{i}@@" for i, f in enumerate(inputs)}
    messages = render_messages(sig, sentinels, instruction=state.instruction, demos=state.demos)
    roles = {"system": "system", "user": "user", "assistant": "model"}
    body = []
    for number, message in enumerate(messages):
        text = message["content"].replace("{{", "\\{{")
        for field in inputs:
            helper = "{{%s}}" if field.annotation is str else "{{json %s}}"
            text = text.replace(sentinels[field.name], helper % field.name)
        if sig.history is not None and number == len(messages) - 1:
            body.append("{{history}}\n")
        body.append(f'{{{{role "{roles.get(message["role"], message["role"])}"}}}}\n{text}\n')
    front: dict[str, Any] = {"name": prompt_path(fn).stem}
    chosen = model or _function_model(fn)
    if chosen:
        front["model"] = chosen
    if fn.temperature is not None:
        front["config"] = {"temperature": fn.temperature}
    front["input"] = {
        "schema": _object_schema([(f.name, f.annotation, f.description, f.has_default) for f in inputs])
    }
    front["output"] = _output_spec(fn)
    front["metadata"] = {"lmprog": {"function": function_id(fn), "signature_hash": fn.signature_hash}}
    return atomic_write_text(target, f"---\n{dump_yaml(front)}---\n" + "\n".join(body))


def _function_model(fn: ExportedFunction) -> str | None:
    if isinstance(fn.lm, str):
        return fn.lm
    if fn.lm is not None:
        return str(getattr(fn.lm, "model", "")) or None
    target = prompt_path(fn)
    if target.exists():
        try:
            model = (read(target).get("provenance") or {}).get("model")
        except PromptFileError:
            return None
        return str(model) if model else None
    return None


def _output_spec(fn: ExportedFunction) -> dict[str, Any]:
    sig = fn.signature
    if sig.multi_output:
        fields = [(f.name, f.annotation, f.description, f.has_default) for f in sig.outputs]
        return {"format": "json", "schema": _object_schema(fields)}
    annotation = sig.outputs[0].annotation
    if annotation is str:
        return {"format": "text"}
    schema = _json_schema(annotation)
    structured = schema.get("type") in ("object", "array") or "$ref" in schema
    pico = _pico(schema)
    return {"format": "json" if structured else "text", "schema": pico if isinstance(pico, str) else schema}


_PICO_SCALARS = ("string", "number", "integer", "boolean", "null")


def _object_schema(fields: list[tuple[str, Any, str, bool]]) -> dict[str, Any]:
    """Picoschema for these fields when every one fits it, else a JSON Schema object."""
    props: dict[str, Any] = {}
    defs: dict[str, Any] = {}
    pico: list[tuple[str | None, Any]] = []
    for name, annotation, description, optional in fields:
        schema = _json_schema(annotation)
        defs.update(schema.pop("$defs", {}))
        if description:
            schema["description"] = description
        props[name] = schema
        pico.append(_pico_field(name + ("?" if optional else ""), schema))
    if all(key is not None for key, _ in pico):
        return {str(key): value for key, value in pico}
    out: dict[str, Any] = {"type": "object", "properties": props}
    required = [name for name, _, _, optional in fields if not optional]
    if required:
        out["required"] = required
    if defs:
        out["$defs"] = defs
    return out


def _pico_field(key: str, schema: Mapping[str, Any]) -> tuple[str | None, Any]:
    desc = schema.get("description")
    enum = schema.get("enum")
    if enum is not None and all(isinstance(v, str) for v in enum):
        return (f"{key}(enum, {desc})" if desc else f"{key}(enum)"), list(enum)
    scalar = _pico(schema)
    if isinstance(scalar, str):
        return key, f"{scalar}, {desc}" if desc else scalar
    if schema.get("type") == "array":
        item = _pico(schema.get("items") or {})
        if isinstance(item, str):
            return (f"{key}(array, {desc})" if desc else f"{key}(array)"), item
    return None, None


def _pico(schema: Mapping[str, Any]) -> str | None:
    kind = schema.get("type")
    if kind in _PICO_SCALARS and "enum" not in schema:
        return str(kind)
    return "any" if not schema else None


def _json_schema(annotation: Any) -> dict[str, Any]:
    try:
        schema = TypeAdapter(annotation).json_schema()
    except Exception:  # a type pydantic cannot describe: accept anything
        return {}
    schema.pop("title", None)
    return schema
