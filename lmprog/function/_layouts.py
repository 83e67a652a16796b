"""Which prompt layout a call uses: the state's, unless the LM cannot take it.

The ``"completion"`` layout is a plain-text prompt (:mod:`lmprog.format._layout`); an LM whose
``takes_prompt()`` is false (a litellm chat model) gets the ``"transcript"`` layout instead, the
same content as chat messages, with a warning logged once per function and model. Falling back
rather than failing keeps a prompt file optimized on the embedded model usable on a chat model;
the span's messages show what was sent.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from lmprog.format import Layout
from lmprog.lm import BaseLM

logger = logging.getLogger("lmprog.function")

_warned: set[tuple[str, str]] = set()
_lock = threading.Lock()


def layout_for(func: Any, lm: BaseLM, layout: Layout) -> Layout:
    """The layout a call of ``func`` on ``lm`` uses for the state's ``layout``."""
    if layout != "completion" or lm.takes_prompt():
        return layout
    key = (str(func.signature.qualname), lm.model)
    with _lock:
        first = key not in _warned
        _warned.add(key)
    if first:
        logger.warning(
            "%s: layout 'completion' needs an LM that continues plain text (the embedded model); "
            "%s takes chat messages only, so the 'transcript' layout is used",
            func.signature.qualname,
            lm.model,
        )
    return "transcript"
