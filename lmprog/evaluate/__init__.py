"""TODO"""

from __future__ import annotations

from lmprog.evaluate._results import EvaluationResult, ExampleResult
from lmprog.evaluate._run import evaluate

__all__ = ["EvaluationResult", "ExampleResult", "evaluate"]
