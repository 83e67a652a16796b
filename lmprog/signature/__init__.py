"""An lm_function's spec, read from the function itself: input and output fields, their type specs
(what each annotation means to a model, how its text is read back) and the descriptions from
docstrings and comments.

Holds ``_signature`` (``Signature``, ``Field``), ``_failure`` (``ParseFailure``, the one
parse-failure type, with its structured ``Problem`` records), ``_specs``/``_specs_json`` (type specs),
``_registry`` (annotation -> type spec), ``_history`` (``History``, the conversation-history
parameter type), ``_reasoning`` (the wire signature of
``reasoning=True``), ``_tools`` (the arguments of a tool function), ``_docstrings`` and ``_text``
(pure string helpers for reading completions). May import: ``errors``. Nothing else of lmprog.
"""

from __future__ import annotations

from lmprog.signature._constraints import ConstrainedSpec
from lmprog.signature._constraints import keywords as constraint_keywords
from lmprog.signature._failure import ParseFailure, Problem
from lmprog.signature._history import HISTORY, History, Turn, history_turns, is_history
from lmprog.signature._reasoning import REASONING, split_reasoning, with_reasoning
from lmprog.signature._registry import UnsupportedType, build_spec, type_name
from lmprog.signature._signature import Field, Signature, field_spec, signature_from_function
from lmprog.signature._specs import (
    MISSING,
    BoolSpec,
    ChoiceSpec,
    FloatSpec,
    IntSpec,
    StrSpec,
    TypeSpec,
    UnionSpec,
    is_none_text,
)
from lmprog.signature._specs_json import DictSpec, ListSpec, RecordSpec, SetSpec, TupleSpec
from lmprog.signature._text import clean_text, iter_json, unfence, whole_json
from lmprog.signature._tools import TOOL_CALLS, arguments_record

__all__ = [
    "HISTORY",
    "MISSING",
    "REASONING",
    "TOOL_CALLS",
    "BoolSpec",
    "ChoiceSpec",
    "ConstrainedSpec",
    "DictSpec",
    "Field",
    "FloatSpec",
    "History",
    "IntSpec",
    "ListSpec",
    "ParseFailure",
    "Problem",
    "RecordSpec",
    "SetSpec",
    "Signature",
    "StrSpec",
    "TupleSpec",
    "Turn",
    "TypeSpec",
    "UnionSpec",
    "UnsupportedType",
    "arguments_record",
    "build_spec",
    "clean_text",
    "constraint_keywords",
    "field_spec",
    "history_turns",
    "is_history",
    "is_none_text",
    "iter_json",
    "signature_from_function",
    "split_reasoning",
    "type_name",
    "unfence",
    "whole_json",
    "with_reasoning",
]
