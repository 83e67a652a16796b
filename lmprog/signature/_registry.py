"""From an annotation to its :class:`~lmprog.signature.TypeSpec`: a registry of annotation kinds.

Each kind is a predicate over ``(annotation, origin)`` and a factory, tried in registration
order (no if/elif chain over types). ``build_spec`` walks an annotation recursively and raises
:class:`UnsupportedType` for anything the prompt format cannot carry (``bytes``, ``Any``,
callables, arbitrary classes...), which ``_signature`` turns into a ``SignatureError``.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

import typing_extensions
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from lmprog.signature._constraints import ConstraintError, constrain
from lmprog.signature._specs import (
    MISSING,
    BoolSpec,
    ChoiceSpec,
    FloatSpec,
    IntSpec,
    StrSpec,
    TypeSpec,
    UnionSpec,
    _NumberSpec,
    choice_label,
)
from lmprog.signature._specs_json import (
    DataclassSpec,
    DictSpec,
    ListSpec,
    PydanticSpec,
    RecordField,
    RecordSpec,
    SetSpec,
    TupleSpec,
    TypedDictSpec,
)
from lmprog.signature._text import normalize_word

SUPPORTED = (
    "supported: str, int, float, bool, Literal, Enum, list[X], set[X], tuple[...], dict[str, X], "
    "X | None and unions, pydantic models, dataclasses, TypedDict"
)

_Predicate = Callable[[Any, Any], bool]
_Factory = Callable[["_Builder", Any, Any], TypeSpec]
_KINDS: list[tuple[_Predicate, _Factory]] = []
_WRAPPERS = {typing.Annotated, typing.Required, typing.NotRequired, typing_extensions.Annotated}
_WRAPPERS |= {typing_extensions.Required, typing_extensions.NotRequired, typing_extensions.ReadOnly}
_SCALARS = (StrSpec, _NumberSpec, BoolSpec, ChoiceSpec)


class UnsupportedType(Exception):
    """``annotation`` cannot be used; ``reason`` says why when there is more to say than "no",
    ``context`` where it sits (``field 'x' of Answer``), innermost first."""

    def __init__(self, annotation: Any, reason: str = "") -> None:
        self.annotation = annotation
        self.reason = reason
        self.context: list[str] = []
        super().__init__(type_name(annotation))

    def describe(self, where: str, outer: Any) -> str:
        """``parameter 'x' has unsupported type bytes (in list[bytes]); supported: ...``"""
        places = list(self.context)
        if outer is not self.annotation and type_name(outer) != type_name(self.annotation):
            places.append(f"in {type_name(outer)}")
        located = f" ({', '.join(places)})" if places else ""
        reason = f": {self.reason}" if self.reason else f"; {SUPPORTED}"
        return f"{where} has unsupported type {type_name(self.annotation)}{located}{reason}"


def build_spec(annotation: Any, namespace: Mapping[str, Any] | None = None) -> TypeSpec:
    """The spec of ``annotation``; ``namespace`` resolves string annotations of nested
    dataclasses and TypedDicts defined in a local scope."""
    return _Builder(dict(namespace or {})).build(annotation)


def record_spec(annotation: Any, namespace: Mapping[str, Any] | None = None) -> RecordSpec | None:
    """The record spec when ``annotation`` is a pydantic model, dataclass or TypedDict, else None."""
    spec = build_spec(annotation, namespace)
    return spec if isinstance(spec, RecordSpec) else None


def type_name(annotation: Any) -> str:
    """A readable name: ``bytes``, ``list[Answer]``, ``Optional[int]``."""
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    text = repr(annotation).replace("typing_extensions.", "").replace("typing.", "")
    text = _FIELD_INFO.sub(r"\1", text)  # Annotated[int, Ge(ge=0)], not the whole FieldInfo
    return re.sub(r"\b(?:[A-Za-z_]\w*\.(?:<locals>\.)?)+(?=[A-Za-z_])", "", text)


_FIELD_INFO = re.compile(r"FieldInfo\(annotation=NoneType, required=True, metadata=\[([^\]]*)\]\)")


class _Builder:
    def __init__(self, namespace: dict[str, Any]) -> None:
        self.namespace = namespace
        self.records: dict[Any, RecordSpec] = {}

    def build(self, annotation: Any, *, lenient: bool = False) -> TypeSpec:
        """The spec of ``annotation``; constraints in ``Annotated`` metadata wrap it (see
        ``_constraints``). ``lenient``: a constraint that cannot apply is left out instead of
        refused (pydantic model fields, which pydantic validates itself)."""
        outer = annotation
        metadata: list[Any] = []
        while typing.get_origin(annotation) in _WRAPPERS:
            metadata.extend(getattr(annotation, "__metadata__", ()))
            annotation = typing.get_args(annotation)[0]
        origin = typing.get_origin(annotation)
        for matches, make in _KINDS:
            if matches(annotation, origin):
                spec = make(self, annotation, origin)
                try:
                    return constrain(spec, outer, metadata) if metadata else spec
                except ConstraintError as error:
                    if lenient:
                        return spec
                    raise UnsupportedType(outer, str(error)) from None
        raise UnsupportedType(annotation)

    def hints(self, cls: type) -> dict[str, Any]:
        try:
            return typing.get_type_hints(cls, localns=self.namespace or None, include_extras=True)
        except Exception as error:  # NameError, TypeError...: any failure to resolve
            raise UnsupportedType(cls, f"cannot resolve its annotations ({error})") from error

    def field(self, owner: type, name: str, annotation: Any, *, lenient: bool = False) -> TypeSpec:
        try:
            return self.build(annotation, lenient=lenient)
        except UnsupportedType as error:
            error.context.insert(0, f"field {name!r} of {owner.__name__}")
            raise


def _kind(matches: _Predicate) -> Callable[[_Factory], _Factory]:
    def register(make: _Factory) -> _Factory:
        _KINDS.append((matches, make))
        return make

    return register


def _is_class(annotation: Any) -> bool:
    return isinstance(annotation, type) and typing.get_origin(annotation) is None


@_kind(lambda ann, origin: ann is Any)
def _any(builder: _Builder, ann: Any, origin: Any) -> TypeSpec:
    raise UnsupportedType(ann, "give a concrete type such as str")


@_kind(lambda ann, origin: isinstance(ann, str | typing.ForwardRef))
def _unresolved(builder: _Builder, ann: Any, origin: Any) -> TypeSpec:
    name = ann if isinstance(ann, str) else ann.__forward_arg__
    raise UnsupportedType(ann, f"cannot resolve the name {name!r}; define it at module level or import it")


@_kind(lambda ann, origin: ann is str)
def _str(builder: _Builder, ann: Any, origin: Any) -> TypeSpec:
    return StrSpec(ann)


@_kind(lambda ann, origin: ann is int)
def _int(builder: _Builder, ann: Any, origin: Any) -> TypeSpec:
    return IntSpec(ann)


@_kind(lambda ann, origin: ann is float)
def _float(builder: _Builder, ann: Any, origin: Any) -> TypeSpec:
    return FloatSpec(ann)


@_kind(lambda ann, origin: ann is bool)
def _bool(builder: _Builder, ann: Any, origin: Any) -> TypeSpec:
    return BoolSpec(ann)


@_kind(lambda ann, origin: origin is typing.Literal or origin is typing_extensions.Literal)
def _literal(builder: _Builder, ann: Any, origin: Any) -> TypeSpec:
    values = typing.get_args(ann)
    options = [value for value in values if value is not None]
    for value in options:
        if not isinstance(value, str | int | enum.Enum):
            raise UnsupportedType(
                ann, f"Literal options must be str, int, bool or Enum members, not {value!r}"
            )
    if not options:
        raise UnsupportedType(ann, "give at least one option that is not None")
    spec = ChoiceSpec(ann, options, _choice_keys(ann, options))
    return UnionSpec(ann, [spec], optional=True) if None in values else spec


@_kind(lambda ann, origin: _is_class(ann) and issubclass(ann, enum.Enum))
def _enum(builder: _Builder, ann: Any, origin: Any) -> TypeSpec:
    members = list(ann)
    if not members:
        raise UnsupportedType(ann, "the Enum has no members")
    for member in members:
        if not isinstance(member.value, str | int | float):
            raise UnsupportedType(ann, f"Enum values must be str, int or float, not {member.value!r}")
    keys = _choice_keys(ann, members)
    for member in members:
        keys.setdefault(normalize_word(member.name), member)
    return ChoiceSpec(ann, members, keys)


def _choice_keys(ann: Any, options: list[Any]) -> dict[str, Any]:
    keys: dict[str, Any] = {}
    for option in options:
        key = normalize_word(choice_label(option))
        if key in keys:
            raise UnsupportedType(ann, f"options {keys[key]!r} and {option!r} read the same to a model")
        keys[key] = option
    for option in options:
        if isinstance(option, bool):
            keys.setdefault(str(option).lower(), option)
    return keys


@_kind(lambda ann, origin: origin is typing.Union or origin is types.UnionType)
def _union(builder: _Builder, ann: Any, origin: Any) -> TypeSpec:
    optional = False
    members: list[TypeSpec] = []
    for arg in typing.get_args(ann):
        if arg is type(None):
            optional = True
            continue
        spec = builder.build(arg)
        if isinstance(spec, UnionSpec):
            optional = optional or spec.optional
            members.extend(spec.members)
        else:
            members.append(spec)
    return UnionSpec(ann, members, optional)


def _generic(*kinds: Any) -> _Predicate:
    return lambda ann, origin: ann in kinds or origin in kinds


@_kind(_generic(list, set))
def _list(builder: _Builder, ann: Any, origin: Any) -> TypeSpec:
    args = typing.get_args(ann)
    kind = origin or ann
    if not args:
        raise UnsupportedType(ann, f"give the item type, e.g. {kind.__name__}[str]")
    item = builder.build(args[0])
    if kind is set:
        if not isinstance(item.base, _SCALARS):
            raise UnsupportedType(ann, "set items must be str, int, float, bool, Literal or Enum; use a list")
        return SetSpec(ann, item)
    return ListSpec(ann, item)


@_kind(_generic(tuple))
def _tuple(builder: _Builder, ann: Any, origin: Any) -> TypeSpec:
    args = typing.get_args(ann)
    if not args or args == ((),):
        raise UnsupportedType(ann, "give the item types, e.g. tuple[str, int] or tuple[str, ...]")
    if len(args) == 2 and args[1] is Ellipsis:
        return TupleSpec(ann, [builder.build(args[0])], variadic=True)
    return TupleSpec(ann, [builder.build(arg) for arg in args], variadic=False)


@_kind(_generic(dict))
def _dict(builder: _Builder, ann: Any, origin: Any) -> TypeSpec:
    args = typing.get_args(ann)
    if len(args) != 2:
        raise UnsupportedType(ann, "give the key and value types, e.g. dict[str, int]")
    key = builder.build(args[0])
    if not isinstance(key.base, StrSpec | IntSpec | ChoiceSpec):
        raise UnsupportedType(ann, "dict keys must be str, int, Literal or Enum")
    return DictSpec(ann, key, builder.build(args[1]))


@_kind(lambda ann, origin: _is_class(ann) and issubclass(ann, BaseModel))
def _pydantic(builder: _Builder, ann: Any, origin: Any) -> TypeSpec:
    if ann in builder.records:
        return builder.records[ann]
    spec = builder.records[ann] = PydanticSpec(ann)
    for name, info in ann.model_fields.items():
        required = info.is_required()
        default: Any = MISSING
        if info.default is not PydanticUndefined:
            default = info.default
        elif info.default_factory is not None:
            default = _call_factory(info.default_factory)
        alias = info.validation_alias if isinstance(info.validation_alias, str) else info.alias
        # the field's constraints (pydantic keeps them apart) are checked as its value is read
        annotated = typing.Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        spec.fields[name] = RecordField(
            name=name,
            spec=builder.field(ann, name, annotated, lenient=True),
            annotation=info.annotation,
            required=required,
            default=default,
            key=alias if isinstance(alias, str) else name,
            description=info.description or "",
        )
    return spec


@_kind(lambda ann, origin: _is_class(ann) and dataclasses.is_dataclass(ann))
def _dataclass(builder: _Builder, ann: Any, origin: Any) -> TypeSpec:
    if ann in builder.records:
        return builder.records[ann]
    spec = builder.records[ann] = DataclassSpec(ann)
    hints = builder.hints(ann)
    for item in dataclasses.fields(ann):
        if not item.init:
            continue
        default: Any = MISSING
        if item.default is not dataclasses.MISSING:
            default = item.default
        elif item.default_factory is not dataclasses.MISSING:
            default = _call_factory(item.default_factory)
        annotation = hints.get(item.name, item.type)
        spec.fields[item.name] = RecordField(
            name=item.name,
            spec=builder.field(ann, item.name, annotation),
            annotation=annotation,
            required=item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING,
            default=default,
            key=item.name,
            description=str(item.metadata.get("description", "")),
        )
    return spec


@_kind(lambda ann, origin: typing.is_typeddict(ann) or typing_extensions.is_typeddict(ann))
def _typeddict(builder: _Builder, ann: Any, origin: Any) -> TypeSpec:
    if ann in builder.records:
        return builder.records[ann]
    spec = builder.records[ann] = TypedDictSpec(ann)
    required_keys: frozenset[str] = getattr(ann, "__required_keys__", frozenset())
    for name, annotation in builder.hints(ann).items():
        spec.fields[name] = RecordField(
            name=name,
            spec=builder.field(ann, name, annotation),
            annotation=annotation,
            required=name in required_keys,
            key=name,
        )
    return spec


def _call_factory(factory: Callable[..., Any]) -> Any:
    try:
        return factory()
    except Exception:  # a factory that needs arguments or fails: the field still has a default
        return MISSING
