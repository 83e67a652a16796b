"""What passes between lmprog and an LM: messages, completions, and the constraint kinds a
provider may take. The vocabulary of :mod:`lmprog.lm`; imports nothing of lmprog but usage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from lmprog.usage import Usage

Messages = list[dict[str, str]]
#: What a provider constrains replies with (see :mod:`lmprog.format`).
ConstraintKind = Literal["grammar", "json_schema"]
CONSTRAINT_KINDS: tuple[ConstraintKind, ...] = ("grammar", "json_schema")
#: the role of the single message that carries a plain-text prompt for the model to continue
#: (no chat template); only an LM whose ``takes_prompt()`` is true accepts it
PROMPT_ROLE = "prompt"


@dataclass(frozen=True)
class Completion:
    """One completion and what it cost.

    Attributes:
        text: the completion's text.
        usage: this call's usage (``calls=1``; ``requests`` every provider request it took,
            failed ones included, 0 for a cache hit).
        cache_hit: it came from the persistent cache.
        model: the model that answered.
        latency: the wall time of the whole call in seconds (retries included).
        attempts: how many provider requests it took (0 for a cache hit).
        finish_reason: the provider's (``"stop"``; ``"length"`` when cut at ``max_tokens``: such
            a completion is never cached; None when unknown).
        logprobs: the OpenAI-style per-token list (``token``, ``logprob``, ``top_logprobs``) when
            the request asked for ``logprobs`` and the provider returned them.
    """

    text: str
    usage: Usage = field(default_factory=Usage)
    cache_hit: bool = False
    model: str = ""
    latency: float = 0.0
    attempts: int = 1
    finish_reason: str | None = None
    logprobs: list[dict[str, Any]] | None = None
