"""lmprog: program language models with plain Python.

Light names are imported eagerly; heavy ones (the LM client, static analysis) load on first
access so that ``import lmprog`` stays fast and never imports litellm, optuna or libcst.
``evaluate``, ``optimize`` and ``trace`` are modules that can be called as their function
(``lmprog.optimize(...)``, ``import lmprog.optimize.mipro``; see ``lmprog._callable_module``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lmprog._callable_module import make_callable
from lmprog._version import __version__
from lmprog.data import Example, load_dataset, split
from lmprog.ensemble import best_of, refine
from lmprog.errors import (
    BudgetExceededError,
    DatasetError,
    EvaluationError,
    LMError,
    LmprogError,
    MaxStepsError,
    MissingDependencyError,
    OutputParseError,
    PromptFileError,
    SignatureError,
    TransientLMError,
    TruncatedOutputError,
    UsageError,
)
from lmprog.evaluate import EvaluationResult, ExampleResult, evaluate
from lmprog.function import (
    FinalOutput,
    LMFunction,
    PartialOutput,
    Restart,
    StreamEvent,
    TextChunk,
    lm_function,
)
from lmprog.optimize import Budget, OptimizationResult, optimize
from lmprog.settings import configure, context
from lmprog.signature import History, Turn
from lmprog.tools import Tool
from lmprog.trace import trace, traced
from lmprog.usage import Usage

# after the imports above: the modules must be loaded and their functions defined
make_callable(__name__, "evaluate", "optimize", "trace")

if TYPE_CHECKING:
    from lmprog import metrics
    from lmprog.lm import LM, BaseLM, Completion, ToolCall
    from lmprog.metrics import Feedback
    from lmprog.source import ProgramSource, analyze

_LAZY = {
    "LM": "lmprog.lm",
    "BaseLM": "lmprog.lm",
    "Completion": "lmprog.lm",
    "ToolCall": "lmprog.lm",
    "Feedback": "lmprog.metrics",
    "analyze": "lmprog.source",
    "ProgramSource": "lmprog.source",
}


def __getattr__(name: str) -> Any:
    if name == "metrics":
        value = importlib.import_module("lmprog.metrics")
        globals()[name] = value
        return value
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lmprog' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "LM",
    "BaseLM",
    "Budget",
    "BudgetExceededError",
    "Completion",
    "DatasetError",
    "EvaluationError",
    "EvaluationResult",
    "Example",
    "ExampleResult",
    "Feedback",
    "FinalOutput",
    "History",
    "LMError",
    "LMFunction",
    "LmprogError",
    "MaxStepsError",
    "MissingDependencyError",
    "OptimizationResult",
    "OutputParseError",
    "PartialOutput",
    "ProgramSource",
    "PromptFileError",
    "Restart",
    "SignatureError",
    "StreamEvent",
    "TextChunk",
    "Tool",
    "ToolCall",
    "TransientLMError",
    "TruncatedOutputError",
    "Turn",
    "Usage",
    "UsageError",
    "__version__",
    "analyze",
    "best_of",
    "configure",
    "context",
    "evaluate",
    "lm_function",
    "load_dataset",
    "metrics",
    "optimize",
    "refine",
    "split",
    "trace",
    "traced",
]
