"""Static analysis of lmprog programs with libcst.

:func:`analyze` walks a program from its entry point to the lm_functions it reaches and returns a
:class:`ProgramSource`: the reachable functions, the call graph, the types and constants they use,
a hash of it all, and a compact listing that grounds instruction proposals.
:func:`signature_hash` fingerprints what shapes one lm_function's prompt, for prompt-file staleness.
"""

from __future__ import annotations

from lmprog.source._analyze import HASH_LENGTH, analyze, signature_hash
from lmprog.source._files import clear_cache, is_project_file
from lmprog.source._program import Part, ProgramSource
from lmprog.source._walk import CallSite

__all__ = [
    "HASH_LENGTH",
    "CallSite",
    "Part",
    "ProgramSource",
    "analyze",
    "clear_cache",
    "is_project_file",
    "signature_hash",
]
