"""Parsed source files: a content-keyed cache of libcst trees, their definitions and bindings.

A file is parsed once per content. Line numbers and exact text come from ``lines`` (Python's
parser, fast), with libcst position metadata as the fallback.
"""

from __future__ import annotations

import linecache
import os
import site
import sys
import sysconfig
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import Any

import libcst as cst
from libcst.metadata import CodeRange, MetadataWrapper, PositionProvider

from lmprog.source._lines import LineIndex, Span, text_of
from lmprog.source._lines import build as build_line_index

_CACHE_SIZE = 512
_CODE_CACHE_SIZE = 4096


@dataclass
class DefInfo:
    """A ``def`` or ``class`` statement, with its runtime-style qualified name."""

    qualname: str
    node: cst.FunctionDef | cst.ClassDef
    top: int  # index of the top-level statement that holds it
    parent: DefInfo | None


@dataclass
class Binding:
    """How a module-level name is bound. ``kind`` is ``def``, ``assign``, ``import`` (``target`` is a
    module name) or ``from`` (``target`` is a module name, ``attr`` the imported name, ``level`` the
    number of leading dots)."""

    kind: str
    top: int
    stmt: cst.CSTNode | None = None
    info: DefInfo | None = None
    target: str = ""
    attr: str = ""
    level: int = 0


@dataclass
class SourceFile:
    path: str
    text: str
    module: cst.Module
    defs: dict[str, list[DefInfo]] = field(default_factory=dict)
    bindings: dict[str, Binding] = field(default_factory=dict)
    _positions: dict[int, Mapping[cst.CSTNode, CodeRange]] = field(default_factory=dict)
    _code: dict[int, str] = field(default_factory=dict)
    _nodes: set[int] = field(default_factory=set)  # ids of indexed nodes, safe as cache keys
    _def_of: dict[int, DefInfo] = field(default_factory=dict)
    _top_of: dict[int, int] = field(default_factory=dict)  # module-level statement -> top index
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @cached_property
    def lines(self) -> list[str]:
        return self.text.splitlines()

    def find(self, qualname: str, line: int | None = None) -> DefInfo | None:
        """The definition of ``qualname``; with several (conditional definitions), the one starting
        at ``line``, else the last one (the one Python keeps)."""
        infos = self.defs.get(qualname)
        if not infos:
            return None
        if len(infos) > 1 and line is not None:
            for info in infos:
                if self.start_line(info.node, info.top) == line:
                    return info
        return infos[-1]

    def start_line(self, node: cst.CSTNode, top: int) -> int:
        """The first line of ``node`` (its first decorator for a def or class)."""
        span = self._span(node, top)
        return span[0] if span is not None else self.range(node, top)[0]

    def range(self, node: cst.CSTNode, top: int) -> tuple[int, int]:
        """First and last line of ``node``, which lies in top-level statement ``top``."""
        span = self._span(node, top)
        if span is not None:
            return span
        positions = self._top_positions(top)
        start_node: cst.CSTNode = node
        if isinstance(node, cst.FunctionDef | cst.ClassDef) and node.decorators:
            start_node = node.decorators[0]
        offset = self._top_first_line(top) - 1
        return positions[start_node].start.line + offset, positions[node].end.line + offset

    def find_line(self, text: str, start: int) -> int | None:
        """The first line at or after ``start`` containing ``text``."""
        lines = self.lines
        for number in range(max(start, 1), len(lines) + 1):
            if text in lines[number - 1]:
                return number
        return None

    def code(self, node: cst.CSTNode) -> str:
        """The exact text of a statement, with the comments just above it, dedented."""
        key = id(node)
        text = self._code.get(key)
        if text is None:
            span = self._span(node, -1)
            if span is not None:
                text = text_of(self.lines, span)
            elif isinstance(node, cst.BaseStatement):
                text = self.module.with_changes(body=[node], header=(), footer=()).code.strip("\n") + "\n"
            else:
                text = self.module.code_for_node(node).strip("\n") + "\n"
            if len(self._code) < _CODE_CACHE_SIZE and key in self._nodes:
                self._code[key] = text
        return text

    @cached_property
    def _line_index(self) -> LineIndex | None:
        return build_line_index(self.module, self.text)

    def _span(self, node: cst.CSTNode, top: int) -> Span | None:
        """Lines of an indexed def or class, or of a top-level statement, from ``ast``."""
        index = self._line_index
        if index is None:
            return None
        info = self._def_of.get(id(node))
        if info is not None:
            spans = index.defs.get(info.qualname, [])
            position = next(i for i, other in enumerate(self.defs[info.qualname]) if other is info)
            return spans[position] if position < len(spans) else None
        if 0 <= top < len(index.tops) and node is self.module.body[top]:
            return index.tops[top]
        top = self._top_of.get(id(node), -1)
        return index.tops[top] if top >= 0 else None

    def _top_first_line(self, top: int) -> int:
        """The first line of a top-level statement's text, comments above it included."""
        stmt = self.module.body[top]
        index = self._line_index
        if index is not None:
            return index.tops[top][0] - len(getattr(stmt, "leading_lines", ()))
        line = 1 + len(self.module.header)  # slower, exact: count generated lines
        for before in self.module.body[:top]:
            line += self.module.code_for_node(before).count("\n")
        return line

    def _top_positions(self, top: int) -> Mapping[cst.CSTNode, CodeRange]:
        with self._lock:
            positions = self._positions.get(top)
            if positions is None:
                mini = self.module.with_changes(body=[self.module.body[top]], header=(), footer=())
                positions = MetadataWrapper(mini, unsafe_skip_copy=True).resolve(PositionProvider)
                self._positions[top] = positions
            return positions


_files: OrderedDict[str, SourceFile] = OrderedDict()
_files_lock = threading.Lock()


def clear_cache() -> None:
    """Forget every parsed file (the cache is keyed by content, so this is only about memory)."""
    with _files_lock:
        _files.clear()


def read_source(path: str, namespace: Mapping[str, Any] | None = None) -> str | None:
    """The current text of a file, or of a pseudo-file that ``linecache`` knows (IPython cells);
    None when there is no source (REPL, ``exec``)."""
    linecache.checkcache(path)
    globals_ = namespace if namespace is None or isinstance(namespace, dict) else dict(namespace)
    lines = linecache.getlines(path, globals_)
    return "".join(lines) if lines else None


def load(path: str, namespace: Mapping[str, Any] | None = None) -> SourceFile | None:
    """The parsed file at ``path`` (None without source); raises ``libcst.ParserSyntaxError``."""
    text = read_source(path, namespace)
    if text is None:
        return None
    with _files_lock:
        cached = _files.get(path)
        if cached is not None and cached.text == text:
            _files.move_to_end(path)
            return cached
    parsed = _index(SourceFile(path=path, text=text, module=cst.parse_module(text)))
    with _files_lock:
        _files[path] = parsed
        while len(_files) > _CACHE_SIZE:
            _files.popitem(last=False)
    return parsed


@cache
def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots.update(site.getsitepackages() if hasattr(site, "getsitepackages") else [])
    roots.add(site.getusersitepackages())
    roots.add(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # lmprog itself
    roots.update({sys.base_prefix + os.sep + "lib", sys.prefix + os.sep + "lib"})
    return tuple(sorted({os.path.realpath(r) for r in roots if r}))


@cache
def is_project_file(path: str) -> bool:
    """True for the user's own files: a real file outside the standard library, site-packages and
    lmprog. Pseudo-files (``<string>``, ``<stdin>``) are not files and answer False."""
    if not path or path.startswith("<"):
        return False
    real = os.path.realpath(path)
    parts = real.split(os.sep)
    if "site-packages" in parts or "dist-packages" in parts:
        return False
    return not any(real == root or real.startswith(root + os.sep) for root in _library_roots())


def _index(sf: SourceFile) -> SourceFile:
    for top, stmt in enumerate(sf.module.body):
        _index_block(sf, [stmt], top, "", None, module_level=True)
    return sf


def _index_block(
    sf: SourceFile, stmts: Any, top: int, prefix: str, parent: DefInfo | None, *, module_level: bool
) -> None:
    for stmt in stmts:
        if isinstance(stmt, cst.FunctionDef | cst.ClassDef):
            qualname = prefix + stmt.name.value
            info = DefInfo(qualname, stmt, top, parent)
            sf.defs.setdefault(qualname, []).append(info)
            sf._nodes.add(id(stmt))
            sf._def_of[id(stmt)] = info
            if module_level:
                sf.bindings[stmt.name.value] = Binding("def", top, stmt, info)
            inner = qualname + (".<locals>." if isinstance(stmt, cst.FunctionDef) else ".")
            _index_block(sf, _suite(stmt.body), top, inner, info, module_level=False)
        elif isinstance(stmt, cst.SimpleStatementLine):
            if module_level:
                sf._nodes.add(id(stmt))
                if stmt is sf.module.body[top]:
                    sf._top_of[id(stmt)] = top
                for small in stmt.body:
                    _bind_small(sf, small, stmt, top)
        else:
            _index_block(sf, sub_statements(stmt), top, prefix, parent, module_level=module_level)


def _suite(suite: cst.BaseSuite) -> Any:
    return suite.body


def sub_statements(stmt: cst.CSTNode) -> Iterator[cst.BaseStatement]:
    """The statements directly nested in a compound statement other than def/class."""
    for name in ("body", "handlers", "cases", "orelse", "finalbody"):
        part = getattr(stmt, name, None)
        for item in part if isinstance(part, tuple | list) else [part]:
            if isinstance(item, cst.BaseSuite):
                yield from item.body  # type: ignore[misc]
            elif isinstance(item, cst.If):
                yield item
            elif isinstance(item, cst.CSTNode):
                yield from sub_statements(item)


def _bind_small(sf: SourceFile, small: cst.BaseSmallStatement, stmt: cst.CSTNode, top: int) -> None:
    if isinstance(small, cst.Assign):
        for target in small.targets:
            for name in target_names(target.target):
                sf.bindings[name] = Binding("assign", top, stmt)
    elif isinstance(small, cst.AnnAssign) and small.value is not None:
        for name in target_names(small.target):
            sf.bindings[name] = Binding("assign", top, stmt)
    elif isinstance(small, cst.Import | cst.ImportFrom):
        for name, binding in import_bindings(small, top, stmt):
            sf.bindings[name] = binding


def import_bindings(
    node: cst.Import | cst.ImportFrom, top: int = -1, stmt: cst.CSTNode | None = None
) -> Iterator[tuple[str, Binding]]:
    """The names an import statement binds, each with its :class:`Binding`: ``import a.b`` binds
    ``a`` (target ``a``), ``import a.b as c`` binds ``c`` (target ``a.b``), ``from .m import x as
    y`` binds ``y`` (target ``m``, attr ``x``, level 1). A star import binds nothing."""
    if isinstance(node, cst.Import):
        for alias in node.names:
            full = dotted(alias.name) or ""
            if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                yield alias.asname.name.value, Binding("import", top, stmt, target=full)
            else:
                head = full.split(".")[0]
                yield head, Binding("import", top, stmt, target=head)
        return
    if isinstance(node.names, cst.ImportStar):
        return
    module = dotted(node.module) if node.module is not None else ""
    for alias in node.names:
        name = dotted(alias.name) or ""
        bound = name
        if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
            bound = alias.asname.name.value
        yield bound, Binding("from", top, stmt, target=module or "", attr=name, level=len(node.relative))


def target_names(target: cst.BaseExpression) -> Iterator[str]:
    """Names bound by an assignment target (``a``, ``a, b``, ``[a, *b]``)."""
    if isinstance(target, cst.Name):
        yield target.value
    elif isinstance(target, cst.Tuple | cst.List):
        for element in target.elements:
            yield from target_names(element.value)
    elif isinstance(target, cst.StarredElement):
        yield from target_names(target.value)


def dotted(expr: cst.BaseExpression | None) -> str | None:
    """``a.b.c`` for a chain of names and attributes, else None."""
    if isinstance(expr, cst.Name):
        return expr.value
    if isinstance(expr, cst.Attribute):
        base = dotted(expr.value)
        return None if base is None else f"{base}.{expr.attr.value}"
    return None
