"""What the embedded-model test files share: the marks that select and skip them, and the support
tickets of the examples (``examples/data/tickets.jsonl``) several of them optimize on.

A file marked with ``NEEDS_LOCAL`` is selected by ``-m local`` (and left out by ``-m "not
local"``), and is skipped, naming the extra to install, where the runtime (``xllamacpp``) is
missing::

    from local_model import NEEDS_LOCAL

    pytestmark = NEEDS_LOCAL

Files that call the model through ``settings`` take the ``local_settings`` fixture from
``conftest.py`` (the embedded model, greedy, no response cache).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]

NEEDS_LOCAL = [
    pytest.mark.local,
    pytest.mark.skipif(
        importlib.util.find_spec("xllamacpp") is None,
        reason="needs the local extra: pip install 'lmprog[local]'",
    ),
]

TICKETS: list[dict[str, Any]] = [
    json.loads(line) for line in (ROOT / "examples" / "data" / "tickets.jsonl").read_text().splitlines()
]
