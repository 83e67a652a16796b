"""The ``@lm_function`` decorator and ``LMFunction``, the callable it returns (sync or async), with
its per-function state.

Holds ``_decorator`` (the typed ``lm_function`` decorator), ``_function`` (``LMFunction``,
``AsyncLMFunction``, state overrides), ``_run`` (one call's attempts: the retry policy),
``_score`` (label scoring calls), ``_stream`` (``fn.stream``: its events, over the same attempts) and
``_pickle`` (how an lm_function travels to process workers). May import every layer below it:
``signature``, ``lm``, ``format``, ``trace``, ``promptfile``, ``tools`` and (on first use, for its
libcst) ``source``.
"""

from __future__ import annotations

from lmprog.function._decorator import LMFunctionDecorator, lm_function
from lmprog.function._function import SHORT_OUTPUT_TOKENS, AsyncLMFunction, LMFunction
from lmprog.function._run import (
    DEFAULT_REASONING_EFFORT,
    FORMAT_RETRIES,
    MAX_RETRY_TOKENS,
    TRUNCATION_RETRIES,
    RunSpec,
)
from lmprog.function._score import can_score, content_free_scores, score_requests
from lmprog.function._states import states_in_force, use_states
from lmprog.function._stream import (
    PROVIDER_RETRY,
    FinalOutput,
    PartialOutput,
    Restart,
    StreamEvent,
    TextChunk,
)
from lmprog.promptfile import State

__all__ = [
    "DEFAULT_REASONING_EFFORT",
    "FORMAT_RETRIES",
    "MAX_RETRY_TOKENS",
    "PROVIDER_RETRY",
    "SHORT_OUTPUT_TOKENS",
    "TRUNCATION_RETRIES",
    "AsyncLMFunction",
    "FinalOutput",
    "LMFunction",
    "LMFunctionDecorator",
    "PartialOutput",
    "Restart",
    "RunSpec",
    "State",
    "StreamEvent",
    "TextChunk",
    "can_score",
    "content_free_scores",
    "lm_function",
    "score_requests",
    "states_in_force",
    "use_states",
]
