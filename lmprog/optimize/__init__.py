"""TODO"""

from __future__ import annotations

from lmprog.optimize._base import Candidate, OptimizationResult, Optimizer, Task
from lmprog.optimize._optimize import (
    OPTIMIZERS,
    discover_functions,
    make_optimizer,
    make_task,
    optimize,
    register_optimizer,
    resolve_program,
)
from lmprog.optimize.budget import Budget

__all__ = [
    "OPTIMIZERS",
    "Budget",
    "Candidate",
    "OptimizationResult",
    "Optimizer",
    "Task",
    "discover_functions",
    "make_optimizer",
    "make_task",
    "optimize",
    "register_optimizer",
    "resolve_program",
]
