"""Old import path of the prompt format (render messages, parse completions), kept for users: it
now lives in :mod:`lmprog.format`.
"""

from __future__ import annotations

from lmprog.format import (
    ParseFailure,
    format_output,
    output_values,
    parse_output,
    render_messages,
    retry_messages,
    to_jsonable,
)

__all__ = [
    "ParseFailure",
    "format_output",
    "output_values",
    "parse_output",
    "render_messages",
    "retry_messages",
    "to_jsonable",
]
