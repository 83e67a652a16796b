"""Data rows: ``Example``, ``load_dataset`` (lists, JSONL, JSON, CSV/TSV), input checks and splits.

Holds ``_examples`` and ``_readers`` (file formats). May import: ``errors``.
"""

from __future__ import annotations

from lmprog.data._examples import Example, check_inputs, load_dataset, location, select_inputs, split

__all__ = ["Example", "check_inputs", "load_dataset", "location", "select_inputs", "split"]
