"""Several runs of a program for one input: ``best_of`` (independent rollouts, the best by a
reward) and ``refine`` (attempts that see the previous attempt and its feedback).

Holds ``_ensemble``. May import: ``errors``, ``settings``, ``metrics`` (``Feedback``), ``trace``,
``promptfile``, ``function``.
"""

from __future__ import annotations

from lmprog.ensemble._ensemble import ROLLOUT_TEMPERATURE, Reward, best_of, refine

__all__ = ["ROLLOUT_TEMPERATURE", "Reward", "best_of", "refine"]
