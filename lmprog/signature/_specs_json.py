"""Type specs for JSON-shaped values: lists, sets, tuples, dicts and records.

Records are pydantic models, dataclasses and TypedDicts. In a completion they are read from the
first balanced JSON value of the right kind (``[`` or ``{``) that validates; lists of plain
items may also come as bulleted or numbered lines, which small models often write.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ValidationError

from lmprog.signature._failure import ParseFailure
from lmprog.signature._specs import MISSING, BoolSpec, ChoiceSpec, StrSpec, TypeSpec, _NumberSpec
from lmprog.signature._text import iter_json, unfence, whole_json

_BULLET_RE = re.compile(r"\s*(?:[-*•]|\d{1,4}[.)]|\[\d{1,4}\])\s+(?P<item>\S.*)")
_MAX_DEPTH = 3


class JsonSpec(TypeSpec):
    """A value written as JSON: an array (``opener = "["``) or an object (``"{"``)."""

    opener: ClassVar[str]

    def noun(self) -> str:
        kind = "list" if self.opener == "[" else "object"
        return f"a JSON {kind} like {self.shape()}"

    def parse_text(self, text: str, *, strict: bool = False) -> Any:
        body = unfence(text)
        whole, value = whole_json(body)
        if whole:
            return self.validate(value)
        if strict:
            raise self.expected(body)
        listed = self._from_lines(body)
        if listed is not None:
            return listed
        first: ParseFailure | None = None
        for candidate in iter_json(body, self.opener):
            try:
                return self.validate(candidate)
            except ParseFailure as error:
                first = first or error
        raise first or self.expected(body)

    def _from_lines(self, body: str) -> Any | None:
        return None


class ListSpec(JsonSpec):
    opener = "["
    json_types = (list,)

    def __init__(self, annotation: Any, item: TypeSpec) -> None:
        super().__init__(annotation)
        self.item = item

    def noun(self) -> str:
        plural = self.item.plural
        return f"a JSON list of {plural}" if plural else super().noun()

    def shape(self, depth: int = 0) -> str:
        return f"[{self.item.shape(depth + 1)}, ...]"

    def validate(self, value: Any) -> Any:
        if not isinstance(value, list | tuple):
            raise ParseFailure(f"expected {self.noun()}")
        return self._collect(value)

    def _collect(self, values: Sequence[Any]) -> Any:
        out = []
        for index, item in enumerate(values):
            try:
                out.append(self.item.validate(item))
            except ParseFailure as error:
                raise error.under(f"[{index}]") from None
        return out

    def _from_lines(self, body: str) -> Any | None:
        """Items written one per line behind ``-``, ``*``, ``1.``, ``1)`` or ``[1]`` markers."""
        if not isinstance(self.item.base, StrSpec | _NumberSpec | BoolSpec | ChoiceSpec):
            return None
        items: list[Any] = []
        for line in body.split("\n"):
            if not line.strip():
                continue
            match = _BULLET_RE.fullmatch(line.rstrip())
            if match is None:
                return None
            try:
                items.append(self.item.parse_text(match.group("item"), strict=True))
            except ParseFailure:
                return None
        return self._finish(items) if items else None

    def _finish(self, items: list[Any]) -> Any:
        return items


class SetSpec(ListSpec):
    def _collect(self, values: Sequence[Any]) -> Any:
        return self._finish(super()._collect(values))

    def _finish(self, items: list[Any]) -> Any:
        return set(items)


class TupleSpec(ListSpec):
    """``tuple[X, ...]`` (``items`` of one spec, ``variadic``) or ``tuple[X, Y]``."""

    def __init__(self, annotation: Any, items: Sequence[TypeSpec], variadic: bool) -> None:
        super().__init__(annotation, items[0])
        self.items = tuple(items)
        self.variadic = variadic

    def noun(self) -> str:
        return super().noun() if self.variadic else f"a JSON list like {self.shape()}"

    def shape(self, depth: int = 0) -> str:
        if self.variadic:
            return super().shape(depth)
        return "[" + ", ".join(item.shape(depth + 1) for item in self.items) + "]"

    def validate(self, value: Any) -> Any:
        if self.variadic:
            return tuple(super().validate(value))
        if not isinstance(value, list | tuple) or len(value) != len(self.items):
            raise ParseFailure(f"expected a JSON list of {len(self.items)} items like {self.shape()}")
        out = []
        for index, (spec, item) in enumerate(zip(self.items, value, strict=True)):
            try:
                out.append(spec.validate(item))
            except ParseFailure as error:
                raise error.under(f"[{index}]") from None
        return tuple(out)

    def _from_lines(self, body: str) -> Any | None:
        return super()._from_lines(body) if self.variadic else None

    def _finish(self, items: list[Any]) -> Any:
        return tuple(items)


class DictSpec(JsonSpec):
    opener = "{"
    json_types = (dict,)

    def __init__(self, annotation: Any, key: TypeSpec, value: TypeSpec) -> None:
        super().__init__(annotation)
        self.key = key
        self.value = value

    def shape(self, depth: int = 0) -> str:
        key = '"<string>"' if isinstance(self.key, StrSpec) else f'"<{self.key.hint()}>"'
        return f"{{{key}: {self.value.shape(depth + 1)}, ...}}"

    def validate(self, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ParseFailure(f"expected {self.noun()}")
        out = {}
        for key, item in value.items():
            try:
                out[self.key.validate(key)] = self.value.validate(item)
            except ParseFailure as error:
                raise error.under(f".{key}") from None
        return out


@dataclasses.dataclass(frozen=True)
class RecordField:
    """One field of a record: ``key`` is its JSON key (a pydantic alias, else the name)."""

    name: str
    spec: TypeSpec
    annotation: Any
    required: bool
    default: Any = MISSING
    key: str = ""
    description: str = ""


class RecordSpec(JsonSpec):
    """A pydantic model, dataclass or TypedDict: a JSON object with known fields."""

    opener = "{"
    json_types = (dict,)

    def __init__(self, annotation: Any) -> None:
        super().__init__(annotation)
        self.fields: dict[str, RecordField] = {}  # filled right after creation (recursion)

    def shape(self, depth: int = 0) -> str:
        if depth >= _MAX_DEPTH:
            return "{...}"
        inner = ", ".join(f'"{f.key or f.name}": {f.spec.shape(depth + 1)}' for f in self.fields.values())
        return "{" + inner + "}"

    def validate(self, value: Any) -> Any:
        if self.is_instance(value):
            return value
        if not isinstance(value, dict):
            raise ParseFailure(f"expected a JSON object like {self.shape()}")
        return self._validate_object(value)

    def _validate_object(self, value: dict[str, Any]) -> Any:
        checked: dict[str, Any] = {}
        for field in self.fields.values():
            key = field.key or field.name
            if key in value or field.name in value:
                try:
                    checked[field.name] = field.spec.validate(
                        value[key] if key in value else value[field.name]
                    )
                except ParseFailure as error:
                    raise error.under(f".{field.name}") from None
            elif field.required:
                raise ParseFailure(f"missing key {key!r}")
        return self.construct(checked)

    def construct(self, values: Mapping[str, Any]) -> Any:
        """Build an instance from field values keyed by field name (validated already)."""
        try:
            return self._build(dict(values))
        except (ValidationError, ValueError, TypeError) as error:
            raise _invalid(error) from None

    def _build(self, values: dict[str, Any]) -> Any:
        return values

    def is_instance(self, value: Any) -> bool:
        """Whether ``value`` already is an instance (never true for a TypedDict: plain dicts)."""
        return False

    def values_of(self, instance: Any) -> dict[str, Any]:
        """Field values of an instance (or of a mapping of them), keyed by field name."""
        if isinstance(instance, Mapping):
            return {name: instance[name] for name in self.fields if name in instance}
        return {name: getattr(instance, name) for name in self.fields if hasattr(instance, name)}


class PydanticSpec(RecordSpec):
    def _validate_object(self, value: dict[str, Any]) -> Any:
        return self.construct_raw(value)

    def construct_raw(self, value: Mapping[str, Any]) -> Any:
        try:
            return self.annotation.model_validate(value)
        except (ValidationError, ValueError, TypeError) as error:
            raise _invalid(error) from None

    def _build(self, values: dict[str, Any]) -> Any:
        keyed = {}
        for name, value in values.items():
            field = self.fields.get(name)
            keyed[field.key or name if field else name] = value
        model: type[BaseModel] = self.annotation
        return model.model_validate(keyed)

    def is_instance(self, value: Any) -> bool:
        return isinstance(value, self.annotation)


class DataclassSpec(RecordSpec):
    def _build(self, values: dict[str, Any]) -> Any:
        return self.annotation(**values)

    def is_instance(self, value: Any) -> bool:
        return isinstance(value, self.annotation)


class TypedDictSpec(RecordSpec):
    def _build(self, values: dict[str, Any]) -> Any:
        return dict(values)


def _invalid(error: Exception) -> ParseFailure:
    """A short :class:`ParseFailure` from a validation error (pydantic's: located, at most three),
    marked as a validator's refusal rather than a format error."""
    if isinstance(error, ValidationError):
        items = error.errors(include_url=False)
        if items:
            paths = [
                "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in item["loc"]) for item in items
            ]
            others = "".join(
                f"; {path.lstrip('.')}: {item['msg']}"
                for path, item in zip(paths[1:3], items[1:3], strict=True)
            )
            refused = not all(_is_shape_error(str(item["type"])) for item in items)
            return ParseFailure(str(items[0]["msg"]) + others, paths[0], validation=refused)
    text = " ".join(str(error).split())
    return ParseFailure(text[:200] or type(error).__name__, validation=True)


def _is_shape_error(kind: str) -> bool:
    """A pydantic error type that means the JSON had the wrong shape (a key missing or extra, a
    wrong type), not that a validator refused a value."""
    return kind in {"missing", "extra_forbidden", "model_type", "dataclass_type"} or kind.endswith(
        ("_type", "_parsing")
    )


__all__ = [
    "DataclassSpec",
    "DictSpec",
    "JsonSpec",
    "ListSpec",
    "PydanticSpec",
    "RecordField",
    "RecordSpec",
    "SetSpec",
    "TupleSpec",
    "TypedDictSpec",
]
