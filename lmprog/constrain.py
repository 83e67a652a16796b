"""Old import path of constrained decoding (grammars and JSON schemas), kept for users: it now
lives in :mod:`lmprog.format`.
"""

from __future__ import annotations

from lmprog.format import constraint_params, grammar, json_schema, response_format

__all__ = ["constraint_params", "grammar", "json_schema", "response_format"]
