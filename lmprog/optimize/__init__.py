"""``optimize()``: improve the prompts of every lm_function a program reaches, from data.

The optimizer contract is :class:`Optimizer` (``_base``); each optimizer lives in its own module
(``bootstrap``: labeled, bootstrap, random search; ``mipro``) and shares the pieces in ``demos``,
``propose``, ``search``, ``identity``, ``budget`` and ``saving``. May import every layer below it
(``evaluate``, ``function``, ``promptfile``, ``trace``, ``data``, ``lm``...) and, on first use,
``source`` (libcst) and optuna.
"""

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
