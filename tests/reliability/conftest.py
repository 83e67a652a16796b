"""The soak tests (``@pytest.mark.slow`` in this folder) run only when asked for: ``pytest -m slow
tests/reliability``, ``LMPROG_SOAK=1``, or ``python benchmarks/soak.py``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "slow" in (config.option.markexpr or "") or os.environ.get("LMPROG_SOAK"):
        return
    skip = pytest.mark.skip(reason="soak test: run it with -m slow or benchmarks/soak.py")
    for item in items:
        if item.get_closest_marker("slow") is not None and HERE in item.path.parents:
            item.add_marker(skip)
