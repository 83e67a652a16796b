"""Definitions a function depends on besides other functions: the classes and type aliases of its
signature (transitively, through fields and bases) and the module-level constants it reads."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import libcst as cst

from lmprog.source._canon import canonical_text
from lmprog.source._scan import annotation_refs, class_refs, scan_expression
from lmprog.source._scope import Resolver
from lmprog.source._targets import Const, FuncCtx, ModuleCtx, Runtime, Static, Target, as_class


@dataclass(eq=False)
class Definition:
    """A class, a type alias or a constant, where it is written. ``kind`` is ``class``, ``alias``
    (a module-level assignment used as a type, ``Label = Literal[...]``) or ``constant``."""

    key: str
    name: str  # the qualified name inside its module
    kind: str
    module: ModuleCtx
    node: cst.CSTNode
    top: int
    value: cst.BaseExpression | None = None
    _canonical: str | None = field(default=None, repr=False)

    @property
    def path(self) -> str:
        return self.module.file.path

    @property
    def line(self) -> int:
        return self.module.file.start_line(self.node, self.top)

    @property
    def source(self) -> str:
        return self.module.file.code(self.node)

    @property
    def outline(self) -> str | None:
        """For a class with methods: its text with each method body replaced by ``...``."""
        node = self.node
        if not isinstance(node, cst.ClassDef) or not any(
            isinstance(stmt, cst.FunctionDef) for stmt in node.body.body
        ):
            return None
        ellipsis = cst.IndentedBlock(body=[cst.SimpleStatementLine(body=[cst.Expr(cst.Ellipsis())])])
        body = [
            stmt.with_changes(body=ellipsis) if isinstance(stmt, cst.FunctionDef) else stmt
            for stmt in node.body.body
        ]
        outline = node.with_changes(body=node.body.with_changes(body=body))
        return self.module.file.code(outline)

    @property
    def canonical(self) -> str:
        if self._canonical is None:
            self._canonical = canonical_text(self.module.file.code(self.node))
        return self._canonical


def definition_of(resolver: Resolver, target: Target | None, *, as_type: bool) -> Definition | None:
    """The written definition of a resolved name: a class of the user's code, or a module-level
    assignment (a type alias when ``as_type``, else a constant)."""
    cls = as_class(target)
    if isinstance(cls, Runtime):
        found = resolver.class_location(cls.obj)
        if found is None:
            return None
        module, info = found
        return Definition(
            f"{module.name}.{info.qualname}", info.qualname, "class", module, info.node, info.top
        )
    if isinstance(cls, Static):
        info = cls.info
        return Definition(cls.key, info.qualname, "class", cls.module, info.node, info.top)
    if isinstance(target, Const) and target.binding.stmt is not None:
        kind = "alias" if as_type else "constant"
        value = _assigned_value(target.binding.stmt, target.name)
        return Definition(
            target.key, target.name, kind, target.module, target.binding.stmt, target.binding.top, value
        )
    return None


def type_definitions(
    resolver: Resolver,
    scope: FuncCtx | ModuleCtx,
    refs: Iterable[cst.BaseExpression],
    seen: dict[str, Definition] | None = None,
) -> list[Definition]:
    """Classes and aliases named by ``refs`` and, transitively, by their fields, bases and values."""
    seen = {} if seen is None else seen
    found: list[Definition] = []
    pending: list[tuple[FuncCtx | ModuleCtx, cst.BaseExpression]] = [(scope, ref) for ref in refs]
    while pending:
        where, ref = pending.pop(0)
        definition = definition_of(resolver, resolver.resolve(where, ref), as_type=True)
        if definition is None or definition.key in seen:
            continue
        seen[definition.key] = definition
        found.append(definition)
        pending.extend((definition.module, inner) for inner in _type_refs(definition))
    return found


def signature_refs(node: cst.FunctionDef) -> tuple[list[cst.BaseExpression], list[cst.BaseExpression]]:
    """The names a def's annotations refer to, and the names its default values read."""
    annotations: list[cst.BaseExpression] = []
    defaults: list[cst.BaseExpression] = []
    params = node.params
    star = [params.star_arg] if isinstance(params.star_arg, cst.Param) else []
    kwargs = [params.star_kwarg] if params.star_kwarg is not None else []
    for param in (*params.posonly_params, *params.params, *star, *params.kwonly_params, *kwargs):
        if param.annotation is not None:
            annotations.extend(annotation_refs(param.annotation.annotation))
        if param.default is not None:
            defaults.extend(occ.expr for occ in scan_expression(param.default))
    if node.returns is not None:
        annotations.extend(annotation_refs(node.returns.annotation))
    return annotations, defaults


def constant_definitions(
    resolver: Resolver,
    scope: FuncCtx | ModuleCtx,
    refs: Iterable[cst.BaseExpression],
    seen: dict[str, Definition] | None = None,
) -> Iterator[tuple[Definition | None, Target | None]]:
    """Constants read through ``refs`` and, transitively, through their values. Yields each new
    constant with its target, and ``(None, target)`` for the other names the values read (so a
    caller can follow functions named in a dispatch table)."""
    seen = {} if seen is None else seen
    pending: list[tuple[FuncCtx | ModuleCtx, cst.BaseExpression]] = [(scope, ref) for ref in refs]
    while pending:
        where, ref = pending.pop(0)
        for target in resolver.resolve_prefixes(where, ref):
            definition = definition_of(resolver, target, as_type=False) if isinstance(target, Const) else None
            if definition is None:
                yield None, target
                continue
            if definition.key in seen:
                continue
            seen[definition.key] = definition
            yield definition, target
            if definition.value is not None:
                pending.extend((definition.module, occ.expr) for occ in scan_expression(definition.value))


def runtime_type_text(hint: Any, resolver: Resolver, depth: int = 0) -> str:
    """A stable text for a type seen only at runtime (no source for the function using it): its
    written definition when there is one, else its fields, recursively."""
    if depth > 6:
        return repr(hint)
    if inspect.isclass(hint):
        found = definition_of(resolver, Runtime(hint), as_type=True)
        if found is not None:
            return found.canonical
        try:
            fields = typing.get_type_hints(hint)
        except Exception:  # an unresolvable forward reference: keep what is visible
            fields = dict(getattr(hint, "__annotations__", {}))
        members = [m.name for m in hint] if hasattr(hint, "__members__") else []  # type: ignore[attr-defined]
        inner = ", ".join(f"{k}: {runtime_type_text(v, resolver, depth + 1)}" for k, v in fields.items())
        return f"{hint.__qualname__}({inner}){members or ''}"
    args = typing.get_args(hint)
    if args:
        origin = typing.get_origin(hint)
        inner = ", ".join(runtime_type_text(a, resolver, depth + 1) for a in args)
        return f"{getattr(origin, '__qualname__', repr(origin))}[{inner}]"
    return repr(hint)


def _type_refs(definition: Definition) -> list[cst.BaseExpression]:
    if isinstance(definition.node, cst.ClassDef):
        return list(class_refs(definition.node))
    return annotation_refs(definition.value) if definition.value is not None else []


def _assigned_value(stmt: cst.CSTNode, name: str) -> cst.BaseExpression | None:
    if not isinstance(stmt, cst.SimpleStatementLine):
        return None
    for small in stmt.body:
        if isinstance(small, cst.Assign) and any(
            isinstance(t.target, cst.Name) and t.target.value == name for t in small.targets
        ):
            return small.value
        if (
            isinstance(small, cst.AnnAssign)
            and isinstance(small.target, cst.Name)
            and small.target.value == name
        ):
            return small.value
    for small in stmt.body:  # tuple targets: the whole value
        if isinstance(small, cst.Assign | cst.AnnAssign):
            return small.value
    return None
