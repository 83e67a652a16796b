"""Benchmark cells: one (task, framework, method, seed) result on disk, keyed by its settings.

A cell's *settings* are everything that can change its result (harness version, model
fingerprint, split sizes, the fixed test set's seed, the LM-call budget, the optimizer's options,
``max_tokens``, the framework's version). Its *key* is a hash of them. A cell file
``<root>/<task>/<framework>-<method>-seed<k>.json`` holds ``{"key", "settings", "result"}``.

- :meth:`CellStore.load` returns a stored result only when its key is the wanted one.
- :meth:`CellStore.save` writes atomically (a killed run leaves no half file); a file computed
  under other settings is kept beside it as ``<name>.<its key[:10]>.json``, never overwritten.
- :func:`missing` lists the cells still to compute: a re-run computes only those, and a killed
  run resumes where it stopped.

Pure: no model, no framework imports (tested in ``tests/test_bench_harness.py``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HARNESS_VERSION = "2.0"


@dataclass(frozen=True)
class Cell:
    """One unit of work: an optimizer run (unless zero-shot) and its test evaluation."""

    task: str
    framework: str
    method: str
    seed: int
    settings: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def name(self) -> str:
        return f"{self.framework}-{self.method}-seed{self.seed}"

    @property
    def key(self) -> str:
        return cell_key(self.identity())

    def identity(self) -> dict[str, Any]:
        """Everything the key covers: the cell's coordinates and its settings."""
        return {
            "harness": HARNESS_VERSION,
            "task": self.task,
            "framework": self.framework,
            "method": self.method,
            "seed": self.seed,
            "settings": dict(self.settings),
        }


def cell_key(identity: Mapping[str, Any]) -> str:
    """A stable hash of ``identity`` (key order does not matter; values must be JSON)."""
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=_reject)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _reject(value: Any) -> Any:
    raise TypeError(f"cell settings must be plain JSON values, got {type(value).__name__}: {value!r}")


class CellStore:
    """Cell files under ``root`` (``<root>/<task>/<cell.name>.json``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, cell: Cell) -> Path:
        return self.root / cell.task / f"{cell.name}.json"

    def load(self, cell: Cell) -> dict[str, Any] | None:
        """The stored result of ``cell`` when it was computed under the same settings, else None."""
        stored = self._read(self.path(cell))
        if stored is None or stored.get("key") != cell.key:
            return None
        result = stored.get("result")
        return result if isinstance(result, dict) else None

    def stale(self, cell: Cell) -> dict[str, Any] | None:
        """The stored file of ``cell``'s coordinates when it was computed under other settings."""
        stored = self._read(self.path(cell))
        return stored if stored is not None and stored.get("key") != cell.key else None

    def save(self, cell: Cell, result: Mapping[str, Any]) -> Path:
        """Write ``result`` for ``cell``; an existing file of other settings is kept aside."""
        path = self.path(cell)
        path.parent.mkdir(parents=True, exist_ok=True)
        old = self.stale(cell)
        if old is not None:
            aside = path.with_name(f"{path.stem}.{str(old.get('key', 'unkeyed'))[:10]}.json")
            os.replace(path, aside)
        payload = {"key": cell.key, **cell.identity(), "result": dict(result)}
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(payload, indent=1, sort_keys=True, default=str) + "\n")
        os.replace(tmp, path)
        return path

    def _read(self, path: Path) -> dict[str, Any] | None:
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None  # a damaged file counts as missing: the cell is computed again
        return data if isinstance(data, dict) else None


def missing(cells: Iterable[Cell], store: CellStore) -> list[Cell]:
    """The cells with no stored result under their current settings, in the given order."""
    return [cell for cell in cells if store.load(cell) is None]


def cache_dir(work: Path, cell: Cell) -> Path:
    """The response cache of one cell (its framework's own cache, never shared with the other)."""
    return (
        Path(work) / "cache" / cell.framework / cell.task / f"{cell.method}-seed{cell.seed}-{cell.key[:10]}"
    )
