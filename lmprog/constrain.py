"""TODO"""

from __future__ import annotations

from lmprog.format._constrain import constraint_params, grammar, json_schema, response_format

__all__ = ["constraint_params", "grammar", "json_schema", "response_format"]
