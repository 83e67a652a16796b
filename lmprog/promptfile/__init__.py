"""Prompt files: the optimized state of an lm_function (:class:`State`) as a reviewable YAML file;
staleness, the Dotprompt export, and the atomic file writes prompt files, cassettes and reports use.

Holds ``_files`` (``State``, paths, read/write, staleness), ``_demofit`` (whether a demo fits a
signature), ``_pool`` (the retrieved-demo pool of ``optimizer="knn"``), ``_dotprompt`` and
``_atomic``. Reads an lm_function through the :class:`PromptFunction` protocol: it sits below
``function`` and never imports it. May import: ``errors``, ``settings``, ``_fingerprint``,
``signature``, ``format``.
"""

from __future__ import annotations

from lmprog.promptfile._atomic import atomic_write_text
from lmprog.promptfile._demofit import demo_problems, fit_demo
from lmprog.promptfile._dotprompt import export_dotprompt
from lmprog.promptfile._files import (
    HEADER,
    SCHEMA_VERSION,
    PromptFunction,
    State,
    dump_yaml,
    function_id,
    load_state,
    prompt_path,
    read,
    read_yaml,
    render,
    safe_file_name,
    status,
    write,
)
from lmprog.promptfile._pool import DEFAULT_MAX_POOL, DemoPool, pool_from_doc, pool_problems

__all__ = [
    "DEFAULT_MAX_POOL",
    "HEADER",
    "SCHEMA_VERSION",
    "DemoPool",
    "PromptFunction",
    "State",
    "atomic_write_text",
    "demo_problems",
    "dump_yaml",
    "export_dotprompt",
    "fit_demo",
    "function_id",
    "load_state",
    "pool_from_doc",
    "pool_problems",
    "prompt_path",
    "read",
    "read_yaml",
    "render",
    "safe_file_name",
    "status",
    "write",
]
