"""``analyze`` and ``signature_hash``."""

from __future__ import annotations

import functools
import hashlib
import inspect
import typing
from typing import Any

from lmprog.errors import UsageError
from lmprog.source._canon import canonical_text, docstring_of, header_of
from lmprog.source._defs import constant_definitions, runtime_type_text, signature_refs, type_definitions
from lmprog.source._files import read_source
from lmprog.source._program import Part, ProgramSource
from lmprog.source._scope import Resolver
from lmprog.source._targets import Runtime, has_own_source, is_lm_function, unwrap
from lmprog.source._walk import Node, Walker, described_source

HASH_LENGTH = 16


def analyze(program: Any, entry: str | None = None) -> ProgramSource:
    """Statically analyze a program: from its entry point, every function it reaches through
    calls and references (helpers, other modules of the user's project, methods, closures), the
    lm_functions among them, their call sites, the types of their signatures and the constants
    they read. Code in the standard library and site-packages is not followed.

    Args:
        program: a function (plain, ``@traced`` or an lm_function) or a module, whose functions
            are all roots unless ``entry`` names one of them.
        entry: the name of the entry function inside a module ``program``.

    Returns:
        The program's :class:`ProgramSource`: the lm_functions it reaches, its call graph and
        ``program_hash``.

    Raises:
        MissingDependencyError: libcst is not installed.
        UsageError: ``program`` is neither a function nor a module, ``entry`` is not in it, or
            its source cannot be found.

    Example:
        >>> import lmprog
        >>> source = lmprog.analyze(pipeline)  # doctest: +SKIP
        >>> [f.key for f in source.functions]  # doctest: +SKIP
        ['app.classify', 'app.answer']
    """
    resolver = Resolver()
    walker = Walker(resolver)
    roots, entry_key, entry_module = _roots(program, entry, resolver, walker)
    walker.run()
    return _result(walker, roots, entry_key, entry_module)


def signature_hash(fn: Any) -> str:
    """A short hex digest of everything that shapes an lm_function's prompt: decorator arguments,
    name, parameters, annotations, defaults, docstring and the definitions of the types (and
    constants) its signature refers to, transitively. Edits of the body, of other functions, and
    formatting or comments do not change it. Without source, it hashes what ``inspect`` sees."""
    lm = fn if is_lm_function(fn) else None
    func = unwrap(lm.fn if lm is not None else fn)
    if not inspect.isfunction(func):
        raise UsageError(f"signature_hash needs a function or an lm_function, got {fn!r}")
    parts = ["lmprog-signature-v1", decorator_text(lm) if lm is not None else ""]
    resolver = Resolver()
    ctx = resolver.function_ctx(func)
    if ctx is None:
        parts.extend(_described_signature(func, resolver))
    else:
        parts.extend((header_of(ctx.node), docstring_of(ctx.node) or ""))
        annotations, defaults = signature_refs(ctx.node)
        outer = ctx.parent or ctx.module
        found = type_definitions(resolver, outer, annotations)
        found.extend(d for d, _ in constant_definitions(resolver, outer, defaults) if d is not None)
        parts.extend(
            f"{d.kind} {d.name}\n{d.canonical}" for d in sorted(found, key=lambda d: (d.name, d.kind))
        )
    return _digest(parts)[:HASH_LENGTH]


def decorator_text(lm: Any) -> str:
    """The lm_function decorator's arguments, as stable text (an LM object by its class and model)."""
    return (
        f"name={getattr(lm, 'name', None)!r} lm={_stable(getattr(lm, 'lm', None))} "
        f"max_retries={getattr(lm, 'max_retries', None)!r} temperature={getattr(lm, 'temperature', None)!r}"
        + (" reasoning=True" if getattr(lm, "reasoning", False) else "")  # absent: old hashes hold
        + _tools_text(lm)
    )


def _tools_text(lm: Any) -> str:
    """The tools of an lm_function by name, and its max_steps ("" without tools: old hashes hold)."""
    tools = getattr(lm, "tools", ())
    if not tools:
        return ""
    names = ",".join(str(getattr(tool, "name", tool)) for tool in tools)
    first = " tool_first=True" if getattr(lm, "tool_first", False) else ""
    return f" tools={names} max_steps={getattr(lm, 'max_steps', None)!r}{first}"


def _roots(
    program: Any, entry: str | None, resolver: Resolver, walker: Walker
) -> tuple[list[Node], str, str]:
    if inspect.ismodule(program):
        candidates = _module_functions(program)
        if entry is not None:
            if entry not in candidates:
                names = ", ".join(candidates) or "none"
                raise UsageError(
                    f"module {program.__name__!r} has no function {entry!r} (functions: {names})"
                )
            candidates = {entry: candidates[entry]}
        if not candidates:
            raise UsageError(f"module {program.__name__!r} defines no function to analyze")
        nodes = [_root_node(value, resolver, walker) for value in candidates.values()]
        key = nodes[0].key if entry is not None else program.__name__
        return nodes, key, program.__name__
    if entry is not None:
        raise UsageError("entry= names a function of a module; pass the module itself")
    node = _root_node(program, resolver, walker)
    module = getattr(node.obj, "__module__", None) or node.key.rpartition(".")[0]
    return [node], node.key, module


def _module_functions(module: Any) -> dict[str, Any]:
    """The functions (plain, traced, lm) defined in a module, in source order."""
    found: list[tuple[int, str, Any]] = []
    for name, value in vars(module).items():
        inner = unwrap(value)
        fn = unwrap(inner.fn) if is_lm_function(inner) else inner
        if inspect.isfunction(fn) and fn.__module__ == module.__name__ and has_own_source(fn):
            found.append((fn.__code__.co_firstlineno, name, value))
    return {name: value for _, name, value in sorted(found, key=lambda item: item[:2])}


def _root_node(value: Any, resolver: Resolver, walker: Walker) -> Node:
    bound_self = getattr(value, "__self__", None) if inspect.ismethod(value) else None
    if not inspect.isroutine(value) and not (is_lm_function(value) or isinstance(value, functools.partial)):
        call = inspect.getattr_static(type(value), "__call__", None)
        if inspect.isfunction(call) and has_own_source(call):  # a callable object of the project
            value, bound_self = call, value
    inner = unwrap(value)
    fn = unwrap(inner.fn) if is_lm_function(inner) else inner
    if not inspect.isfunction(fn):
        raise UsageError(f"cannot analyze {value!r}: pass a function, an lm_function or a module")
    name = f"{fn.__module__}.{fn.__qualname__}"
    file, line = fn.__code__.co_filename, fn.__code__.co_firstlineno
    if not has_own_source(fn):
        raise UsageError(
            "is not part of your project (stdlib or site-packages)", function=name, file=file, line=line
        )
    ctx = resolver.function_ctx(fn)
    if ctx is None:
        if read_source(file, fn.__globals__) is None:
            problem = "no source code is available (defined in a REPL or with exec?)"
        else:
            problem = "its definition cannot be found in its source (a lambda, or the file changed?)"
        raise UsageError(
            f"{problem}: lmprog.analyze needs the program's source; define it with def in a .py file",
            function=name,
            file=file,
            line=line,
        )
    ctx.bound_self = bound_self
    node = walker.node_for(Runtime(inner))
    assert node is not None
    return node


def _result(walker: Walker, roots: list[Node], entry_key: str, entry_module: str) -> ProgramSource:
    nodes = walker.nodes
    order = list(nodes)
    parts: dict[str, Part] = {k: Part(k, n.kind, n.path, n.line, n.source) for k, n in nodes.items()}
    for table in (walker.types, walker.constants):
        for key, d in table.items():
            parts.setdefault(key, Part(key, d.kind, d.path, d.line, d.source, d.outline))
    lm_keys = [k for k in order if nodes[k].kind == "lm"]
    callers: dict[str, set[str]] = {}
    for caller, callees in walker.edges.items():
        for callee in callees:
            callers.setdefault(callee, set()).add(caller)
    on_path, frontier = set(lm_keys), list(lm_keys)
    while frontier:
        for caller in callers.get(frontier.pop(), ()):
            if caller not in on_path:
                on_path.add(caller)
                frontier.append(caller)
    return ProgramSource(
        entry=entry_key,
        roots=[n.key for n in roots],
        functions=[nodes[k].lm for k in order if nodes[k].lm is not None],  # type: ignore[misc]
        call_graph={k: sorted(walker.edges[k]) for k in order},
        program_hash=_program_hash(walker, entry_key, entry_module),
        parts=parts,
        lm_keys=lm_keys,
        on_path=frozenset(on_path),
        order=order,
        call_sites=dict(walker.sites),
        signature_types={k: list(n.signature_types) for k, n in nodes.items() if n.signature_types},
        users={**walker.type_users, **walker.constant_users},
        warnings=list(walker.warnings),
    )


def _program_hash(walker: Walker, entry_key: str, entry_module: str) -> str:
    """Hash of the normalized reachable program. Keys are made relative to the entry's top-level
    package, so a copy of the project imported under another package name hashes the same."""
    top = entry_module.split(".")[0] + "." if "." in entry_module else ""

    def portable(key: str) -> str:
        return key[len(top) :] if top and key.startswith(top) else key

    parts = ["lmprog-program-v1", portable(entry_key)]
    for key in sorted(walker.nodes, key=portable):
        node = walker.nodes[key]
        ctx = node.ctx
        text = canonical_text(ctx.module.file.code(ctx.node)) if ctx else described_source(node.obj, node.lm)
        extra = decorator_text(node.lm) if node.lm is not None else ""
        parts.append(f"{node.kind} {portable(key)} {extra}\n{text}")
    definitions = {**walker.types, **walker.constants}
    for key in sorted(definitions, key=portable):
        parts.append(f"{definitions[key].kind} {portable(key)}\n{definitions[key].canonical}")
    return _digest(parts)


def _described_signature(func: Any, resolver: Resolver) -> list[str]:
    try:
        signature = str(inspect.signature(func))
    except (TypeError, ValueError):
        signature = ""
    parts = [func.__name__, signature, inspect.getdoc(func) or ""]
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # unresolvable forward references: the signature text has the names
        hints = {}
    parts.extend(f"{name}: {runtime_type_text(hint, resolver)}" for name, hint in hints.items())
    return parts


def _stable(value: Any) -> str:
    if value is None or isinstance(value, str | int | float | bool):
        return repr(value)
    model = getattr(value, "model", None)
    kind = type(value).__qualname__
    return f"{kind}(model={model!r})" if isinstance(model, str) else kind


def _digest(parts: list[str]) -> str:
    return hashlib.sha256("\n\x00\n".join(parts).encode("utf-8")).hexdigest()
