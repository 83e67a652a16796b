"""Test helpers that ship with lmprog: a scripted offline LM (and, separately, a pytest plugin)."""

from __future__ import annotations

from lmprog.testing._scripted import ScriptedLM

__all__ = ["ScriptedLM"]
