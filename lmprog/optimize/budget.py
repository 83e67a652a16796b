"""Hard caps on what an optimization may spend."""

from __future__ import annotations

from dataclasses import dataclass

from lmprog.errors import BudgetExceededError, UsageError
from lmprog.usage import Usage


@dataclass(frozen=True)
class Budget:
    """A hard cap the optimizer never exceeds.

    When a cap is reached the optimizer stops and returns the best result found so far
    (``OptimizationResult.stopped_by`` names the cap). ``None`` means no cap.

    Attributes:
        max_calls: requests that reach the provider (cache hits are free, retries count).
        max_cost: in the provider's currency, as litellm prices it.
        max_trials: search trials (candidate evaluations).

    Example:
        >>> from lmprog import Budget
        >>> Budget(max_calls=500, max_cost=0.50)
        Budget(max_calls=500, max_cost=0.5, max_trials=None)
    """

    max_calls: int | None = None
    max_cost: float | None = None
    max_trials: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_calls", "max_cost", "max_trials"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise UsageError(f"Budget.{name} must be >= 0, got {value}")

    def check(self, used: Usage) -> None:
        """Raise ``BudgetExceededError`` if ``used`` (requests including the one about to start)
        goes past a cap; called before every provider request inside an optimization."""
        if self.max_calls is not None and used.requests > self.max_calls:
            raise BudgetExceededError("max_calls", self.max_calls, used.requests - 1)
        if self.max_cost is not None and used.cost >= self.max_cost:
            raise BudgetExceededError("max_cost", self.max_cost, round(used.cost, 6))

    def trials_left(self, done: int) -> int | None:
        return None if self.max_trials is None else max(0, self.max_trials - done)
