"""How values are written on the wire: output values, input values, JSON-friendly views.

The rendering depends on the value only (never on a signature), so a test double can write a
completion in exactly the form the parser reads without knowing any annotation:

- text as is, unless reading it back would change it (surrounding whitespace or quotes, a code
  fence, an ``output:`` prefix, a line that looks like a field header, or a word that means "no
  value" such as ``none``): then it is written as one JSON string literal, which the parser
  decodes;
- ``yes`` / ``no`` for booleans, ``none`` for None, an Enum by its value, numbers as JSON;
- lists, dicts, models and dataclasses as one-line JSON.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterable
from typing import Any

from lmprog._fingerprint import to_jsonable as to_jsonable  # re-exported: part of the wire vocabulary
from lmprog.signature import clean_text, is_none_text

_OUTPUT_HEADER_RE = re.compile(
    r"\A\s*(?:\*\*|__)?\s*output\s*(?:\*\*|__)?\s*:[ \t]*(?:\*\*|__)?", re.IGNORECASE
)


def strip_output_header(text: str) -> str:
    """Drop a leading ``output:`` label (models often echo it)."""
    return _OUTPUT_HEADER_RE.sub("", text, count=1)


def render_output_value(value: Any, *, single: bool, names: Iterable[str] = ()) -> str:
    """One output value as written in a completion. ``single``: the value is the whole
    completion; otherwise it follows ``name: `` and ``names`` are the headers it must not mimic."""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, str):
        return _render_text(value, single=single, names=names)
    return render_plain(value)


def render_plain(value: Any) -> str:
    """A non-text value: yes/no, none, JSON."""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "none"
    if isinstance(value, str):
        return value
    return json.dumps(to_jsonable(value), ensure_ascii=False)


def read_single_text(text: str) -> str:
    """The text of a single free-text output as the parser reads it."""
    return clean_text(strip_output_header(text))


def header_pattern(names: Iterable[str]) -> re.Pattern[str] | None:
    """A line-start pattern for ``name:`` headers of the given field names (case-insensitive,
    ``_``/``-``/space interchangeable, optional Markdown bullets, ``#`` and ``**bold**``)."""
    alternatives = sorted({_name_pattern(name) for name in names}, key=len, reverse=True)
    if not alternatives:
        return None
    return re.compile(
        r"[ \t]*(?:[-*>#]+[ \t]*)?(?P<pre>\*\*|__)?[ \t]*(?P<name>"
        + "|".join(alternatives)
        + r")[ \t]*(?P<post>\*\*|__)?[ \t]*:[ \t]*(?P<after>\*\*|__)?[ \t]*",
        re.IGNORECASE,
    )


def header_key(name: str) -> str:
    """The key a header name is looked up by (``Final Answer`` -> ``final_answer``)."""
    return re.sub(r"[ \t_-]+", "_", name.strip()).casefold()


def _name_pattern(name: str) -> str:
    return "[ _-]+".join(re.escape(part) for part in re.split(r"[ _-]+", name) if part)


def _render_text(text: str, *, single: bool, names: Iterable[str]) -> str:
    read_back = read_single_text(text) if single else clean_text(text)
    ambiguous = read_back != text or is_none_text(text)
    if not ambiguous and not single:
        # after "name: " a leading bold marker would be read as part of the header
        pattern = header_pattern(names)
        lines_look_like_headers = pattern is not None and any(
            pattern.match(line) for line in text.split("\n")
        )
        ambiguous = text.startswith(("**", "__")) or lines_look_like_headers
    return json.dumps(text, ensure_ascii=False) if ambiguous else text
