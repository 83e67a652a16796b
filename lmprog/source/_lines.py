"""Line numbers and exact text of statements, from Python's own parser.

libcst's position metadata costs several times a parse; ``ast`` numbers every line in a fraction of
it. libcst trees stay the model of the code: the two parsers read the same text, and their
top-level statements and definitions correspond one to one, in order.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import libcst as cst

Span = tuple[int, int]  # first and last line, 1-based; a def or class starts at its first decorator


@dataclass
class LineIndex:
    tops: list[Span]  # one per libcst top-level statement
    defs: dict[str, list[Span]] = field(default_factory=dict)  # by qualname, in source order


def build(module: cst.Module, text: str) -> LineIndex | None:
    """The line index of a file; None if the two parsers disagree (then callers fall back to libcst
    position metadata)."""
    try:
        body = ast.parse(text).body
    except (SyntaxError, ValueError):
        return None
    tops: list[Span] = []
    index = 0
    for stmt in module.body:
        count = len(stmt.body) if isinstance(stmt, cst.SimpleStatementLine) else 1
        if index + count > len(body):
            return None
        first, last = body[index], body[index + count - 1]
        tops.append((_start(first), last.end_lineno or last.lineno))
        index += count
    if index != len(body):
        return None
    found = LineIndex(tops)
    _index_defs(body, "", found.defs)
    return found


def text_of(lines: Sequence[str], span: Span) -> str:
    """The lines of ``span`` with the comment lines just above, dedented by the first line's indent."""
    first, last = span
    while first > 1 and lines[first - 2].lstrip().startswith("#"):
        first -= 1
    chunk = lines[first - 1 : last]
    head = lines[span[0] - 1]
    indent = head[: len(head) - len(head.lstrip())]
    return "\n".join(line[len(indent) :] if line.startswith(indent) else line for line in chunk) + "\n"


def _start(node: ast.stmt) -> int:
    decorators = getattr(node, "decorator_list", None)
    return decorators[0].lineno if decorators else node.lineno


def _index_defs(body: list[ast.stmt], prefix: str, defs: dict[str, list[Span]]) -> None:
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            qualname = prefix + node.name
            defs.setdefault(qualname, []).append((_start(node), node.end_lineno or node.lineno))
            inner = qualname + (".<locals>." if not isinstance(node, ast.ClassDef) else ".")
            _index_defs(node.body, inner, defs)
        else:
            _index_defs(list(_nested(node)), prefix, defs)


def _nested(node: ast.stmt) -> Iterator[ast.stmt]:
    """Statements nested in a compound statement, in the order libcst lists them."""
    yield from getattr(node, "body", [])
    for handler in getattr(node, "handlers", []):
        yield from handler.body
    for case in getattr(node, "cases", []):
        yield from case.body
    yield from getattr(node, "orelse", [])
    yield from getattr(node, "finalbody", [])
