"""Retrying transient LM failures: exponential backoff with full jitter, honouring ``retry_after``.

Only :class:`~lmprog.errors.TransientLMError` is retried; every other exception propagates at
once. After the last retry the last transient error is raised (it is an ``LMError``). The
attempts themselves are driven by ``lmprog.lm._call.CallRun``.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

from lmprog.errors import TransientLMError, UsageError

logger = logging.getLogger("lmprog.lm")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait between attempts.

    Attempt ``n`` (1-based) that failed transiently is followed by a wait drawn uniformly from
    ``[0, min(backoff_max, backoff_base * 2 ** (n - 1))]``, or by the provider's ``retry_after``
    hint capped at ``backoff_max`` when it gave one.
    """

    num_retries: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if (
            isinstance(self.num_retries, bool)
            or not isinstance(self.num_retries, int)
            or self.num_retries < 0
        ):
            raise UsageError(f"num_retries must be an int >= 0, got {self.num_retries!r}")
        if self.backoff_base < 0 or self.backoff_max < 0:
            raise UsageError(
                f"backoff_base and backoff_max must be >= 0, got {self.backoff_base!r}, {self.backoff_max!r}"
            )

    def delay(self, attempt: int, error: TransientLMError) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if error.retry_after is not None:
            return min(max(float(error.retry_after), 0.0), self.backoff_max)
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        return self.rng.uniform(0.0, ceiling)


def next_wait(policy: RetryPolicy, attempt: int, error: TransientLMError, model: str) -> float | None:
    """The pause after failed attempt number ``attempt`` (1-based), or None when the retries are
    spent (then the caller raises ``error``)."""
    if attempt > policy.num_retries:
        if policy.num_retries:
            logger.warning("%s: giving up after %d attempts: %s", model, attempt, error)
        return None
    wait = policy.delay(attempt, error)
    logger.info(
        "%s: transient failure on attempt %d/%d (%s); retrying in %.2fs",
        model,
        attempt,
        policy.num_retries + 1,
        error,
        wait,
    )
    return wait
