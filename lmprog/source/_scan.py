"""One pass over a function body: the names it binds locally and every name it reads or calls."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import libcst as cst

from lmprog.source._files import Binding, dotted, import_bindings, target_names


@dataclass
class Local:
    """A name bound inside a function. ``kind``: ``param`` (``value`` is the annotation, ``index``
    the position), ``assign`` (``value`` the assigned expression, ``annotation`` its declared type),
    ``def`` (a nested def or class, ``node``), ``import`` (``binding``) or ``other``."""

    kind: str
    value: cst.BaseExpression | None = None
    annotation: cst.BaseExpression | None = None
    node: cst.FunctionDef | cst.ClassDef | None = None
    index: int = -1
    binding: Binding | None = None


@dataclass
class Occurrence:
    """A dotted name (``f``, ``mod.f``, ``self.g``) read in the code; ``call`` is the call it heads."""

    expr: cst.BaseExpression
    call: cst.Call | None = None


@dataclass
class Scan:
    locals: dict[str, Local] = field(default_factory=dict)
    occurrences: list[Occurrence] = field(default_factory=list)


def scan_function(node: cst.FunctionDef) -> Scan:
    """Parameters, local bindings and the names read by the body (nested defs' bodies excluded, their
    decorators and defaults included; they run in this scope)."""
    scanner = _Scanner()
    params = node.params
    all_params = [*params.posonly_params, *params.params]
    if isinstance(params.star_arg, cst.Param):
        all_params.append(params.star_arg)
    all_params.extend(params.kwonly_params)
    if params.star_kwarg is not None:
        all_params.append(params.star_kwarg)
    for index, param in enumerate(all_params):
        annotation = param.annotation.annotation if param.annotation is not None else None
        scanner.scan.locals[param.name.value] = Local("param", value=annotation, index=index)
    scanner.walk(node.body)
    for name in scanner.declared_global:
        scanner.scan.locals.pop(name, None)
    return scanner.scan


def scan_expression(node: cst.CSTNode) -> list[Occurrence]:
    """The dotted names read by an expression or a module-level statement."""
    scanner = _Scanner()
    scanner.walk(node)
    return scanner.scan.occurrences


def is_chain(expr: cst.BaseExpression) -> bool:
    """A name followed by attribute accesses and calls: ``f``, ``m.f``, ``C().method``."""
    while isinstance(expr, cst.Attribute | cst.Call):
        expr = expr.value if isinstance(expr, cst.Attribute) else expr.func
    return isinstance(expr, cst.Name)


def annotation_refs(expr: cst.BaseExpression) -> list[cst.BaseExpression]:
    """The dotted names a type annotation refers to, forward references in strings included and
    the values inside ``Literal[...]`` (or the metadata of ``Annotated[...]``) excluded."""
    visitor = _AnnotationRefs()
    visitor.walk(expr)
    return visitor.refs


def class_refs(node: cst.ClassDef) -> Iterator[cst.BaseExpression]:
    """The names a class definition's types depend on: its bases and its field annotations."""
    for arg in node.bases:
        yield from annotation_refs(arg.value)
    for stmt in node.body.body:
        if isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                if isinstance(small, cst.AnnAssign):
                    yield from annotation_refs(small.annotation.annotation)
        elif isinstance(stmt, cst.ClassDef):
            yield from class_refs(stmt)


_SKIPPED_FIELDS = {"lpar", "rpar", "comma", "leading_lines", "lines_after_decorators", "header"}
_SKIPPED_FIELDS |= {"footer", "semicolon", "newline", "trailing_whitespace"}
_children_fields: dict[type, tuple[str, ...]] = {}
_handlers: dict[tuple[type, type], Any] = {}


class _Walker:
    """A depth-first walk over libcst nodes, calling ``visit_<NodeType>`` where defined (its
    return value says whether to walk the node's children). Several times faster than
    ``CSTVisitor``, which also visits every whitespace and punctuation node."""

    def walk(self, node: cst.CSTNode) -> None:
        kind = type(node)
        key = (type(self), kind)
        handler = _handlers.get(key, _handlers)
        if handler is _handlers:
            handler = _handlers[key] = getattr(type(self), f"visit_{kind.__name__}", None)
        if handler is not None and not handler(self, node):
            return
        names = _children_fields.get(kind)
        if names is None:
            names = _children_fields[kind] = tuple(
                f.name
                for f in dataclasses.fields(kind)
                if f.name not in _SKIPPED_FIELDS and not f.name.startswith("whitespace")
            )
        for name in names:
            value = getattr(node, name)
            if isinstance(value, cst.CSTNode):
                self.walk(value)
            elif isinstance(value, tuple | list):
                for item in value:
                    if isinstance(item, cst.CSTNode):
                        self.walk(item)


class _Scanner(_Walker):
    def __init__(self) -> None:
        self.scan = Scan()
        self.declared_global: set[str] = set()
        self._heads: set[int] = set()

    def _bind(self, name: str, local: Local, *, override: bool = False) -> None:
        if override or name not in self.scan.locals:
            self.scan.locals[name] = local

    def visit_Name(self, node: cst.Name) -> bool:
        if id(node) not in self._heads:
            self.scan.occurrences.append(Occurrence(node))
        return False

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        if not is_chain(node):
            self.walk(node.value)  # ``f(x)[0].attr``: ``attr`` is not a name of this scope
            return False
        if id(node) not in self._heads:
            self.scan.occurrences.append(Occurrence(node))
        inner: cst.BaseExpression = node.value
        while isinstance(inner, cst.Attribute):
            inner = inner.value
        if isinstance(inner, cst.Call):  # ``make().method``: the inner call is an occurrence too
            self.walk(inner)
        return False

    def visit_Call(self, node: cst.Call) -> bool:
        if is_chain(node.func):
            self._heads.add(id(node.func))
            self.scan.occurrences.append(Occurrence(node.func, node))
        return True

    def visit_Arg(self, node: cst.Arg) -> bool:
        self.walk(node.value)  # never the keyword's name
        return False

    def visit_Param(self, node: cst.Param) -> bool:
        if node.default is not None:
            self.walk(node.default)
        return False

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        self._bind(node.name.value, Local("def", node=node), override=True)
        for decorator in node.decorators:
            self.walk(decorator)
        self.walk(node.params)
        return False

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        self._bind(node.name.value, Local("def", node=node), override=True)
        for part in (*node.decorators, *node.bases, *node.keywords):
            self.walk(part)
        return False

    def visit_Assign(self, node: cst.Assign) -> bool:
        for target in node.targets:
            for name in target_names(target.target):
                self._bind(name, Local("assign", value=node.value))
        return True

    def visit_AnnAssign(self, node: cst.AnnAssign) -> bool:
        for name in target_names(node.target):
            self._bind(name, Local("assign", value=node.value, annotation=node.annotation.annotation))
        return True

    def visit_NamedExpr(self, node: cst.NamedExpr) -> bool:
        for name in target_names(node.target):
            self._bind(name, Local("assign", value=node.value))
        return True

    def visit_AugAssign(self, node: cst.AugAssign) -> bool:
        for name in target_names(node.target):
            self._bind(name, Local("other"))
        return True

    def visit_For(self, node: cst.For) -> bool:
        for name in target_names(node.target):
            self._bind(name, Local("other"))
        return True

    def visit_CompFor(self, node: cst.CompFor) -> bool:
        for name in target_names(node.target):
            self._bind(name, Local("other"))
        return True

    def visit_AsName(self, node: cst.AsName) -> bool:
        for name in target_names(node.name):
            self._bind(name, Local("other"))
        return False

    def visit_Import(self, node: cst.Import) -> bool:
        for name, binding in import_bindings(node):
            self._bind(name, Local("import", binding=binding))
        return False

    def visit_ImportFrom(self, node: cst.ImportFrom) -> bool:
        for name, binding in import_bindings(node):
            self._bind(name, Local("import", binding=binding))
        return False

    def visit_Global(self, node: cst.Global) -> bool:
        self.declared_global.update(item.name.value for item in node.names)
        return False

    def visit_Nonlocal(self, node: cst.Nonlocal) -> bool:
        for item in node.names:
            self._bind(item.name.value, Local("other"))
        return False


class _AnnotationRefs(_Walker):
    def __init__(self) -> None:
        self.refs: list[cst.BaseExpression] = []
        self._depth = 0

    def visit_Name(self, node: cst.Name) -> bool:
        self.refs.append(node)
        return False

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        if dotted(node) is None:
            return True
        self.refs.append(node)
        return False

    def visit_Subscript(self, node: cst.Subscript) -> bool:
        head = dotted(node.value) or ""
        last = head.rsplit(".", 1)[-1]
        if last in ("Literal", "Annotated"):
            self.walk(node.value)
            if last == "Annotated" and node.slice:
                self.walk(node.slice[0])
            return False
        return True

    def visit_SimpleString(self, node: cst.SimpleString) -> bool:
        value = node.evaluated_value
        if isinstance(value, str) and self._depth < 3:
            try:
                parsed = cst.parse_expression(value.strip())
            except cst.ParserSyntaxError:
                return False
            self._depth += 1
            self.walk(parsed)
            self._depth -= 1
        return False
