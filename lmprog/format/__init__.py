"""TODO"""

from __future__ import annotations

from lmprog.format._constrain import constraint_params, grammar, json_schema, response_format
from lmprog.format._prompt import (
    ParseFailure,
    format_output,
    output_values,
    parse_output,
    render_messages,
    retry_messages,
)
from lmprog.format._wire import to_jsonable
