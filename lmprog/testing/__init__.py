"""Test helpers that ship with lmprog: a scripted offline LM, a fault-injecting LM wrapper (and,
separately, a pytest plugin)."""

from __future__ import annotations

from lmprog.testing._faults import FaultEvent, FaultyLM
from lmprog.testing._scripted import ScriptedLM

__all__ = ["FaultEvent", "FaultyLM", "ScriptedLM"]
