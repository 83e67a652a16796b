"""``ProgramSource``: what :func:`lmprog.analyze` found, and its rendering as grounding context:
the program listing ordered by relevance and cut to a token budget."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lmprog.source._walk import CallSite

if TYPE_CHECKING:
    from lmprog.source._targets import AnalyzedFunction


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

    Keys are qualified names, ``module.qualname`` (``proj.llm.Triage.classify``). What
    :func:`analyze` returns; :meth:`render` gives the listing optimizers ground proposals in.

    Attributes:
        entry: the entry point's key.
        functions: the reachable LMFunction objects in discovery order (breadth first from the
            entry, callees in source order).
        call_graph: every reached function's key -> the sorted keys of the functions it calls
            or refers to.
        program_hash: changes when any reached function, type or constant changes meaningfully
            (not for comments or formatting).
        call_sites: where each lm_function is called, by key.
        warnings: what the analysis could not follow, one sentence each.
    """

    entry: str
    roots: list[str]
    functions: list[AnalyzedFunction]
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
    def lm_functions(self) -> Mapping[str, AnalyzedFunction]:
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
        return render(self, max_tokens)


# -- the grounding listing ---------------------------------------------------------------------
CHARS_PER_TOKEN = 4

# Relevance ranks: lower is more relevant, dropped last.
_ENTRY, _LM, _SITES, _LM_TYPES, _HELPERS, _CONSTANTS, _TYPES, _OFF_PATH, _OTHER_CONSTANTS = range(9)
_LABELS = {
    _LM: "lm_function definitions",
    _SITES: "call-site lists",
    _LM_TYPES: "types",
    _HELPERS: "helpers",
    _CONSTANTS: "constants",
    _TYPES: "types",
    _OFF_PATH: "helpers",
    _OTHER_CONSTANTS: "constants",
}


@dataclass
class _Section:
    rank: int
    key: str
    text: str


def render(program: ProgramSource, max_tokens: int | None) -> str:
    sections = _layout(program)
    full = _join(sections)
    if max_tokens is None or len(full) <= max_tokens * CHARS_PER_TOKEN:
        return full
    budget = max_tokens * CHARS_PER_TOKEN
    kept = list(sections)
    dropped: list[_Section] = []
    by_relevance = sorted(enumerate(sections), key=lambda item: (-item[1].rank, -item[0]))
    for _, section in by_relevance:
        if section.rank == _ENTRY or len(_join(kept)) + len(_note(dropped, max_tokens, 0)) <= budget:
            break
        kept.remove(section)
        dropped.append(section)
    text = _join(kept)
    note = _note(dropped, max_tokens, budget - len(text))
    if len(text) + len(note) > budget:  # even the entry point does not fit: cut it
        marker = "\n# ... (truncated)\n"
        text = text[: max(budget - len(note) - len(marker), 0)].rstrip("\n") + marker
    return (text + note)[:budget]


def _layout(program: ProgramSource) -> list[_Section]:
    parts = program.parts
    base = _base_dir([p.path for p in parts.values() if p.path])
    sections: list[_Section] = []
    shown: set[str] = set()

    def where(part: Part) -> str:
        if part.path is None:
            return part.key
        path = os.path.relpath(part.path, base) if base else part.path
        return f"{part.key}  ({path}:{part.line})" if part.line else f"{part.key}  ({path})"

    def add(rank: int, key: str, title: str, body: str) -> None:
        sections.append(_Section(rank, key, f"# {title}\n{body.rstrip()}\n"))
        shown.add(key)

    entries = [k for k in program.roots if k in program.on_path] or program.roots
    for key in entries:
        if key in parts and parts[key].kind != "lm":
            add(_ENTRY, key, f"Entry point: {where(parts[key])}", parts[key].source)
    for key in program.lm_keys:
        part = parts[key]
        sites = program.call_sites.get(key, [])
        if sites:
            body = "\n".join(f"{_rel(s.path, base)}:{s.line} in {s.caller}\n{s.text}" for s in sites)
            sections.append(_Section(_SITES, key, f"## {key} is called from:\n{body}\n"))
        add(_LM, key, f"lm_function {where(part)}", part.source)
        for type_key in program.signature_types.get(key, []):
            if type_key not in shown and type_key in parts:
                add(
                    _LM_TYPES,
                    type_key,
                    f"type {where(parts[type_key])}, used by {key}",
                    parts[type_key].outline or parts[type_key].source,
                )
    functions = [k for k in program.order if k in parts and k not in shown and parts[k].kind != "lm"]
    for key in functions:
        if key in program.on_path:
            add(_HELPERS, key, f"helper {where(parts[key])}", parts[key].source)
    for key, part in parts.items():
        if part.kind in ("class", "alias") and key not in shown:
            add(_TYPES, key, f"type {where(part)}", part.outline or part.source)
    for key in functions:
        if key not in shown:
            add(_OFF_PATH, key, f"helper (reaches no lm_function) {where(parts[key])}", parts[key].source)
    for key, part in parts.items():
        if part.kind == "constant":
            users = program.users.get(key, [])
            rank = _CONSTANTS if any(u in program.on_path for u in users) else _OTHER_CONSTANTS
            add(rank, key, f"constant {where(part)}", part.source)
    return sections


def _join(sections: list[_Section]) -> str:
    return "\n".join(s.text for s in sections)


def _note(dropped: list[_Section], max_tokens: int, room: int) -> str:
    """What was left out: with names when ``room`` allows, else counts only."""
    if not dropped:
        return ""
    groups: dict[str, list[str]] = {}
    for section in sorted(dropped, key=lambda s: s.rank):
        groups.setdefault(_LABELS[section.rank], []).append(section.key.rsplit(".", 1)[-1])
    detailed = "; ".join(f"{len(names)} {label} ({_names(names)})" for label, names in groups.items())
    counts = ", ".join(f"{len(names)} {label}" for label, names in groups.items())
    for listed in (detailed, counts):
        note = f"\n# [omitted to fit {max_tokens} tokens: {listed}]\n"
        if len(note) <= room:
            return note
    return note


def _names(names: list[str], limit: int = 3) -> str:
    names = list(dict.fromkeys(reversed(names)))  # dropped last-first: back to listing order
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, ..."


def _base_dir(paths: list[str]) -> str:
    """The project root the shown paths are relative to: the folder holding the program's files,
    or, when that folder is a package (has ``__init__.py``), the folder its top-level package
    sits in. Never anything above it, so the name of the checkout folder (``checkout_a/``) never
    reaches a prompt and the same project in two folders renders the same text."""
    real = [os.path.dirname(os.path.abspath(p)) for p in paths if not p.startswith("<")]
    if not real:
        return ""
    try:
        base = os.path.commonpath(real)
    except ValueError:  # different drives
        return ""
    while os.path.isfile(os.path.join(base, "__init__.py")) and os.path.dirname(base) != base:
        base = os.path.dirname(base)
    return base


def _rel(path: str, base: str) -> str:
    return os.path.relpath(path, base) if base and not path.startswith("<") else path
