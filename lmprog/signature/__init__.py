"""An lm_function's spec, read from the function itself: input and output fields, their type specs
(what each annotation means to a model, how its text is read back) and the descriptions from
docstrings and comments.

Holds ``_signature`` (``Signature``, ``Field``), ``_failure`` (``ParseFailure``, the one
parse-failure type, with its structured ``Problem`` records), ``_specs``/``_specs_json`` (type specs),
``_registry`` (annotation -> type spec), ``_docstrings`` and ``_text`` (pure string helpers for
reading completions). May import: ``errors``. Nothing else of lmprog.
"""

from __future__ import annotations

from lmprog.signature._failure import ParseFailure, Problem
from lmprog.signature._registry import type_name
from lmprog.signature._signature import Field, Signature, field_spec, signature_from_function
from lmprog.signature._specs import MISSING

__all__ = [
    "MISSING",
    "Field",
    "ParseFailure",
    "Problem",
    "Signature",
    "field_spec",
    "signature_from_function",
    "type_name",
]
