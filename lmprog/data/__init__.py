"""TODO"""

from __future__ import annotations

from lmprog.data._examples import Example, check_inputs, load_dataset, location, select_inputs, split

__all__ = ["Example", "check_inputs", "load_dataset", "location", "select_inputs", "split"]
