"""``ProgramSource``: what :func:`lmprog.analyze` found, and its rendering as grounding context."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lmprog.source._walk import CallSite

if TYPE_CHECKING:
    from lmprog.function._function import LMFunction


@dataclass(frozen=True)
class Part:
    """One piece of the program: a function (``kind`` ``lm`` or ``function``), a class, a type
    alias (``alias``) or a ``constant``; ``source`` is its exact text, comments included (for a
    function without source, what ``inspect`` shows of it)."""

    key: str
    kind: str
    path: str | None
    line: int | None
    source: str
    outline: str | None = None


@dataclass(frozen=True)
class ProgramSource:
    """The static picture of a program, from its entry point to the lm_functions it reaches.

    Keys are qualified names, ``module.qualname`` (``proj.llm.Triage.classify``). ``functions``
    holds the reachable LMFunction objects in discovery order (breadth first from the entry,
    callees in source order); ``call_graph`` maps every reached function to the sorted keys of the
    functions it calls or refers to; ``program_hash`` changes when any reached function, type or
    constant changes meaningfully (not for comments or formatting).
    """

    entry: str
    roots: list[str]
    functions: list[LMFunction]
    call_graph: dict[str, list[str]]
    program_hash: str
    parts: dict[str, Part]
    lm_keys: list[str]
    on_path: frozenset[str]
    order: list[str] = field(default_factory=list)
    call_sites: dict[str, list[CallSite]] = field(default_factory=dict)
    signature_types: dict[str, list[str]] = field(default_factory=dict)
    users: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def sources(self) -> dict[str, str]:
        """Function key -> its source text."""
        return {k: p.source for k, p in self.parts.items() if p.kind in ("lm", "function")}

    @property
    def types(self) -> dict[str, str]:
        """Class and type alias key -> its definition text."""
        return {k: p.source for k, p in self.parts.items() if p.kind in ("class", "alias")}

    @property
    def constants(self) -> dict[str, str]:
        """Module-level constant key -> its assignment text."""
        return {k: p.source for k, p in self.parts.items() if p.kind == "constant"}

    @property
    def lm_functions(self) -> Mapping[str, LMFunction]:
        """Key -> LMFunction for every reachable lm_function with a runtime object."""
        return {self.key_of(fn): fn for fn in self.functions}

    def key_of(self, fn: Any) -> str:
        """The key of a function of this program (an LMFunction, or a plain or traced function)."""
        from lmprog.source._targets import unwrap

        obj = unwrap(fn)
        inner = unwrap(getattr(obj, "fn", obj))
        return f"{inner.__module__}.{inner.__qualname__}"

    def reachable(self, start: str | None = None) -> list[str]:
        """Keys reachable from ``start`` (default: the roots), breadth first."""
        frontier = [start] if start is not None else list(self.roots)
        seen = dict.fromkeys(frontier)
        while frontier:
            key = frontier.pop(0)
            for callee in self.call_graph.get(key, []):
                if callee not in seen:
                    seen[callee] = None
                    frontier.append(callee)
        return list(seen)

    def render(self, max_tokens: int | None = None) -> str:
        """A compact program listing, most relevant first: the entry point; for each lm_function
        its call sites, its definition and the types of its signature; then helpers, other types
        and constants. With ``max_tokens`` (estimated as characters / 4) the least relevant parts
        are dropped first and a closing note says what was left out."""
        from lmprog.source._render import render

        return render(self, max_tokens)
