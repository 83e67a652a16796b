"""TODO"""

from __future__ import annotations

from lmprog.promptfile._atomic import atomic_write_text
from lmprog.promptfile._files import (
    HEADER,
    SCHEMA_VERSION,
    dump_yaml,
    export_dotprompt,
    function_id,
    load_state,
    prompt_path,
    read,
    read_yaml,
    render,
    safe_file_name,
    save_result,
    status,
    write,
)

__all__ = [
    "HEADER",
    "SCHEMA_VERSION",
    "atomic_write_text",
    "dump_yaml",
    "export_dotprompt",
    "function_id",
    "load_state",
    "prompt_path",
    "read",
    "read_yaml",
    "render",
    "safe_file_name",
    "save_result",
    "status",
    "write",
]
