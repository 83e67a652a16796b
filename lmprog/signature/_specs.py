"""Type specs: what lmprog knows about one supported annotation.

A :class:`TypeSpec` describes one annotation to a model (``noun``, ``hint``, ``shape``), reads it
from a completion fragment (``parse_text``) and validates a JSON-decoded value (``validate``).
Specs are built once, when an lm_function is decorated (see ``_registry``), so parsing
never inspects annotations again. This module holds the base class and the scalar kinds (text,
numbers, yes/no, options) plus unions; ``_specs_json`` holds the JSON-shaped kinds.

Validation is lenient the way models need (``"42"`` for an integer, options compared without
case or punctuation, a number where text is expected) but never guesses between two readings:
an ambiguous answer is an error the model is asked to fix. Nothing here executes model output.
"""

from __future__ import annotations

import enum
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

from lmprog.signature._failure import ParseFailure
from lmprog.signature._text import (
    NONE_WORDS,
    clean_text,
    normalize_word,
    numbers_in,
    strict_number,
    to_number,
    unfence,
)

#: How many times a lone number may be repeated in a sentence and still be read as the answer.
_MAX_REPEATS = 8
_BOOL_WORDS = {"yes": True, "true": True, "no": False, "false": False}


class _Missing(enum.Enum):
    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"


#: Marks "no default value" (a field that must be given).
MISSING = _Missing.MISSING


def snippet(value: object, limit: int = 60) -> str:
    """A short quoted view of a bad value for error messages (safe for any value)."""
    if isinstance(value, str):
        text = value[: limit * 4]
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)[: limit * 4]
        except (ValueError, TypeError, RecursionError):
            text = type(value).__name__
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


class TypeSpec(ABC):
    """One supported annotation. Subclasses are immutable once built (records fill their fields
    right after creation so that recursive models can refer to themselves)."""

    #: Free text is always a valid value (``str``): parsing such a spec never fails.
    free_text: ClassVar[bool] = False
    #: A value is one short answer (a number, yes or no, an option): a reply of a few dozen
    #: tokens holds it, so an lm_function answering with one such output caps its completions.
    short: ClassVar[bool] = False
    #: Python types of JSON values that match this spec exactly (used to order union members).
    json_types: tuple[type, ...] = ()

    def __init__(self, annotation: Any) -> None:
        self.annotation = annotation

    @abstractmethod
    def noun(self) -> str:
        """What to reply with, as in "Reply with {noun} only." (``an integer``)."""

    @property
    def base(self) -> TypeSpec:
        """The spec that reads the values: itself, or the one a constraint wraps."""
        return self

    def hint(self) -> str:
        """The placeholder in a ``name: <hint>`` line: the noun without its article."""
        noun = self.noun()
        for article in ("a ", "an ", "the "):
            if noun.startswith(article):
                return noun[len(article) :]
        return noun

    def reply(self) -> str:
        """The reply-format sentence for a single output of this type."""
        return f"Reply with {self.noun()} only."

    @abstractmethod
    def shape(self, depth: int = 0) -> str:
        """Compact JSON-shape notation used inside structured outputs (``[string, ...]``)."""

    @property
    def plural(self) -> str | None:
        """ "integers" for "a JSON list of integers"; None when a shape reads better."""
        return None

    @abstractmethod
    def validate(self, value: Any) -> Any:
        """Turn a JSON-decoded value into a value of the annotation, or raise :class:`ParseFailure`."""

    @abstractmethod
    def parse_text(self, text: str, *, strict: bool = False) -> Any:
        """Read a completion fragment. ``strict`` accepts only the plain written form (used for
        union members); lenient mode also finds the value inside a sentence."""

    def expected(self, text: str) -> ParseFailure:
        return ParseFailure(f"expected {self.noun()}, got {snippet(text)}")


class StrSpec(TypeSpec):
    free_text = True
    json_types = (str,)

    def noun(self) -> str:
        return "the text"

    def shape(self, depth: int = 0) -> str:
        return "string"

    @property
    def plural(self) -> str:
        return "strings"

    def validate(self, value: Any) -> Any:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise ParseFailure(f"expected a string, got {snippet(value)}")

    def parse_text(self, text: str, *, strict: bool = False) -> Any:
        return clean_text(text)


class _NumberSpec(TypeSpec):
    integral: ClassVar[bool]
    short = True

    def _convert(self, number: float | int | None, source: Any) -> Any:
        if number is None:
            if isinstance(source, str):
                raise self.expected(source)
            raise ParseFailure(f"expected {self.noun()}")
        if not self.integral:
            try:
                return float(number)
            except OverflowError:
                raise ParseFailure(f"number out of range: {snippet(source)}") from None
        if isinstance(number, float):
            if not number.is_integer():
                raise ParseFailure(f"expected {self.noun()}, got {number!r}")
            return int(number)
        return number

    def validate(self, value: Any) -> Any:
        if isinstance(value, bool):
            raise ParseFailure(f"expected {self.noun()}, got {snippet(value)}")
        if isinstance(value, int):
            return self._convert(value, value)
        if isinstance(value, float):
            return self._convert(value if math.isfinite(value) else None, value)
        if isinstance(value, str):
            return self._convert(strict_number(value), value)
        raise ParseFailure(f"expected {self.noun()}, got {snippet(value)}")

    def parse_text(self, text: str, *, strict: bool = False) -> Any:
        body = clean_text(text)
        number = strict_number(body)
        if number is None and not strict:
            # a sentence holding one number, possibly repeated ("42. The answer is 42.")
            tokens = numbers_in(body, limit=_MAX_REPEATS + 1)
            found = {to_number(token) for token in tokens}
            if len(found) == 1 and len(tokens) <= _MAX_REPEATS:
                number = found.pop()
            elif tokens:
                raise ParseFailure(f"expected {self.noun()} only, got several numbers in {snippet(body)}")
        return self._convert(number, body)


class IntSpec(_NumberSpec):
    integral = True
    json_types = (int,)

    def noun(self) -> str:
        return "an integer"

    def shape(self, depth: int = 0) -> str:
        return "integer"

    @property
    def plural(self) -> str:
        return "integers"


class FloatSpec(_NumberSpec):
    integral = False
    json_types = (float,)

    def noun(self) -> str:
        return "a number"

    def shape(self, depth: int = 0) -> str:
        return "number"

    @property
    def plural(self) -> str:
        return "numbers"


class BoolSpec(TypeSpec):
    json_types = (bool,)
    short = True

    def noun(self) -> str:
        return "yes or no"

    def shape(self, depth: int = 0) -> str:
        return "true | false"

    def validate(self, value: Any) -> Any:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and normalize_word(value) in _BOOL_WORDS:
            return _BOOL_WORDS[normalize_word(value)]
        raise ParseFailure(f"expected true or false, got {snippet(value)}")

    def parse_text(self, text: str, *, strict: bool = False) -> Any:
        word = normalize_word(clean_text(text))
        if word in _BOOL_WORDS:
            return _BOOL_WORDS[word]
        if not strict:
            seen = {value for key, value in _BOOL_WORDS.items() if _has_word(word, key)}
            if len(seen) == 1:
                return seen.pop()
        raise self.expected(text)


class ChoiceSpec(TypeSpec):
    """``Literal[...]`` options or the members of an ``Enum``; compared as normalized text."""

    short = True

    def __init__(self, annotation: Any, options: Sequence[Any], keys: dict[str, Any]) -> None:
        super().__init__(annotation)
        self.options = tuple(options)
        self.keys = keys  # normalized text -> option (values first, then aliases and enum names)
        self.json_types = tuple({type(_plain(option)) for option in self.options})

    def labels(self) -> list[str]:
        return [choice_label(option) for option in self.options]

    def json_values(self) -> list[Any]:
        """The options as JSON values (an enum by its value)."""
        return [_plain(option) for option in self.options]

    def noun(self) -> str:
        return "exactly one of: " + ", ".join(self.labels())

    def hint(self) -> str:
        return "one of: " + ", ".join(self.labels())

    def reply(self) -> str:
        return f"Reply with {self.noun()}."

    def shape(self, depth: int = 0) -> str:
        return " | ".join(json.dumps(value, ensure_ascii=False) for value in self.json_values())

    def validate(self, value: Any) -> Any:
        for option in self.options:
            if type(value) is type(option) and value == option:
                return option
        if isinstance(value, str | int | float) and normalize_word(str(value)) in self.keys:
            return self.keys[normalize_word(str(value))]
        raise ParseFailure(f"expected {self.noun()}, got {snippet(value)}")

    def parse_text(self, text: str, *, strict: bool = False) -> Any:
        body = normalize_word(clean_text(text))
        if body in self.keys:
            return self.keys[body]
        if not strict:
            mentioned = {id(option): option for key, option in self.keys.items() if _has_word(body, key)}
            if len(mentioned) == 1:
                return next(iter(mentioned.values()))
        raise self.expected(text)


class UnionSpec(TypeSpec):
    """``A | B | None``. Members are tried in a fixed order: exact forms first, free text last."""

    def __init__(self, annotation: Any, members: Sequence[TypeSpec], optional: bool) -> None:
        super().__init__(annotation)
        self.members = tuple(sorted(members, key=lambda spec: spec.free_text))
        self.optional = optional
        self.json_types = tuple(t for member in self.members for t in member.json_types)

    def noun(self) -> str:
        nouns = " or ".join(member.noun() for member in self.members)
        return f"{nouns}, or none" if self.optional else nouns

    def hint(self) -> str:
        hints = " or ".join(member.hint() for member in self.members)
        return f"{hints}, or none" if self.optional else hints

    def reply(self) -> str:
        return f"Reply with {self.noun()}."

    def shape(self, depth: int = 0) -> str:
        shapes = [member.shape(depth) for member in self.members]
        return " | ".join([*shapes, "null"] if self.optional else shapes)

    def validate(self, value: Any) -> Any:
        if value is None and self.optional:
            return None
        exact = [m for m in self.members if type(value) in m.json_types]
        first: ParseFailure | None = None
        for member in [*exact, *(m for m in self.members if m not in exact)]:
            try:
                return member.validate(value)
            except ParseFailure as error:
                first = first or error
        raise first or ParseFailure(f"expected {self.noun()}")

    def parse_text(self, text: str, *, strict: bool = False) -> Any:
        if self.optional and is_none_text(text):
            return None
        for member in self.members:
            try:
                return member.parse_text(text, strict=True)
            except ParseFailure:
                continue
        if strict:
            raise self.expected(text)
        first: ParseFailure | None = None
        for member in self.members:
            try:
                return member.parse_text(text)
            except ParseFailure as error:
                first = first or error
        raise first or self.expected(text)


def is_none_text(text: str) -> bool:
    """Whether a fragment says "no value" (``none``, ``null``, nothing). A JSON-quoted
    ``"none"`` is the string, not the absence of one."""
    return unfence(text).strip("*_`.").strip().casefold() in NONE_WORDS


def choice_label(option: Any) -> str:
    """How an option is written on the wire: the enum value or the literal, as text."""
    plain = _plain(option)
    if isinstance(plain, bool):
        return "yes" if plain else "no"
    return plain if isinstance(plain, str) else json.dumps(plain)


def _plain(option: Any) -> Any:
    return option.value if isinstance(option, enum.Enum) else option


def _has_word(text: str, word: str) -> bool:
    """``word`` occurs in ``text`` delimited by non-word characters (both already normalized)."""
    if not word:
        return False
    start = text.find(word)
    while start >= 0:
        end = start + len(word)
        before_ok = start == 0 or not (text[start - 1].isalnum() or text[start - 1] == "_")
        after_ok = end == len(text) or not (text[end].isalnum() or text[end] == "_")
        if before_ok and after_ok:
            return True
        start = text.find(word, start + 1)
    return False
