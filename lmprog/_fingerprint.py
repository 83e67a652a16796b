"""Stable fingerprints of code and data: the same in every process and checkout.

Code is identified by its module, qualified name and source text (and the plain values its closure
captured), never by a memory address; data by the canonical JSON of its rows; any other value by
its JSON-friendly view (:func:`to_jsonable`, also how values are written on the wire).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import hashlib
import inspect
import json
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel


def digest(value: Any, size: int = 16) -> str:
    """A short SHA-256 of ``value``'s canonical JSON (anything not JSON is named by its type)."""
    text = json.dumps(value, sort_keys=True, default=_plain)
    return hashlib.sha256(text.encode()).hexdigest()[:size]


def data_fingerprint(rows: Iterable[Mapping[str, Any]]) -> str:
    h = hashlib.sha256()
    for row in rows:
        h.update(json.dumps(dict(row), sort_keys=True, default=str).encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


def code_identity(obj: Any, _depth: int = 0) -> dict[str, Any]:
    """A callable's identity: module, qualified name and a hash of its source (and of the plain
    values its closure captured). Callable objects are named by their class; partials by their
    function and arguments."""
    if isinstance(obj, functools.partial):
        return {
            "partial": code_identity(obj.func, _depth + 1),
            "args": digest([obj.args, obj.keywords]),
        }
    func = getattr(obj, "__func__", obj)  # a bound method: its function
    if not (inspect.isfunction(func) or inspect.isbuiltin(func) or inspect.isclass(func)):
        func = type(obj)  # a callable object: its class's code
    ident: dict[str, Any] = {
        "module": getattr(func, "__module__", None),
        "name": getattr(func, "__qualname__", repr(func)),
    }
    # built in or defined at a prompt: its name is all there is
    with contextlib.suppress(OSError, TypeError):
        ident["source"] = hashlib.sha256(inspect.getsource(func).encode()).hexdigest()[:16]
    closure = getattr(func, "__closure__", None)
    if closure and _depth < 3:
        ident["closure"] = digest([_cell(c, _depth) for c in closure])
    return ident


def _cell(cell: Any, depth: int) -> Any:
    try:
        value = cell.cell_contents
    except ValueError:  # an empty cell
        return None
    if isinstance(value, str | int | float | bool | type(None)):
        return value
    if isinstance(value, list | tuple | dict):
        try:
            return json.loads(json.dumps(value, sort_keys=True))
        except (TypeError, ValueError):
            return type(value).__name__
    if callable(value):
        return code_identity(value, depth + 1)
    return type(value).__qualname__


def _plain(value: Any) -> Any:
    if isinstance(value, set | frozenset):
        return sorted(map(str, value))
    return type(value).__qualname__


def to_jsonable(value: Any) -> Any:
    """A JSON-friendly view of a value: Enums by value, models and dataclasses as dicts, tuples
    and sets as lists (sets sorted), dict keys as strings; anything unknown as its ``repr``."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {_json_key(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, set | frozenset):
        items = [to_jsonable(item) for item in value]
        return sorted(items, key=lambda item: json.dumps(item, sort_keys=True, default=repr))
    if isinstance(value, list | tuple):
        return [to_jsonable(item) for item in value]
    return repr(value)


def _json_key(key: Any) -> str:
    plain = to_jsonable(key)
    return plain if isinstance(plain, str) else json.dumps(plain)
