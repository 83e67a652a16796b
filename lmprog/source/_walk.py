"""Walking a program from its entry: every function it reaches, the lm_functions among them, the
call sites, the types and constants they use."""

from __future__ import annotations

import inspect
import logging
import typing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import libcst as cst

from lmprog.source._defs import (
    Definition,
    constant_definitions,
    definition_of,
    signature_refs,
    type_definitions,
)
from lmprog.source._scan import Occurrence
from lmprog.source._scope import Resolver
from lmprog.source._targets import (
    Const,
    FuncCtx,
    Instance,
    Runtime,
    Static,
    Target,
    as_class,
    has_own_source,
    is_lm_decorator,
    is_lm_function,
    unwrap,
)

if TYPE_CHECKING:
    from lmprog.source._targets import AnalyzedFunction

logger = logging.getLogger("lmprog.source")

_CONTEXT_LINES = 1


@dataclass(frozen=True)
class CallSite:
    """Where ``caller`` calls (or refers to) ``callee``: the lines, numbered, with a little context;
    the call itself is marked with ``>``."""

    caller: str
    callee: str
    path: str
    line: int
    text: str


@dataclass(eq=False)
class Node:
    """A reached function. ``kind`` is ``lm`` or ``function``; ``ctx`` is None when its source is
    not available (it is then described from what ``inspect`` sees)."""

    key: str
    kind: str
    ctx: FuncCtx | None
    lm: AnalyzedFunction | None = None
    obj: Any = None
    signature_types: list[str] = field(default_factory=list)

    @property
    def path(self) -> str | None:
        if self.ctx is not None:
            return self.ctx.module.file.path
        code = getattr(self.obj, "__code__", None)
        return code.co_filename if code is not None else None

    @property
    def line(self) -> int | None:
        if self.ctx is not None:
            if self.obj is not None:
                return int(self.obj.__code__.co_firstlineno)
            return self.ctx.module.file.start_line(self.ctx.node, self.ctx.info.top)
        code = getattr(self.obj, "__code__", None)
        return code.co_firstlineno if code is not None else None

    @property
    def source(self) -> str:
        if self.ctx is not None:
            return self.ctx.module.file.code(self.ctx.node)
        return described_source(self.obj, self.lm)


class Walker:
    """Breadth-first from the roots, following calls and references in source order."""

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.nodes: dict[str, Node] = {}
        self.edges: dict[str, dict[str, None]] = {}
        self.sites: dict[str, list[CallSite]] = {}
        self.types: dict[str, Definition] = {}
        self.type_users: dict[str, list[str]] = {}
        self.constants: dict[str, Definition] = {}
        self.constant_users: dict[str, list[str]] = {}
        self.warnings: list[str] = []
        self._queue: list[Node] = []
        self._cursors: dict[tuple[str, str], int] = {}

    def node_for(self, target: Target | None) -> Node | None:
        """The node for a function target (created on first sight), None for anything else."""
        if isinstance(target, Runtime):
            obj = unwrap(target.obj)
            if is_lm_function(obj):
                fn = unwrap(obj.fn)
                return self._node(f"{fn.__module__}.{fn.__qualname__}", "lm", fn, obj)
            if has_own_source(obj):
                return self._node(f"{obj.__module__}.{obj.__qualname__}", "function", obj, None)
        if isinstance(target, Static) and isinstance(target.info.node, cst.FunctionDef):
            key = target.key
            if key not in self.nodes:
                ctx = self.resolver.static_ctx(target.module, target.info)
                self._add(Node(key, "lm" if self._lm_decorated(ctx) else "function", ctx))
            return self.nodes[key]
        return None

    def run(self) -> None:
        while self._queue:
            node = self._queue.pop(0)
            if node.ctx is not None:
                self._visit(node, node.ctx)

    # -- internals -----------------------------------------------------------------------------
    def _node(self, key: str, kind: str, fn: Any, lm: AnalyzedFunction | None) -> Node:
        if key not in self.nodes:
            ctx = self.resolver.function_ctx(fn)
            if ctx is None:
                where = f"{fn.__code__.co_filename}:{fn.__code__.co_firstlineno}"
                message = f"no source code for {key} ({where}); described from its signature and docstring"
                logger.warning(message)
                self.warnings.append(message)
            self._add(Node(key, kind, ctx, lm, fn))
        return self.nodes[key]

    def _add(self, node: Node) -> None:
        self.nodes[node.key] = node
        self.edges[node.key] = {}
        self._queue.append(node)
        if node.ctx is not None:
            annotations, defaults = signature_refs(node.ctx.node)
            outer = node.ctx.parent or node.ctx.module
            for definition in type_definitions(self.resolver, outer, annotations, {}):
                self._record(self.types, self.type_users, definition, node.key)
                node.signature_types.append(definition.key)
            for constant, _ in constant_definitions(self.resolver, outer, defaults):
                if constant is not None:
                    self._record(self.constants, self.constant_users, constant, node.key)
        elif node.obj is not None:
            self._runtime_signature_types(node)

    def _runtime_signature_types(self, node: Node) -> None:
        try:
            hints = typing.get_type_hints(node.obj)
        except Exception:  # unresolvable forward references: nothing more to see
            return
        for hint in hints.values():
            for candidate in (hint, *typing.get_args(hint)):
                definition = definition_of(self.resolver, Runtime(candidate), as_type=True)
                if definition is not None and inspect.isclass(candidate):
                    self._record(self.types, self.type_users, definition, node.key)
                    node.signature_types.append(definition.key)

    def _visit(self, node: Node, ctx: FuncCtx) -> None:
        for occ in ctx.scan.occurrences:
            prefixes = self.resolver.resolve_prefixes(ctx, occ.expr)
            self._use(node, ctx, prefixes[-1] if prefixes else None, occ)
            if not any(isinstance(p, Const) for p in prefixes):
                continue
            for definition, other in constant_definitions(self.resolver, ctx, [occ.expr]):
                if definition is not None:
                    self._record(self.constants, self.constant_users, definition, node.key)
                elif other is not None:
                    self._use(node, ctx, other, None)  # a function named in a constant's value

    def _use(self, node: Node, ctx: FuncCtx, target: Target | None, occ: Occurrence | None) -> None:
        """Record what ``target`` is for ``node``: a function (an edge), a class (a type)."""
        callee = self.node_for(target)
        cls = as_class(target)
        if callee is None and occ is not None and occ.call is not None:
            # calling a class runs its __init__, calling an instance its __call__
            if cls is not None:
                callee = self.node_for(self.resolver.attribute(cls, "__init__"))
            elif isinstance(target, Instance | Const) or (
                isinstance(target, Runtime) and not callable_code(target.obj)
            ):
                callee = self.node_for(self.resolver.attribute(target, "__call__"))
        if cls is not None:
            definition = definition_of(self.resolver, cls, as_type=True)
            if definition is not None:
                self._record(self.types, self.type_users, definition, node.key)
        if callee is None:
            return
        self.edges[node.key].setdefault(callee.key, None)
        if callee.kind == "lm" and occ is not None:
            self.sites.setdefault(callee.key, []).append(self._site(node, ctx, callee, occ))

    def _site(self, node: Node, ctx: FuncCtx, callee: Node, occ: Occurrence) -> CallSite:
        file = ctx.module.file
        call = occ.call or occ.expr
        code = file.module.code_for_node(call)
        head = code.split("\n", 1)[0].strip()
        # The call's text is in the file as written: find it after the previous identical one
        # (position metadata would cost several times a parse).
        cursor = (node.key, head)
        first = file.find_line(head, self._cursors.get(cursor, node.line or 1))
        if first is None and cursor in self._cursors:  # met out of source order: search again
            first = file.find_line(head, node.line or 1)
        if first is None:
            first = file.range(call, ctx.info.top)[0]
        self._cursors[cursor] = first + 1
        last = first + code.count("\n")
        lines = file.lines
        start = first - _CONTEXT_LINES if first > (node.line or 1) else first
        end = min(last + _CONTEXT_LINES, len(lines))
        while end > last and not lines[end - 1].strip():
            end -= 1
        width = len(str(end))
        text = "\n".join(
            f"{'>' if first <= n <= last else ' '} {n:>{width}} | {lines[n - 1]}"
            for n in range(start, end + 1)
        )
        return CallSite(node.key, callee.key, file.path, first, text)

    def _record(
        self, table: dict[str, Definition], users: dict[str, list[str]], definition: Definition, user: str
    ) -> None:
        table.setdefault(definition.key, definition)
        seen = users.setdefault(definition.key, [])
        if user not in seen:
            seen.append(user)

    def _lm_decorated(self, ctx: FuncCtx) -> bool:
        for decorator in ctx.node.decorators:
            expr = decorator.decorator
            expr = expr.func if isinstance(expr, cst.Call) else expr
            target = self.resolver.resolve(ctx.parent or ctx.module, expr)
            if isinstance(target, Runtime) and is_lm_decorator(target.obj):
                return True
        return False


def callable_code(obj: Any) -> bool:
    return inspect.isroutine(obj) or inspect.isclass(obj) or inspect.ismodule(obj)


def described_source(fn: Any, lm: AnalyzedFunction | None) -> str:
    """What ``inspect`` can tell of a function without source: its signature and docstring."""
    if fn is None:
        return ""
    try:
        signature = signature_text(fn)
    except (TypeError, ValueError):
        signature = "(...)"
    prefix = "async def" if inspect.iscoroutinefunction(fn) else "def"
    doc = inspect.getdoc(fn)
    body = f'    """{doc}"""' if doc else "    ..."
    decorator = "@lm_function\n" if lm is not None else ""
    return f"# (no source available)\n{decorator}{prefix} {fn.__name__}{signature}:\n{body}\n"


class _Written:
    """An annotation kept as a string (``from __future__ import annotations``), shown unquoted."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def signature_text(fn: Any) -> str:
    """``inspect.signature`` as text, string annotations shown as written."""
    signature = inspect.signature(fn)
    params = [
        p.replace(annotation=_Written(p.annotation)) if isinstance(p.annotation, str) else p
        for p in signature.parameters.values()
    ]
    ret = signature.return_annotation
    return str(
        signature.replace(parameters=params, return_annotation=_Written(ret) if isinstance(ret, str) else ret)
    )
