"""The grounding listing of a program, ordered by relevance and cut to a token budget."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lmprog.source._program import Part, ProgramSource

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
