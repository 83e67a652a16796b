"""Resolving a name in a function to what it denotes.

Runtime objects come first (a function's globals, its closure cells, attributes of imported
modules and classes): they are exact. The parsed source fills the gaps runtime objects cannot:
local variables (``x = Classifier()``), nested defs that were never called, the module and line
where a constant is written, names behind ``from .x import y``.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import libcst as cst

from lmprog.source._files import Binding, DefInfo, dotted, is_project_file, load
from lmprog.source._scan import Local
from lmprog.source._targets import (
    MAX_DEPTH,
    MISSING,
    Const,
    FuncCtx,
    Instance,
    ModuleCtx,
    Runtime,
    Static,
    Target,
    as_class,
    is_code,
)

logger = logging.getLogger("lmprog.source")


def _static_attr(obj: Any, name: str) -> Any:
    value = inspect.getattr_static(obj, name, MISSING)
    if isinstance(value, staticmethod | classmethod):
        return value.__func__
    if isinstance(value, property):
        return value.fget if value.fget is not None else MISSING
    if isinstance(value, functools.cached_property):
        return value.func
    return value


class Resolver:
    """Resolves names for one analysis; caches module and function contexts."""

    def __init__(self) -> None:
        self._modules: dict[tuple[str, str], ModuleCtx | None] = {}
        self._funcs: dict[int, FuncCtx] = {}

    # -- contexts ------------------------------------------------------------------------------
    def module_for_path(self, path: str, name: str, namespace: Mapping[str, Any] | None) -> ModuleCtx | None:
        key = (path, name)
        if key not in self._modules:
            try:
                sf = load(path, namespace)
            except cst.ParserSyntaxError as error:  # edited since import, or newer syntax than libcst's
                logger.warning("cannot parse %s, analyzed without it: %s", path, str(error).splitlines()[0])
                sf = None
            ctx = None
            if sf is not None:
                package = (namespace or {}).get("__package__")
                if not isinstance(package, str):
                    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
                ctx = ModuleCtx(name, sf, namespace, package)
            self._modules[key] = ctx
        return self._modules[key]

    def module_for_object(self, module: ModuleType) -> ModuleCtx | None:
        path = getattr(module, "__file__", None)
        if not isinstance(path, str) or not is_project_file(path):
            return None
        return self.module_for_path(path, module.__name__, vars(module))

    def module_named(self, name: str) -> ModuleCtx | None:
        module = sys.modules.get(name)
        return self.module_for_object(module) if module is not None else None

    def function_ctx(self, fn: Any) -> FuncCtx | None:
        """The context of a runtime function; None when its source cannot be found."""
        code = fn.__code__
        ctx_module = self.module_for_path(code.co_filename, fn.__module__ or "__main__", fn.__globals__)
        if ctx_module is None:
            return None
        info = ctx_module.file.find(fn.__qualname__, code.co_firstlineno)
        if info is None or not isinstance(info.node, cst.FunctionDef):
            return None
        ctx = self.static_ctx(ctx_module, info)
        if ctx.obj is None:
            ctx.obj = fn
            ctx.key = f"{fn.__module__}.{fn.__qualname__}"
        return ctx

    def static_ctx(self, module: ModuleCtx, info: DefInfo) -> FuncCtx:
        ctx = self._funcs.get(id(info.node))
        if ctx is None:
            parent_info = info.parent
            while parent_info is not None and isinstance(parent_info.node, cst.ClassDef):
                parent_info = parent_info.parent
            parent = self.static_ctx(module, parent_info) if parent_info is not None else None
            owner = None
            if info.parent is not None and isinstance(info.parent.node, cst.ClassDef):
                owner = self._class_target(module, info.parent)
            ctx = FuncCtx(f"{module.name}.{info.qualname}", module, info, None, parent, owner)
            self._funcs[id(info.node)] = ctx
        return ctx

    def class_location(self, cls: type) -> tuple[ModuleCtx, DefInfo] | None:
        module = sys.modules.get(cls.__module__)
        ctx = self.module_for_object(module) if module is not None else None
        info = ctx.file.find(cls.__qualname__) if ctx is not None else None
        if ctx is None or info is None or not isinstance(info.node, cst.ClassDef):
            return None
        return ctx, info

    def _class_target(self, module: ModuleCtx, info: DefInfo) -> Runtime | Static:
        if "<locals>" not in info.qualname and module.namespace is not None:
            obj: Any = module.namespace.get(info.qualname.split(".")[0], MISSING)
            for part in info.qualname.split(".")[1:]:
                obj = inspect.getattr_static(obj, part, MISSING) if obj is not MISSING else MISSING
            if inspect.isclass(obj):
                return Runtime(obj)
        return Static(module, info)

    # -- resolution ----------------------------------------------------------------------------
    def resolve(self, scope: FuncCtx | ModuleCtx, expr: cst.BaseExpression, depth: int = 0) -> Target | None:
        if depth > MAX_DEPTH:
            return None
        if isinstance(expr, cst.Name):
            return self.lookup(scope, expr.value, depth + 1)
        if isinstance(expr, cst.Attribute):
            base = self.resolve(scope, expr.value, depth + 1)
            return None if base is None else self.attribute(base, expr.attr.value, depth + 1)
        if isinstance(expr, cst.Call):  # ``C(...)`` is an instance of C
            cls = as_class(self.resolve(scope, expr.func, depth + 1))
            return Instance(cls) if cls is not None else None
        return None

    def resolve_prefixes(self, scope: FuncCtx | ModuleCtx, expr: cst.BaseExpression) -> list[Target | None]:
        """What each prefix of a dotted name denotes: ``a``, ``a.b``, ``a.b.c``."""
        if isinstance(expr, cst.Attribute):
            prefixes = self.resolve_prefixes(scope, expr.value)
            last = prefixes[-1] if prefixes else None
            prefixes.append(None if last is None else self.attribute(last, expr.attr.value))
            return prefixes
        if isinstance(expr, cst.Call):
            prefixes = self.resolve_prefixes(scope, expr.func)
            cls = as_class(prefixes[-1]) if prefixes else None
            prefixes.append(Instance(cls) if cls is not None else None)
            return prefixes
        return [self.lookup(scope, expr.value)] if isinstance(expr, cst.Name) else []

    def lookup(self, scope: FuncCtx | ModuleCtx, name: str, depth: int = 0) -> Target | None:
        if isinstance(scope, ModuleCtx):
            return self.global_(scope, name, depth)
        fn = scope.obj
        if fn is not None and fn.__closure__ and name in fn.__code__.co_freevars:
            cell = fn.__closure__[fn.__code__.co_freevars.index(name)]
            try:
                return Runtime(cell.cell_contents)
            except ValueError:  # an empty cell: fall back to the source
                pass
        local = scope.scan.locals.get(name)
        if local is not None:
            return self._local(scope, name, local, depth)
        if scope.parent is not None:
            return self.lookup(scope.parent, name, depth + 1)
        return self.global_(scope.module, name, depth)

    def _local(self, scope: FuncCtx, name: str, local: Local, depth: int) -> Target | None:
        outer: FuncCtx | ModuleCtx = scope.parent or scope.module
        if local.kind == "param":
            decorators = {dotted(d.decorator) for d in scope.node.decorators}
            if local.index == 0 and scope.owner is not None and "staticmethod" not in decorators:
                if scope.bound_self is not None:
                    return Runtime(scope.bound_self)
                return scope.owner if "classmethod" in decorators else Instance(scope.owner)
            return self.instance_of_annotation(outer, local.value, depth)
        if local.kind == "assign":
            if local.annotation is not None:
                found = self.instance_of_annotation(outer, local.annotation, depth)
                if found is not None:
                    return found
            value = local.value
            if isinstance(value, cst.Call):
                callee = self.resolve(scope, value.func, depth + 1)
                cls = as_class(callee)
                return Instance(cls) if cls is not None else None
            return self.resolve(scope, value, depth + 1) if value is not None else None
        if local.kind == "def" and local.node is not None:
            suffix = ".<locals>." + name
            for info in scope.module.file.defs.get(scope.info.qualname + suffix, []):
                if info.node is local.node:
                    return Static(scope.module, info)
            return None
        if local.kind == "import" and local.binding is not None:
            return self._import(scope.module, local.binding, depth)
        return None

    def instance_of_annotation(
        self, scope: FuncCtx | ModuleCtx, annotation: cst.BaseExpression | None, depth: int = 0
    ) -> Instance | None:
        """An instance of the class an annotation names (``C``, ``m.C``, ``"C"``, ``C | None``,
        ``Optional[C]``)."""
        if annotation is None or depth > MAX_DEPTH:
            return None
        if isinstance(annotation, cst.SimpleString):
            text = annotation.evaluated_value
            try:
                annotation = cst.parse_expression(text) if isinstance(text, str) else annotation
            except cst.ParserSyntaxError:
                return None
        if isinstance(annotation, cst.BinaryOperation):
            return self.instance_of_annotation(scope, annotation.left, depth + 1) or (
                self.instance_of_annotation(scope, annotation.right, depth + 1)
            )
        if isinstance(annotation, cst.Subscript) and (dotted(annotation.value) or "").endswith("Optional"):
            inner = annotation.slice[0].slice
            if isinstance(inner, cst.Index):
                return self.instance_of_annotation(scope, inner.value, depth + 1)
        cls = as_class(self.resolve(scope, annotation, depth + 1))
        return Instance(cls) if cls is not None else None

    def global_(self, module: ModuleCtx, name: str, depth: int = 0) -> Target | None:
        if depth > MAX_DEPTH:
            return None
        value = module.namespace.get(name, MISSING) if module.namespace is not None else MISSING
        binding = module.file.bindings.get(name)
        if value is not MISSING:
            if is_code(value) or binding is None:
                return Runtime(value)
            if binding.kind == "assign":
                return Const(module, name, binding, value)
            followed = self._import(module, binding, depth + 1) if binding.kind != "def" else None
            return followed if isinstance(followed, Const) else Runtime(value)
        if binding is None:
            return None
        if binding.kind == "def" and binding.info is not None:
            return Static(module, binding.info)
        if binding.kind == "assign":
            return Const(module, name, binding)
        return self._import(module, binding, depth + 1)

    def _import(self, module: ModuleCtx, binding: Binding, depth: int) -> Target | None:
        if binding.kind == "import":
            found = sys.modules.get(binding.target)
            return Runtime(found) if found is not None else None
        base = binding.target
        if binding.level:
            parts = module.package.split(".") if module.package else []
            keep = len(parts) - (binding.level - 1)
            if keep <= 0:
                return None
            base = ".".join(parts[:keep]) + (f".{binding.target}" if binding.target else "")
        source = self.module_named(base)
        if source is not None:
            found_target = self.global_(source, binding.attr, depth + 1)
            if found_target is not None:
                return found_target
        submodule = sys.modules.get(f"{base}.{binding.attr}")
        if submodule is not None:
            return Runtime(submodule)
        parent = sys.modules.get(base)
        value = parent.__dict__.get(binding.attr, MISSING) if parent is not None else MISSING
        return None if value is MISSING else Runtime(value)

    def attribute(self, base: Target, name: str, depth: int = 0) -> Target | None:
        if isinstance(base, Runtime) and inspect.ismodule(base.obj):
            module = self.module_for_object(base.obj)
            found = self.global_(module, name, depth + 1) if module is not None else None
            if found is not None:
                return found
            sub = sys.modules.get(f"{base.obj.__name__}.{name}")
            value = sub if sub is not None else base.obj.__dict__.get(name, MISSING)
            return None if value is MISSING else Runtime(value)
        if isinstance(base, Runtime) or (isinstance(base, Const) and base.value is not MISSING):
            value = _static_attr(base.obj if isinstance(base, Runtime) else base.value, name)
            return None if value is MISSING else Runtime(value)
        if isinstance(base, Static) and isinstance(base.info.node, cst.ClassDef):
            return self._static_member(base, name)
        if isinstance(base, Instance):
            if isinstance(base.cls, Runtime):
                value = _static_attr(base.cls.obj, name)
                if value is not MISSING:
                    return Runtime(value)
            else:
                member = self._static_member(base.cls, name)
                if member is not None:
                    return member
            return self._instance_attribute(base.cls, name, depth + 1)
        return None

    def _static_member(self, cls: Static, name: str) -> Static | None:
        for info in cls.module.file.defs.get(f"{cls.info.qualname}.{name}", []):
            return Static(cls.module, info)
        return None

    def _instance_attribute(self, cls: Runtime | Static, name: str, depth: int) -> Target | None:
        """The type of ``self.<name>``, from a class-level annotation or an assignment in
        ``__init__`` (base classes of runtime classes included)."""
        locations: list[tuple[ModuleCtx, DefInfo]] = []
        if isinstance(cls, Static):
            locations.append((cls.module, cls.info))
        else:
            for klass in cls.obj.__mro__:
                found = self.class_location(klass) if klass.__module__ != "builtins" else None
                if found is not None:
                    locations.append(found)
        for module, info in locations:
            node = info.node
            assert isinstance(node, cst.ClassDef)
            for stmt in node.body.body:
                for small in stmt.body if isinstance(stmt, cst.SimpleStatementLine) else ():
                    if isinstance(small, cst.AnnAssign) and dotted(small.target) == name:
                        return self.instance_of_annotation(module, small.annotation.annotation, depth)
            init = next(iter(module.file.defs.get(f"{info.qualname}.__init__", [])), None)
            if init is not None:
                ctx = self.static_ctx(module, init)
                for assigned in _self_assignments(ctx.node, name):
                    found_target = self._local(ctx, name, assigned, depth)
                    if found_target is not None:
                        return found_target
        return None


def _self_assignments(init: cst.FunctionDef, name: str) -> list[Local]:
    """``self.<name> = value`` statements at the top of ``__init__`` (nested blocks included)."""
    found: list[Local] = []

    class _Finder(cst.CSTVisitor):
        def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
            return node is init

        def visit_Assign(self, node: cst.Assign) -> bool:
            for target in node.targets:
                if dotted(target.target) == f"self.{name}":
                    found.append(Local("assign", value=node.value))
            return False

        def visit_AnnAssign(self, node: cst.AnnAssign) -> bool:
            if dotted(node.target) == f"self.{name}":
                found.append(Local("assign", value=node.value, annotation=node.annotation.annotation))
            return False

    init.visit(_Finder())
    return found
