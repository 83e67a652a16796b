"""Parallel evaluation: ``evaluate(program, data, metric)`` runs a program on every example, scores
it and collects traces and usage into an :class:`EvaluationResult`.

Holds ``_run`` (``evaluate``), ``_task`` (one example on a worker), ``_results`` (the result
types and the progress bar), ``_workers`` (joblib backends), ``_ledger`` (the budget ledger
worker processes share) and ``_cluster`` (dask and ray). May import: ``function``, ``trace``,
``data``, ``settings``, ``usage``, ``errors``. joblib is imported on first use only.
"""

from __future__ import annotations

from lmprog.evaluate._results import EvaluationResult, ExampleResult
from lmprog.evaluate._run import evaluate

__all__ = ["EvaluationResult", "ExampleResult", "evaluate"]
