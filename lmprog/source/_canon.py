"""Formatting-free text of code, the input of every hash.

libcst regenerates the exact text of a node; the tokenizer then keeps only what Python reads:
comments, blank lines, line breaks inside brackets, indentation width, spacing, optional trailing
commas and string quote styles do not show. The result depends on the code alone, not on the libcst
or Python version (f-strings, tokenized in pieces since 3.12, are kept whole).
"""

from __future__ import annotations

import ast
import inspect
import io
import keyword
import tokenize
from dataclasses import dataclass

import libcst as cst

_EMPTY_MODULE = cst.Module(body=[])
_SKIPPED = {tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER}
_MARKERS = {tokenize.NEWLINE: "\\n", tokenize.INDENT: "<indent>", tokenize.DEDENT: "<dedent>"}
_CLOSING = {")": "(", "]": "[", "}": "{"}
_COMPOUND = {"if", "elif", "else", "for", "while", "try", "except", "finally", "with", "def", "class"}
_COMPOUND |= {"async", "match", "case"}
_BEFORE_STATEMENT_PARENS = {"=", "return", "if", "elif", "while", "assert", "yield", "del", "import"}
_BEFORE_STATEMENT_PARENS |= {"+=", "-=", "*=", "/=", "//=", "%=", "**=", "|=", "&=", "^=", ">>=", "<<=", "@="}
_FSTRING_START = getattr(tokenize, "FSTRING_START", None)
_FSTRING_END = getattr(tokenize, "FSTRING_END", None)


def canonical(node: cst.CSTNode) -> str:
    """The normalized text of a statement or an expression."""
    code = _EMPTY_MODULE.code_for_node(node)
    is_statement = isinstance(node, cst.BaseStatement | cst.BaseSmallStatement)
    return canonical_text(code if is_statement else f"({code})")  # an expression may span lines


def canonical_text(code: str) -> str:
    """The normalized text of Python source code (statements)."""
    try:
        tokens = _significant(code)
    except (tokenize.TokenError, SyntaxError):  # pragma: no cover - libcst output always tokenizes
        return code
    tokens = _drop_statement_parens(tokens)
    out: list[str] = []
    brackets: list[_Bracket] = []
    line_head = ""  # first token of the current logical line
    one_line_suite = False
    for index, (kind, text) in enumerate(tokens):
        following = tokens[index + 1][0] if index + 1 < len(tokens) else tokenize.NEWLINE
        if kind in _MARKERS:
            out.append(_MARKERS[kind])
            if kind == tokenize.NEWLINE and one_line_suite:  # ``if x: y`` reads as a block
                out.append("<dedent>")
                one_line_suite = False
            line_head = ""
            continue
        line_head = line_head or text
        if kind == tokenize.STRING:
            at_line_start = out[-1:] in ([], ["\\n"], ["<indent>"], ["<dedent>"])
            docstring = at_line_start and following == tokenize.NEWLINE
            out.append(_string(text, docstring=docstring))
        elif kind == tokenize.NUMBER:
            out.append(_number(text))
        elif text in ("(", "[", "{"):
            brackets.append(_Bracket(text, _follows_expression(out)))
            out.append(text)
        elif text in _CLOSING and brackets:
            bracket = brackets.pop()
            if out and out[-1] == "," and not bracket.keeps_trailing_comma():
                out.pop()
            out.append(text)
        elif text == ":" and not brackets and line_head in _COMPOUND and following != tokenize.NEWLINE:
            out.extend((":", "\\n", "<indent>"))
            one_line_suite = True
        else:
            if text == "," and brackets:
                brackets[-1].commas += 1
            out.append(text)
    return " ".join(out)


def docstring_of(node: cst.FunctionDef | cst.ClassDef) -> str | None:
    """The cleaned docstring of a def or class, as ``inspect.getdoc`` would show it."""
    raw = node.get_docstring(clean=False)
    return None if raw is None else inspect.cleandoc(raw)


def header_of(node: cst.FunctionDef) -> str:
    """The normalized ``def`` line of a function: name, parameters, annotations, defaults,
    ``async``; without decorators, docstring or body."""
    bare = node.with_changes(
        decorators=(),
        leading_lines=(),
        body=cst.SimpleStatementSuite(body=[cst.Expr(cst.Ellipsis())]),
    )
    return canonical(bare)


@dataclass
class _Bracket:
    kind: str
    after_expression: bool  # a call ``f(...)`` or a subscript ``x[...]``, not a display
    commas: int = 0

    def keeps_trailing_comma(self) -> bool:
        """``(x,)`` is a tuple and ``x[a,]`` indexes with one: there the comma is meaningful."""
        one_element = self.commas == 1
        if self.kind == "(":
            return one_element and not self.after_expression
        return self.kind == "[" and one_element and self.after_expression


def _follows_expression(out: list[str]) -> bool:
    if not out:
        return False
    previous = out[-1]
    if previous in (")", "]", "}"):
        return True
    return previous.isidentifier() and not keyword.iskeyword(previous)


def _significant(code: str) -> list[tuple[int, str]]:
    """Tokens without comments and non-logical line breaks; an f-string is one STRING token."""
    tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    offsets = _line_offsets(code)
    found: list[tuple[int, str]] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if token.type in _SKIPPED:
            continue
        if token.type == _FSTRING_START:  # Python 3.12+ tokenizes f-strings in pieces
            depth, end = 1, index
            while depth and end < len(tokens):
                depth += (tokens[end].type == _FSTRING_START) - (tokens[end].type == _FSTRING_END)
                end += 1
            last = tokens[end - 1]
            start_at = offsets[token.start[0] - 1] + token.start[1]
            found.append((tokenize.STRING, code[start_at : offsets[last.end[0] - 1] + last.end[1]]))
            index = end
        else:
            found.append((token.type, token.string))
    return found


def _drop_statement_parens(tokens: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Remove parentheses around a whole statement-level expression or target (``return (x)``,
    ``y = (a + b)``, ``if (c):``, ``(a, b) = t``, ``for (k, v) in``, ``import (a, b)``), and a
    trailing comma they made optional: formatters add and remove these when splitting lines."""
    partner: dict[int, int] = {}
    commas: dict[int, int] = {}
    stack: list[int] = []
    for index, (_, text) in enumerate(tokens):
        if text in ("(", "[", "{"):
            stack.append(index)
            commas[index] = 0
        elif text in _CLOSING and stack:
            partner[stack.pop()] = index
        elif text == "," and stack:
            commas[stack[-1]] += 1
    dropped: set[int] = set()
    end: tuple[int, str] = (tokenize.NEWLINE, "")
    for open_at, close_at in partner.items():
        if tokens[open_at][1] != "(":
            continue
        before = tokens[open_at - 1] if open_at else end
        after = tokens[close_at + 1] if close_at + 1 < len(tokens) else end
        statement_end = after[0] == tokenize.NEWLINE or (after[1] == ":" and before[1] in _COMPOUND)
        if not (
            (before[1] in _BEFORE_STATEMENT_PARENS and statement_end)
            or (before[1] == "for" and after[1] == "in")
            or (before[0] in _MARKERS and after[1] == "=")
        ):
            continue
        dropped.update((open_at, close_at))
        if tokens[close_at - 1][1] == "," and (commas[open_at] >= 2 or before[1] == "import"):
            dropped.add(close_at - 1)
    return [token for index, token in enumerate(tokens) if index not in dropped]


def _string(text: str, *, docstring: bool) -> str:
    prefix = text[: len(text) - len(text.lstrip("rRbBuUfF"))]
    if "f" in prefix.lower():  # kept as written, but for prefix order and quote style
        body = text[len(prefix) :]
        quote = body[:3] if body[:3] in ('"""', "'''") else body[:1]
        return repr("f:" + "".join(sorted(prefix.lower())) + ":" + body[len(quote) : -len(quote)])
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):  # pragma: no cover - a token the tokenizer accepted
        return text
    if docstring and isinstance(value, str):  # formatters re-indent and strip docstrings
        value = "\n".join(line.rstrip() for line in inspect.cleandoc(value).splitlines()).strip()
    return repr(value)


def _number(text: str) -> str:
    try:
        return repr(ast.literal_eval(text))  # 0xFF, 1_000, 1E3 -> one spelling
    except (ValueError, SyntaxError):  # pragma: no cover
        return text


def _line_offsets(code: str) -> list[int]:
    offsets, total = [], 0
    for line in code.splitlines(keepends=True):
        offsets.append(total)
        total += len(line)
    offsets.append(total)
    return offsets
