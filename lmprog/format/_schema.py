"""JSON schemas derived from type specs, for providers with structured outputs.

One registry entry per :class:`~lmprog.signature.TypeSpec` class (``functools.singledispatch``), the
twin of ``lmprog.format._grammar.json_rule``: both describe a value as JSON and both are derived
from the specs the parser validates with. Records become ``$defs`` entries referenced by
``$ref`` (so recursive models work), with every field listed in ``required`` and no other
properties (what OpenAI's strict mode asks for; an optional field is then sent as ``null``).
Constraints from ``Annotated`` metadata become keywords (``minimum``, ``maxLength``, ``pattern``...).
"""

from __future__ import annotations

import functools
import re
from typing import Any

from lmprog.signature import (
    BoolSpec,
    ChoiceSpec,
    ConstrainedSpec,
    DictSpec,
    FloatSpec,
    IntSpec,
    ListSpec,
    RecordSpec,
    SetSpec,
    StrSpec,
    TupleSpec,
    TypeSpec,
    UnionSpec,
    constraint_keywords,
)


class Schemas:
    """Collects ``$defs`` while a schema is derived."""

    def __init__(self) -> None:
        self.defs: dict[str, dict[str, Any]] = {}
        self._names: dict[int, str] = {}

    def record(self, spec: RecordSpec) -> dict[str, Any]:
        key = id(spec)
        if key not in self._names:
            base = re.sub(r"[^A-Za-z0-9_]", "_", getattr(spec.annotation, "__name__", "Record"))
            name = base if base not in self.defs else f"{base}_{len(self.defs)}"
            self._names[key] = name
            self.defs[name] = {}  # reserved: a recursive reference sees the name
            self.defs[name] = object_schema(
                {field.key or field.name: value_schema(field.spec, self) for field in spec.fields.values()}
            )
        return {"$ref": f"#/$defs/{self._names[key]}"}

    def finish(self, schema: dict[str, Any]) -> dict[str, Any]:
        """``schema`` with the collected ``$defs`` attached."""
        return {**schema, "$defs": dict(self.defs)} if self.defs else schema


def object_schema(properties: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A closed object with every property required."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


@functools.singledispatch
def value_schema(spec: TypeSpec, schemas: Schemas) -> dict[str, Any]:
    """The JSON schema of one value of ``spec``."""
    raise TypeError(f"no JSON schema for {type(spec).__name__}")


@value_schema.register
def _(spec: StrSpec, schemas: Schemas) -> dict[str, Any]:
    return {"type": "string"}


@value_schema.register
def _(spec: IntSpec, schemas: Schemas) -> dict[str, Any]:
    return {"type": "integer"}


@value_schema.register
def _(spec: FloatSpec, schemas: Schemas) -> dict[str, Any]:
    return {"type": "number"}


@value_schema.register
def _(spec: BoolSpec, schemas: Schemas) -> dict[str, Any]:
    return {"type": "boolean"}


@value_schema.register
def _(spec: ChoiceSpec, schemas: Schemas) -> dict[str, Any]:
    return {"enum": spec.json_values()}


@value_schema.register
def _(spec: UnionSpec, schemas: Schemas) -> dict[str, Any]:
    options = [value_schema(member, schemas) for member in spec.members]
    if spec.optional:
        options.append({"type": "null"})
    return options[0] if len(options) == 1 else {"anyOf": options}


@value_schema.register
def _(spec: ListSpec, schemas: Schemas) -> dict[str, Any]:
    return {"type": "array", "items": value_schema(spec.item, schemas)}


@value_schema.register
def _(spec: SetSpec, schemas: Schemas) -> dict[str, Any]:
    return {"type": "array", "items": value_schema(spec.item, schemas), "uniqueItems": True}


@value_schema.register
def _(spec: TupleSpec, schemas: Schemas) -> dict[str, Any]:
    if spec.variadic:
        return {"type": "array", "items": value_schema(spec.item, schemas)}
    n = len(spec.items)
    items = [value_schema(item, schemas) for item in spec.items]
    return {"type": "array", "prefixItems": items, "minItems": n, "maxItems": n}


@value_schema.register
def _(spec: DictSpec, schemas: Schemas) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "additionalProperties": value_schema(spec.value, schemas)}
    key = spec.key.base  # a constraint on the keys is left to the parser
    if isinstance(key, ChoiceSpec):
        schema["propertyNames"] = {"enum": key.labels()}
    elif isinstance(key, IntSpec):
        schema["propertyNames"] = {"pattern": "^-?[0-9]+$"}
    return schema


@value_schema.register
def _(spec: RecordSpec, schemas: Schemas) -> dict[str, Any]:
    return schemas.record(spec)


@value_schema.register
def _(spec: ConstrainedSpec, schemas: Schemas) -> dict[str, Any]:
    return with_keywords(value_schema(spec.inner, schemas), spec.constraints)


def with_keywords(schema: dict[str, Any], constraints: tuple[Any, ...]) -> dict[str, Any]:
    """``schema`` with the JSON-schema keywords of ``constraints`` (``minimum``, ``maxLength``...)
    added where its type takes them (each option of an ``anyOf``)."""
    if "anyOf" in schema:
        return {**schema, "anyOf": [with_keywords(option, constraints) for option in schema["anyOf"]]}
    return {**schema, **constraint_keywords(constraints, schema.get("type"))}
