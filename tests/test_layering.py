"""The import graph of ``lmprog/``: no cycle, imports flow down the layers, lazy imports only for
heavy dependencies.

The graph is read with :mod:`ast` from every import statement: at module level, inside functions
and under ``if TYPE_CHECKING:`` (an annotation is a dependency too). ``from package import name``
is an edge to ``package.name`` when that is a module, else to ``package`` (its ``__init__``).
Importing any module of a package runs the package's ``__init__``, which re-exports the whole
package: so a package is one unit of layering, and its modules import each other by their own
paths (never through the package's ``__init__``).

The layers, from the bottom up (:data:`LAYERS`): a module may import modules of lower layers and
the modules of its own package, nothing else. An import inside a function is allowed only to defer
a heavy dependency (:data:`HEAVY`: measured at 0.1 s or more to import, or optional): never an
lmprog module that does not itself load one at import time.

Another package's private module (``lmprog.lm._secrets`` from ``lmprog.trace``) is never imported:
a package lends names to others through its ``__init__`` only.

Run ``python tests/test_layering.py [ROOT]`` to print the module map of a checkout (line counts,
layers, cycles).
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "lmprog"

#: The layers, bottom first. An entry names a module or a package (with all its modules).
LAYERS: list[tuple[str, ...]] = [
    # foundations: no lmprog imports but each other
    ("lmprog._version", "lmprog.errors"),
    ("lmprog._fingerprint", "lmprog._callable_module", "lmprog.settings", "lmprog.usage"),
    # independent concepts: the spec of a function, data rows, metrics, static analysis, LM clients
    ("lmprog.signature", "lmprog.data", "lmprog.source", "lmprog.lm"),
    # the wire format (signature -> messages, completion -> values) and the call tree
    ("lmprog.format", "lmprog.trace"),
    # prompt files (below the functions that load them), metrics (which may read a trace) and
    # tools (functions the model calls, each call a span)
    ("lmprog.promptfile", "lmprog.metrics", "lmprog.tools"),
    ("lmprog.function",),
    ("lmprog.evaluate", "lmprog.ensemble"),
    ("lmprog.optimize",),
    ("lmprog.report", "lmprog.testing"),
    ("lmprog.cli",),
    # the public face: the package itself and the old import paths kept for users
    (
        "lmprog",
        "lmprog.cache",
        "lmprog.constrain",
        "lmprog.local",
        "lmprog.local_runtime",
        "lmprog.otel",
        "lmprog.prompt",
    ),
]

#: Dependencies an import inside a function may defer (third-party roots), with why.
HEAVY = {
    "litellm": "1-2 s to import",
    "optuna": "about 1 s",
    "sqlalchemy": "0.4 s (optuna storage)",
    "libcst": "optional at import time: only static analysis needs it",
    "xllamacpp": "the embedded model runtime (optional extra)",
    "opentelemetry": "optional extra",
    "joblib": "0.3 s",
    "cloudpickle": "0.1 s (process workers only)",
    "rich": "0.1 s (progress display only)",
    "distributed": "optional extra (evaluate on a dask cluster)",
    "ray": "optional extra (evaluate on a ray cluster)",
    "psycopg": "optional extra (PostgreSQL storage)",
    "bm25s": "optional extra (knn: retrieved demos), with scipy",
}


@dataclass(frozen=True)
class Import:
    """One import edge: ``source`` imports ``target`` (a module of lmprog, or a third-party root)."""

    source: str
    target: str
    line: int
    where: str  # "module", "function" or "type" (under ``if TYPE_CHECKING:``)
    internal: bool


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package under ``root``, by dotted name (a package by its own name)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(root: Path = ROOT) -> list[Import]:
    """Every import statement of every module, resolved to modules (see the module docs)."""
    mods = modules(root)
    edges: list[Import] = []
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        where = _statement_places(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _targets(name, path.name == "__init__.py", node, mods):
                    internal = target in mods
                    if target != name:
                        edges.append(
                            Import(name, target, node.lineno, where.get(id(node), "module"), internal)
                        )
    return edges


def _statement_places(tree: ast.Module) -> dict[int, str]:
    places: dict[int, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            for inner in ast.walk(node):
                places[id(inner)] = "function"
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                for sub in ast.walk(inner):
                    places.setdefault(id(sub), "type")
    return places


def _targets(
    module: str, is_package: bool, node: ast.Import | ast.ImportFrom, mods: dict[str, Path]
) -> list[str]:
    if isinstance(node, ast.Import):
        return [_owner(alias.name, mods) for alias in node.names]
    if node.level:
        base = module.split(".")
        base = base[: len(base) - node.level + (1 if is_package else 0)]
        package = ".".join([*base, *([node.module] if node.module else [])])
    else:
        package = node.module or ""
    if package not in mods:
        return [_owner(package, mods)]
    return [f"{package}.{a.name}" if f"{package}.{a.name}" in mods else package for a in node.names]


def _owner(dotted: str, mods: dict[str, Path]) -> str:
    """The lmprog module ``dotted`` names (or its nearest package), else its third-party root."""
    probe = dotted
    while probe:
        if probe in mods:
            return probe
        probe = probe.rpartition(".")[0]
    return dotted.split(".")[0]


def cycles(edges: list[Import]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        if e.internal:
            graph.setdefault(e.source, set()).add(e.target)
            graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph) + 100))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def unit_of(module: str) -> str | None:
    """The layer entry a module belongs to (the longest matching entry), if any."""
    best = None
    for layer in LAYERS:
        for entry in layer:
            if (module == entry or module.startswith(entry + ".")) and (
                best is None or len(entry) > len(best)
            ):
                best = entry
    return best


def layer_of(module: str) -> int:
    unit = unit_of(module)
    return next(i for i, layer in enumerate(LAYERS) if unit in layer) if unit else -1


# -- the tests -------------------------------------------------------------------------------------
def test_the_import_graph_has_no_cycle() -> None:
    assert cycles(imports()) == []


def test_every_module_has_a_layer() -> None:
    assert [m for m in modules() if unit_of(m) is None] == []


def test_imports_flow_down_the_layers() -> None:
    bad = []
    for e in imports():
        if not e.internal or unit_of(e.source) == unit_of(e.target):
            continue
        if layer_of(e.target) >= layer_of(e.source):
            bad.append(f"{e.source}:{e.line} ({e.where}) imports {e.target}, not a lower layer")
    assert bad == []


def test_a_package_is_imported_from_outside_only() -> None:
    """A module never imports its own package's ``__init__`` (which imports the module back)."""
    bad = [
        f"{e.source}:{e.line} imports its own package {e.target}"
        for e in imports()
        if e.internal and e.source.startswith(e.target + ".") and e.target != "lmprog"
    ]
    bad += [f"{e.source}:{e.line} imports the lmprog package" for e in imports() if e.target == "lmprog"]
    assert bad == []


def private_owner(module: str) -> str | None:
    """The package that owns ``module`` when it is private (``lmprog.lm`` for
    ``lmprog.lm._secrets``: the part before its first ``_name``), else None."""
    parts = module.split(".")
    for index, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:index])
    return None


def private_imports(edges: list[Import]) -> list[str]:
    """Imports of another package's private module (``lmprog.X._y`` from outside ``lmprog.X``)."""
    bad = []
    for e in edges:
        owner = private_owner(e.target) if e.internal else None
        if owner is not None and e.source != owner and not e.source.startswith(owner + "."):
            bad.append(f"{e.source}:{e.line} imports {e.target}, private to {owner}")
    return sorted(set(bad))


def test_other_packages_import_through_the_owning_package() -> None:
    """What a package lends to others is re-exported by its ``__init__``; its ``_modules`` are its own."""
    assert private_imports(imports()) == []


def test_the_private_import_rule_sees_a_reach_into_another_package(tmp_path: Path) -> None:
    pkg = tmp_path / "lmprog"
    for sub in ("lm", "trace"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "_shared.py").write_text("")
    (pkg / "lm" / "_secrets.py").write_text("")
    (pkg / "lm" / "_base.py").write_text("from lmprog.lm._secrets import redact\nimport lmprog._shared\n")
    (pkg / "trace" / "_spans.py").write_text(
        "from lmprog.lm._secrets import redact\nfrom lmprog.lm import x\n"
    )
    assert private_imports(imports(pkg)) == [
        "lmprog.trace._spans:1 imports lmprog.lm._secrets, private to lmprog.lm"
    ]


def test_imports_inside_functions_only_defer_heavy_dependencies() -> None:
    heavy_modules = _modules_loading_heavy_dependencies()
    bad = [
        f"{e.source}:{e.line} imports {e.target} inside a function"
        for e in imports()
        if e.where == "function" and e.target not in HEAVY and e.target not in heavy_modules
    ]
    assert bad == []


def _modules_loading_heavy_dependencies() -> set[str]:
    """lmprog modules whose import loads a heavy dependency (at module level, directly or through
    other modules): deferring their import defers it."""
    edges = [e for e in imports() if e.where == "module"]
    heavy = {e.source for e in edges if e.target in HEAVY}
    while True:
        more = {e.source for e in edges if e.internal and e.target in heavy} - heavy
        if not more:
            return heavy
        heavy |= more


@pytest.mark.parametrize(
    "source, expected",
    [
        ("import a\n", []),
        ("from lmprog import b\n", ["lmprog.b"]),
        ("from lmprog.b import c\n", ["lmprog.b"]),
        ("from . import b\n", ["lmprog.b"]),
        ("def f():\n    from lmprog.b import c\n", ["lmprog.b"]),
    ],
)
def test_the_reader_resolves_imports(tmp_path: Path, source: str, expected: list[str]) -> None:
    pkg = tmp_path / "lmprog"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text(source)
    (pkg / "b.py").write_text("import lmprog.a\n")
    found = [e.target for e in imports(pkg) if e.source == "lmprog.a" and e.internal]
    assert found == expected
    assert cycles(imports(pkg)) == ([["lmprog.a", "lmprog.b"]] if expected else [])


def test_the_cycle_finder_sees_imports_inside_functions(tmp_path: Path) -> None:
    pkg = tmp_path / "lmprog"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from lmprog.b import x\n")
    (pkg / "b.py").write_text("def x():\n    from lmprog import c\n")
    (pkg / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from lmprog.a import y\n"
    )
    [edge] = [e for e in imports(pkg) if e.source == "lmprog.c" and e.internal]
    assert edge.where == "type"
    assert cycles(imports(pkg)) == [["lmprog.a", "lmprog.b", "lmprog.c"]]


# -- the module map ----------------------------------------------------------------------------------
def module_map(root: Path = ROOT) -> str:
    """A Markdown map of the package: modules with line counts by package, and the cycles."""
    mods = modules(root)
    lines = ["| module | lines | layer |", "|---|---:|---:|"]
    total = 0
    for name, path in mods.items():
        count = len(path.read_text(encoding="utf-8").splitlines())
        total += count
        rel = path.relative_to(root.parent)
        lines.append(f"| {rel} | {count} | {layer_of(name)} |")
    lines.append(f"| **total ({len(mods)} files)** | {total} | |")
    edges = imports(root)
    found = cycles(edges)
    lines += ["", f"Cycles (counting imports inside functions and under TYPE_CHECKING): {len(found)}"]
    for component in found:
        lines.append(f"- {len(component)} modules: " + ", ".join(component))
    lazy = [e for e in edges if e.where == "function" and e.internal]
    lines += ["", f"lmprog imports inside functions: {len(lazy)}"]
    private = private_imports(edges)
    lines += ["", f"Imports of another package's private module: {len(private)}"]
    lines += [f"- {line}" for line in private]
    return "\n".join(lines)


if __name__ == "__main__":
    print(module_map(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT))
