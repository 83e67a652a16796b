"""GBNF grammars (llama.cpp) derived from type specs: what a constrained model may write.

The grammar describes the *text wire format* of :mod:`lmprog.format` — the same form demos are
rendered in — not a second format: a single ``Literal`` output is its bare label, a bool
``yes``/``no``, a number its digits, JSON-shaped values one-line JSON with the separators
``json.dumps`` writes (``", "`` and ``": "``), several outputs ``name: value`` lines in field
order. Each :class:`~lmprog.signature.TypeSpec` class has one entry in two registries
(``functools.singledispatch``): :func:`text_rule` (the value as a whole completion or after
``name: ``) and :func:`json_rule` (the value inside JSON). Everything a grammar accepts is read
back by the parser (``tests/test_constrain.py`` samples grammars and checks it); constraints from
``Annotated`` metadata (``Field(ge=0)``, a pattern) are left out of the grammar, so the parser may
still refuse such a value (see ``lmprog.signature._constraints``).

Numbers have a bounded digit count so that a small model cannot loop on ``0000...``; the bounds
admit every float as ``repr``/``json.dumps`` write it (up to 17 significant digits after at most
three zeros behind the point, negative exponents down to -999, which underflow harmlessly).
Positive exponents stop at 99 so that nothing the grammar admits overflows to infinity: a
float above 1e100 is outside the language (a documented limit).
"""

from __future__ import annotations

import functools
import json
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
    StrSpec,
    TupleSpec,
    TypeSpec,
    UnionSpec,
)

#: Shared terminal rules, added to a grammar when used.
BASE_RULES = {
    "int": r'"-"? ("0" | [1-9] [0-9]{0,17})',
    "number": r'"-"? ("0" | [1-9] [0-9]{0,15}) ("." [0-9]{1,20})? ([eE] ("-" [0-9]{1,3} | "+"? [0-9]{1,2}))?',
    "jstr": r'"\"" jchar* "\""',
    "jchar": r'[^"\\\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})',
    "line": r"[^\n]*",
    "text": r"[^\x00]*",
}


def literal(text: str) -> str:
    """``text`` as a GBNF string literal."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


class Grammar:
    """Rules under construction; :meth:`render` writes them with ``root`` first."""

    def __init__(self) -> None:
        self.rules: dict[str, str] = {}
        self._named: dict[int, str] = {}

    def base(self, name: str) -> str:
        """A shared terminal rule by name (``int``, ``jstr``...), added on first use."""
        if name not in self.rules:
            self.rules[name] = BASE_RULES[name]
            for dependency in ("jchar",) if name == "jstr" else ():
                self.base(dependency)
        return name

    def named(self, spec: TypeSpec, prefix: str, build: Any) -> str:
        """A rule for ``spec`` built once (records may refer to themselves)."""
        key = id(spec)
        if key in self._named:
            return self._named[key]
        name = f"{prefix}{len(self._named)}"
        self._named[key] = name
        self.rules[name] = ""  # reserved: a recursive reference sees the name
        self.rules[name] = build()
        return name

    def render(self, root: str) -> str:
        lines = [f"root ::= {root}"]
        lines += [f"{name} ::= {body}" for name, body in self.rules.items()]
        return "\n".join(lines) + "\n"


# -- a value as written after ``name: `` or as the whole completion ----------------------------
@functools.singledispatch
def text_rule(spec: TypeSpec, g: Grammar, *, line: bool) -> str:
    """The GBNF expression of ``spec`` in text form; ``line``: it must stay on one line."""
    raise TypeError(f"no grammar for {type(spec).__name__}")


@text_rule.register
def _(spec: StrSpec, g: Grammar, *, line: bool) -> str:
    return g.base("line" if line else "text")


@text_rule.register
def _(spec: IntSpec, g: Grammar, *, line: bool) -> str:
    return g.base("int")


@text_rule.register
def _(spec: FloatSpec, g: Grammar, *, line: bool) -> str:
    return g.base("number")


@text_rule.register
def _(spec: BoolSpec, g: Grammar, *, line: bool) -> str:
    return '("yes" | "no")'


@text_rule.register
def _(spec: ChoiceSpec, g: Grammar, *, line: bool) -> str:
    return "(" + " | ".join(literal(label) for label in spec.labels()) + ")"


@text_rule.register
def _(spec: UnionSpec, g: Grammar, *, line: bool) -> str:
    if spec.free_text or any(member.free_text for member in spec.members):
        return g.base("line" if line else "text")  # text reads anything (and "none" as None)
    options = [text_rule(member, g, line=line) for member in spec.members]
    return "(" + " | ".join([*options, '"none"'] if spec.optional else options) + ")"


@text_rule.register
def _(spec: ConstrainedSpec, g: Grammar, *, line: bool) -> str:
    return text_rule(spec.inner, g, line=line)  # looser: the parser checks the constraints


@text_rule.register(ListSpec)
@text_rule.register(DictSpec)
@text_rule.register(RecordSpec)
def _(spec: TypeSpec, g: Grammar, *, line: bool) -> str:
    return json_rule(spec, g)  # JSON-shaped values are one-line JSON on the wire


# -- a value inside JSON -----------------------------------------------------------------------
@functools.singledispatch
def json_rule(spec: TypeSpec, g: Grammar) -> str:
    """The GBNF expression of ``spec`` as a JSON value."""
    raise TypeError(f"no grammar for {type(spec).__name__}")


@json_rule.register
def _(spec: StrSpec, g: Grammar) -> str:
    return g.base("jstr")


@json_rule.register
def _(spec: IntSpec, g: Grammar) -> str:
    return g.base("int")


@json_rule.register
def _(spec: FloatSpec, g: Grammar) -> str:
    return g.base("number")


@json_rule.register
def _(spec: BoolSpec, g: Grammar) -> str:
    return '("true" | "false")'


@json_rule.register
def _(spec: ChoiceSpec, g: Grammar) -> str:
    return (
        "(" + " | ".join(literal(json.dumps(value, ensure_ascii=False)) for value in spec.json_values()) + ")"
    )


@json_rule.register
def _(spec: UnionSpec, g: Grammar) -> str:
    options = [json_rule(member, g) for member in spec.members]
    return "(" + " | ".join([*options, '"null"'] if spec.optional else options) + ")"


@json_rule.register
def _(spec: ConstrainedSpec, g: Grammar) -> str:
    return json_rule(spec.inner, g)


@json_rule.register
def _(spec: ListSpec, g: Grammar) -> str:
    def build() -> str:
        item = json_rule(spec.item, g)
        return f'"[" ({item} (", " {item})*)? "]"'

    return g.named(spec, "list", build)


@json_rule.register
def _(spec: TupleSpec, g: Grammar) -> str:
    if spec.variadic:
        return json_rule.dispatch(ListSpec)(spec, g)

    def build() -> str:
        items = ' ", " '.join(json_rule(item, g) for item in spec.items)
        return f'"[" {items} "]"'

    return g.named(spec, "tuple", build)


@json_rule.register
def _(spec: DictSpec, g: Grammar) -> str:
    def build() -> str:
        key = _key_rule(spec.key, g)
        pair = f'{key} ": " {json_rule(spec.value, g)}'
        return f'"{{" ({pair} (", " {pair})*)? "}}"'

    return g.named(spec, "dict", build)


def _key_rule(spec: TypeSpec, g: Grammar) -> str:
    """A dict key: a JSON string holding the key's text form (keys are str, int or options)."""
    spec = spec.base
    if isinstance(spec, ChoiceSpec):
        return (
            "(" + " | ".join(literal(json.dumps(label, ensure_ascii=False)) for label in spec.labels()) + ")"
        )
    if isinstance(spec, IntSpec):
        return f'"\\"" {g.base("int")} "\\""'
    return g.base("jstr")


@json_rule.register
def _(spec: RecordSpec, g: Grammar) -> str:
    def build() -> str:
        parts = [
            literal(json.dumps(field.key or field.name, ensure_ascii=False) + ": ")
            + " "
            + json_rule(field.spec, g)
            for field in spec.fields.values()
        ]
        return '"{" ' + ' ", " '.join(parts) + ' "}"' if parts else '"{}"'

    return g.named(spec, "record", build)
