"""Descriptions from docstrings and source comments.

Docstrings are read with ``docstring_parser`` (Google, NumPy and reST styles, detected
automatically). Source comments are read with :mod:`ast` and :mod:`tokenize` from
``inspect.getsource``; without source (REPL, ``exec``) they are simply absent.

- ``ticket: str,  # the customer's message`` describes the parameter ``ticket``;
- ``) -> Topic:  # the ticket's topic`` describes the output;
- in a dataclass / TypedDict / model body, a string right after a field, a comment at the end of
  its line or a comment line just above it describes the field.
"""

from __future__ import annotations

import ast
import functools
import inspect
import io
import re
import textwrap
import tokenize
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import docstring_parser

_FIELD_LINE_RE = re.compile(r"\s*(?P<name>\w+)\s*(?:\([^)]*\))?\s*:\s*(?P<text>.*)")


@dataclass(frozen=True)
class DocInfo:
    """What a function docstring says: the instruction (summary and body before the sections),
    parameter descriptions, the ``Returns`` text, and per-name return descriptions (NumPy)."""

    instruction: str = ""
    params: dict[str, str] = field(default_factory=dict)
    returns: str = ""
    named_returns: dict[str, str] = field(default_factory=dict)


def parse_docstring(doc: str | None) -> DocInfo:
    if not doc or not doc.strip():
        return DocInfo()
    try:
        parsed = docstring_parser.parse(doc)
    except docstring_parser.ParseError:
        return DocInfo(instruction=doc.strip())
    parts = [part.strip() for part in (parsed.short_description, parsed.long_description) if part]
    params = {p.arg_name: one_line(p.description) for p in parsed.params if p.description}
    returns = ""
    if parsed.returns is not None:
        type_name = (parsed.returns.type_name or "").strip()
        description = parsed.returns.description or ""
        # "Returns:\n    the label: one of..." is parsed as a type "the label": keep such text.
        # Google style reads "Returns:\n    the label: one of..." as a type "the label", and
        # "reasoning: why\n    answer: what" as a type "reasoning": keep such text whole.
        whole = type_name and (not type_name.isidentifier() or "\n" in description)
        returns = f"{type_name}: {description}" if whole else description
    named = {
        r.return_name: one_line(r.description) for r in parsed.many_returns if r.return_name and r.description
    }
    return DocInfo(
        instruction="\n\n".join(parts), params=params, returns=returns.strip(), named_returns=named
    )


def field_lines(text: str, names: Iterable[str]) -> dict[str, str]:
    """``name: description`` lines (continuation lines appended) for the given names."""
    wanted = set(names)
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.split("\n"):
        match = _FIELD_LINE_RE.fullmatch(line)
        if match and match.group("name") in wanted:
            current = found.setdefault(match.group("name"), [])
            current.append(match.group("text"))
        elif current is not None and line.strip():
            current.append(line.strip())
    return {name: one_line(" ".join(parts)) for name, parts in found.items()}


def one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def signature_comments(fn: Callable[..., Any]) -> tuple[dict[str, str], str]:
    """``#`` comments on parameter lines (by parameter name) and on the return annotation line."""
    parsed = _parse_source(fn)
    if parsed is None:
        return {}, ""
    tree, comments = parsed
    node = next(
        (
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == fn.__name__
        ),
        None,
    )
    if node is None:
        return {}, ""
    returns_line = node.returns.end_lineno if node.returns is not None else None
    last_on_line: dict[int, str] = {}
    for arg in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]:
        last_on_line[arg.end_lineno or arg.lineno] = arg.arg
    params = {
        name: comments[line]
        for line, name in last_on_line.items()
        if line in comments and line != returns_line
    }
    output = comments.get(returns_line, "") if returns_line is not None else ""
    return params, output


@functools.lru_cache(maxsize=256)
def attribute_docs(cls: type) -> dict[str, str]:
    """Field descriptions written in a class body (docstring after, or comment beside/above)."""
    parsed = _parse_source(cls)
    if parsed is None:
        return {}
    tree, comments = parsed
    node = next((n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == cls.__name__), None)
    if node is None:
        return {}
    docs: dict[str, str] = {}
    body = node.body
    for index, statement in enumerate(body):
        if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
            continue
        name = statement.target.id
        following = body[index + 1] if index + 1 < len(body) else None
        if (
            isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[name] = one_line(inspect.cleandoc(following.value.value))
        elif (statement.end_lineno or statement.lineno) in comments:
            docs[name] = comments[statement.end_lineno or statement.lineno]
        elif statement.lineno - 1 in comments and _comment_only(comments, statement.lineno - 1, tree):
            docs[name] = comments[statement.lineno - 1]
    return {name: text for name, text in docs.items() if text}


def _comment_only(comments: dict[int, str], line: int, tree: ast.AST) -> bool:
    """Whether ``line`` holds only a comment (no statement ends there)."""
    return not any(getattr(n, "end_lineno", None) == line for n in ast.walk(tree) if isinstance(n, ast.stmt))


def _parse_source(obj: Any) -> tuple[ast.AST, dict[int, str]] | None:
    """The dedented source of ``obj`` parsed, with its comments by line; None without source."""
    try:
        source = textwrap.dedent(inspect.getsource(obj))
        tree = ast.parse(source)
        comments = {
            token.start[0]: token.string.lstrip("#").strip()
            for token in tokenize.generate_tokens(io.StringIO(source).readline)
            if token.type == tokenize.COMMENT
        }
    except (OSError, TypeError, SyntaxError, tokenize.TokenError, ValueError):
        return None
    return tree, {line: text for line, text in comments.items() if text}
