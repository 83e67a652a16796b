"""What both frameworks' workers share: the model, and counting (and capping) the LM requests.

Both frameworks reach the model through litellm: lmprog through its own client, DSPy through
``dspy.LM``. For the embedded model, DSPy is given lmprog's litellm custom provider (the same
``CustomLLM`` registered in the DSPy process), so both run the very same GGUF file in-process
with llama.cpp, at the same temperature and ``max_tokens``.

Every request that reaches litellm passes through :class:`Meter`, which wraps
``litellm.completion``/``acompletion``: it counts requests and tokens (cache hits of either
framework never get this far, so they are free for both) and, while a cap is set, refuses the
requests past it. The cap is how the same LM-call budget is enforced on DSPy, whose optimizers
have no budget of their own; lmprog is given the same number as ``Budget(max_calls=...)``.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


class BudgetCap(RuntimeError):
    """Raised for a request past the cap (the request never reaches the model)."""


@dataclass
class Counts:
    requests: int = 0
    refused: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model_seconds: float = 0.0

    def minus(self, other: Counts) -> Counts:
        return Counts(
            self.requests - other.requests,
            self.refused - other.refused,
            self.prompt_tokens - other.prompt_tokens,
            self.completion_tokens - other.completion_tokens,
            round(self.model_seconds - other.model_seconds, 3),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Meter:
    """Counts every litellm request of this process; ``cap`` refuses requests past a number."""

    def __init__(self) -> None:
        self.counts = Counts()
        self.cap: int | None = None
        self._cap_base = 0
        self._lock = threading.Lock()
        self._installed = False

    def install(self, litellm: Any) -> None:
        if self._installed:
            return
        sync, async_ = litellm.completion, litellm.acompletion

        def completion(*args: Any, **kwargs: Any) -> Any:
            self._admit()
            started = time.perf_counter()
            response = sync(*args, **kwargs)
            self._record(response, time.perf_counter() - started)
            return response

        async def acompletion(*args: Any, **kwargs: Any) -> Any:
            self._admit()
            started = time.perf_counter()
            response = await async_(*args, **kwargs)
            self._record(response, time.perf_counter() - started)
            return response

        litellm.completion, litellm.acompletion = completion, acompletion
        self._installed = True

    def snapshot(self) -> Counts:
        with self._lock:
            return Counts(**asdict(self.counts))

    def set_cap(self, cap: int | None) -> None:
        """Refuse requests once ``cap`` more requests have been made from now (None: no cap)."""
        with self._lock:
            self.cap = cap
            self._cap_base = self.counts.requests

    def _admit(self) -> None:
        with self._lock:
            if self.cap is not None and self.counts.requests - self._cap_base >= self.cap:
                self.counts.refused += 1
                raise BudgetCap(f"LM-call budget of {self.cap} requests exhausted")
            self.counts.requests += 1

    def _record(self, response: Any, seconds: float) -> None:
        usage = getattr(response, "usage", None)
        with self._lock:
            self.counts.prompt_tokens += int(getattr(usage, "prompt_tokens", 0) or 0)
            self.counts.completion_tokens += int(getattr(usage, "completion_tokens", 0) or 0)
            self.counts.model_seconds += seconds


METER = Meter()


def litellm_module() -> Any:
    """litellm, imported the way lmprog imports it (local price list, quiet logs), metered."""
    from lmprog.lm import _litellm

    module = _litellm.load_litellm()
    METER.install(module)
    return module


def dspy_model_name(model: str) -> str:
    """The litellm model name DSPy should use for ``model`` (lmprog's provider for local ones)."""
    from lmprog.lm import _litellm
    from lmprog.lm import _local as local

    if not local.is_local_model(model):
        return model
    litellm = litellm_module()
    _litellm._register_local_provider(litellm)
    return f"{_litellm.LOCAL_PROVIDER}/{local.resolve_model_path(model)}"


def set_llama_threads(threads: int | None) -> None:
    """Run the embedded model with ``threads`` llama.cpp threads (None: lmprog's own choice).

    Sets ``LMPROG_LLAMA_THREADS`` in this worker process before the model loads, for both
    frameworks alike (DSPy reaches the model through lmprog's provider).
    """
    if threads:
        os.environ["LMPROG_LLAMA_THREADS"] = str(threads)


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def agreement(choices: dict[str, tuple[list[Any], list[Any]]], first: str, second: str) -> dict[str, int]:
    """How many inputs two ways of scoring (``choices[way] = (raw, calibrated)`` choices per
    input) chose the same option for, raw and calibrated."""
    (raw_a, cal_a), (raw_b, cal_b) = choices[first], choices[second]
    return {
        "agree_score": sum(a == b for a, b in zip(raw_a, raw_b, strict=True)),
        "agree_calibrated": sum(a == b for a, b in zip(cal_a, cal_b, strict=True)),
    }
