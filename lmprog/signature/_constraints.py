"""Constraints from ``Annotated`` metadata: ``Annotated[int, Field(ge=0)]``, ``annotated_types``
(``Ge``, ``MaxLen``, ``Interval``, ``Predicate``...), pydantic's ``StringConstraints`` and its
``AfterValidator``-style validators, at the top level or nested (``list[Annotated[int, Ge(0)]]``).

:func:`constrain` wraps the spec of the annotated type in a :class:`ConstrainedSpec`: the wrapped
spec reads the value as before, then pydantic checks the constraints on the value read (with the
plain Python type of the spec, ``int`` or ``list[Any]``, so nested values are never validated
twice). A value that breaks a constraint is a :class:`~lmprog.signature.ParseFailure` marked
``validation``: the completion is retried with pydantic's message shown to the model. The prompt
mentions the constraints it can put in words (``an integer (>= 0)``); JSON schemas carry them as
keywords (``minimum``); grammars stay looser and leave them to this check.

A constraint that cannot apply to its type (``MaxLen`` on an ``int``, a pattern on a list, any
constraint on a record type, an ``annotated_types`` constraint lmprog does not know such as
``Timezone``) is refused when the function is decorated: :func:`constrain` raises
:class:`ConstraintError`, which ``_registry`` reports as an unsupported type naming the
constraint. Other metadata (a string, a ``Field`` with only a description, any object that is
neither ``annotated_types`` nor pydantic metadata) is not a constraint and is ignored.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterator, Sequence
from typing import Annotated, Any

import annotated_types as at
import pydantic
from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from lmprog.signature._failure import ParseFailure
from lmprog.signature._specs import (
    BoolSpec,
    FloatSpec,
    IntSpec,
    StrSpec,
    TypeSpec,
    UnionSpec,
)
from lmprog.signature._specs_json import DictSpec, ListSpec, RecordSpec, SetSpec, TupleSpec

_NUMERIC = (at.Gt, at.Ge, at.Lt, at.Le, at.MultipleOf)
_SIZED = (at.MinLen, at.MaxLen)
_VALIDATORS = (
    pydantic.AfterValidator,
    pydantic.BeforeValidator,
    pydantic.PlainValidator,
    pydantic.WrapValidator,
)
#: pydantic metadata attributes that only apply to text / to numbers
_TEXT_ATTRS = ("pattern", "to_lower", "to_upper", "strip_whitespace")
_NUMBER_ATTRS = ("max_digits", "decimal_places", "allow_inf_nan")


class ConstraintError(Exception):
    """A constraint that cannot apply to its type; ``_registry`` turns it into UnsupportedType."""


class ConstrainedSpec(TypeSpec):
    """A spec whose values must also satisfy ``constraints`` (Annotated metadata)."""

    def __init__(self, annotation: Any, inner: TypeSpec, constraints: Sequence[Any]) -> None:
        super().__init__(annotation)
        self.inner = inner
        self.constraints = tuple(constraints)
        self.json_types = inner.json_types
        self._adapter: TypeAdapter[Any] | None = None
        self.check_type()  # built now: a type pydantic refuses fails at decoration

    @property
    def base(self) -> TypeSpec:
        return self.inner.base

    def describe(self) -> str:
        """The constraints in words, ``>= 0, < 10`` ("" when none can be put in words)."""
        return ", ".join(filter(None, (_words(c, self.base) for c in self.constraints)))

    def noun(self) -> str:
        return _with(self.inner.noun(), self.describe())

    def hint(self) -> str:
        return _with(self.inner.hint(), self.describe())

    def reply(self) -> str:
        return self.inner.reply().replace(self.inner.noun(), self.noun(), 1)

    def shape(self, depth: int = 0) -> str:
        return self.inner.shape(depth)

    @property
    def plural(self) -> str | None:
        plural = self.inner.plural
        return None if plural is None else _with(plural, self.describe())

    def validate(self, value: Any) -> Any:
        return self.check(self.inner.validate(value))

    def parse_text(self, text: str, *, strict: bool = False) -> Any:
        return self.check(self.inner.parse_text(text, strict=strict))

    def check(self, value: Any) -> Any:
        """``value`` (already read by the inner spec) once it satisfies the constraints; a
        validator may transform it (``StringConstraints(to_lower=True)``)."""
        try:
            return self.check_type().validate_python(value)
        except ValidationError as error:
            items = error.errors(include_url=False)
            message = "; ".join(str(item["msg"]) for item in items[:3]) or str(error)
            raise ParseFailure(message, validation=True) from None

    def check_type(self) -> TypeAdapter[Any]:
        if self._adapter is None:
            self._adapter = TypeAdapter(_annotated(python_type(self.inner), self.constraints))
        return self._adapter

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_adapter": None}  # rebuilt on first use after unpickling


def constrain(spec: TypeSpec, annotation: Any, metadata: Sequence[Any]) -> TypeSpec:
    """``spec`` wrapped with the constraints found in ``metadata`` (``spec`` itself when there is
    none); raises :class:`ConstraintError` when one cannot apply to it."""
    constraints = list(_constraints_in(metadata))
    if not constraints:
        return spec
    if isinstance(spec.base, RecordSpec):
        raise ConstraintError(
            "constraints on a record type are not supported; put them on its fields "
            "(or use a validator inside the class)"
        )
    for constraint in constraints:
        _check_applies(constraint, spec.base)
    try:
        return ConstrainedSpec(annotation, spec, constraints)
    except (
        pydantic.PydanticUserError,
        pydantic.PydanticSchemaGenerationError,
        TypeError,
        ValueError,
    ) as error:
        raise ConstraintError(f"pydantic cannot apply its constraints ({error})") from None


def has_constraints(spec: TypeSpec) -> bool:
    """Whether ``spec`` or any spec inside it (items, members, record fields) is constrained."""
    return any(isinstance(s, ConstrainedSpec) for s in walk(spec))


def walk(spec: TypeSpec, seen: set[int] | None = None) -> Iterator[TypeSpec]:
    """``spec`` and every spec inside it, each once (records may refer to themselves)."""
    seen = set() if seen is None else seen
    if id(spec) in seen:
        return
    seen.add(id(spec))
    yield spec
    children: list[TypeSpec] = []
    if isinstance(spec, ConstrainedSpec):
        children = [spec.inner]
    elif isinstance(spec, UnionSpec):
        children = list(spec.members)
    elif isinstance(spec, TupleSpec):
        children = list(spec.items)
    elif isinstance(spec, ListSpec):
        children = [spec.item]
    elif isinstance(spec, DictSpec):
        children = [spec.key, spec.value]
    elif isinstance(spec, RecordSpec):
        children = [field.spec for field in spec.fields.values()]
    for child in children:
        yield from walk(child, seen)


def python_type(spec: TypeSpec) -> Any:
    """The plain Python type of the values ``spec`` reads, items left unchecked (``list[Any]``)."""
    base = spec.base
    if isinstance(base, UnionSpec):
        union = functools.reduce(operator.or_, (python_type(member) for member in base.members))
        return union | None if base.optional else union
    for kind, plain in _PLAIN:
        if isinstance(base, kind):
            return plain
    return Any


_PLAIN: tuple[tuple[type[TypeSpec], Any], ...] = (
    (BoolSpec, bool),
    (IntSpec, int),
    (FloatSpec, float),
    (StrSpec, str),
    (SetSpec, set[Any]),
    (TupleSpec, tuple[Any, ...]),
    (ListSpec, list[Any]),
    (DictSpec, dict[Any, Any]),
)


def _annotated(base: Any, constraints: Sequence[Any]) -> Any:
    return Annotated[(base, *constraints)]


def _constraints_in(metadata: Sequence[Any]) -> Iterator[Any]:
    """The constraint objects among ``Annotated`` metadata, groups (``Interval``, ``Field``)
    opened; everything that is not a constraint is skipped."""
    for item in metadata:
        if isinstance(item, FieldInfo):
            yield from _constraints_in(item.metadata)
        elif isinstance(item, at.GroupedMetadata):
            yield from _constraints_in(list(item))
        elif isinstance(item, (at.BaseMetadata, *_VALIDATORS)):
            yield item


def _check_applies(constraint: Any, base: TypeSpec) -> None:
    needs = _needs(constraint)
    if needs is None:
        return
    kinds, noun = needs
    members = list(base.members) if isinstance(base, UnionSpec) else [base]
    for member in members:
        if not isinstance(member.base, kinds):
            raise ConstraintError(
                f"the constraint {constraint!r} applies to {noun} only, not to {member.base.hint()}"
            )


def _needs(constraint: Any) -> tuple[tuple[type[TypeSpec], ...], str] | None:
    """The spec kinds a constraint applies to (None: any value)."""
    numbers = ((IntSpec, FloatSpec), "numbers")
    if isinstance(constraint, _NUMERIC):
        return numbers
    if isinstance(constraint, _SIZED):
        return (StrSpec, ListSpec, DictSpec), "text, lists, sets, tuples and dicts"
    if isinstance(constraint, (at.Predicate, at.Not, *_VALIDATORS)):
        return None
    attrs = vars(constraint) if hasattr(constraint, "__dict__") else {}
    if type(constraint).__module__.split(".")[0] == "pydantic":
        if any(attrs.get(name) is not None for name in _TEXT_ATTRS):
            return (StrSpec,), "text"
        if any(attrs.get(name) is not None for name in _NUMBER_ATTRS):
            return numbers
        return None
    raise ConstraintError(f"the constraint {constraint!r} is not supported")


def _words(constraint: Any, base: TypeSpec) -> str:
    unit = "character" if isinstance(base, StrSpec) else "item"
    if isinstance(constraint, at.Gt):
        return f"> {constraint.gt}"
    if isinstance(constraint, at.Ge):
        return f">= {constraint.ge}"
    if isinstance(constraint, at.Lt):
        return f"< {constraint.lt}"
    if isinstance(constraint, at.Le):
        return f"<= {constraint.le}"
    if isinstance(constraint, at.MultipleOf):
        return f"a multiple of {constraint.multiple_of}"
    if isinstance(constraint, at.MinLen):
        return f"at least {constraint.min_length} {unit}{'s' * (constraint.min_length != 1)}"
    if isinstance(constraint, at.MaxLen):
        return f"at most {constraint.max_length} {unit}{'s' * (constraint.max_length != 1)}"
    pattern = getattr(constraint, "pattern", None)
    return f"matching {pattern}" if isinstance(pattern, str) else ""


def keywords(constraints: Sequence[Any], json_type: Any) -> dict[str, Any]:
    """The JSON-schema keywords of ``constraints`` for a value of JSON type ``json_type``
    (``"integer"``, ``"array"``...); a constraint JSON schema cannot express is left out."""
    out: dict[str, Any] = {}
    numeric = json_type in ("integer", "number")
    sized = {"string": "Length", "array": "Items", "object": "Properties"}.get(json_type)
    for c in constraints:
        if numeric and isinstance(c, at.Gt):
            out["exclusiveMinimum"] = c.gt
        elif numeric and isinstance(c, at.Ge):
            out["minimum"] = c.ge
        elif numeric and isinstance(c, at.Lt):
            out["exclusiveMaximum"] = c.lt
        elif numeric and isinstance(c, at.Le):
            out["maximum"] = c.le
        elif numeric and isinstance(c, at.MultipleOf):
            out["multipleOf"] = c.multiple_of
        elif sized and isinstance(c, at.MinLen):
            out[f"min{sized}"] = c.min_length
        elif sized and isinstance(c, at.MaxLen):
            out[f"max{sized}"] = c.max_length
        elif json_type == "string" and isinstance(getattr(c, "pattern", None), str):
            out["pattern"] = c.pattern
    return out


def _with(noun: str, words: str) -> str:
    return f"{noun} ({words})" if words else noun
