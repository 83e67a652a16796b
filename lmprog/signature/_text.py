"""Text helpers for reading model completions: fences, quotes, numbers, JSON values.

Everything here is pure string work on untrusted text. Nothing is evaluated: JSON is decoded
with :mod:`json` only, and the "relaxed" fallback merely rewrites the usual small-model slips
(single quotes, trailing commas, Python ``True``/``False``/``None``) before decoding again.
All functions run in time linear in the text (times a small constant bound on attempts).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator

#: Words that mean "no value" for an optional output.
NONE_WORDS = frozenset({"", "none", "null"})

_FENCE_RE = re.compile(r"\A```[^\n`]*\n(?P<body>.*?)\n?```\Z", re.DOTALL)
_NUMBER_RE = re.compile(r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w])")
_STRICT_NUMBER_RE = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?")
_EDGE_CHARS = " \t\r\n\"'`*_.!,;:“”‘’"
_SPACES_RE = re.compile(r"[\s_\-]+")
_PY_LITERAL_RE = re.compile(r"(True|False|None)(?!\w)")
_PY_LITERALS = {"True": "true", "False": "false", "None": "null"}
_QUOTE_PAIRS = {'"': '"', "'": "'", "“": "”", "‘": "’", "`": "`"}

#: Bounds on the work spent on one text (huge garbage must stay cheap): candidate JSON starts
#: tried, of which how many get the (pure Python) relaxed rewrite, over at most how many chars.
MAX_JSON_ATTEMPTS = 64
MAX_RELAXED_ATTEMPTS = 8
MAX_RELAXED_CHARS = 100_000


def unfence(text: str) -> str:
    """The body of a Markdown code fence when the whole (stripped) text is one fenced block."""
    stripped = text.strip()
    match = _FENCE_RE.match(stripped)
    return match.group("body").strip() if match else stripped


def clean_text(text: str) -> str:
    """A free-text value as the model meant it: stripped, unfenced, unquoted.

    A text that is exactly one JSON string literal is decoded (``format_output`` uses that to
    carry strings that would otherwise be altered here); a text wrapped in one pair of matching
    quotes with no other such quote inside loses the quotes.
    """
    stripped = unfence(text)
    if len(stripped) >= 2 and stripped[0] == '"' and stripped[-1] == '"':
        try:
            decoded = json.loads(stripped)
        except (ValueError, RecursionError):
            decoded = None
        if isinstance(decoded, str):
            return decoded
    if len(stripped) >= 2:
        closing = _QUOTE_PAIRS.get(stripped[0])
        inner = stripped[1:-1]
        if (
            closing is not None
            and stripped[-1] == closing
            and closing not in inner
            and stripped[0] not in inner
        ):
            return inner.strip()
    return stripped


def normalize_word(text: str) -> str:
    """Case-, spacing- and punctuation-insensitive form used to compare options."""
    return _SPACES_RE.sub(" ", text.strip(_EDGE_CHARS)).strip().casefold()


def to_number(token: str) -> float | int | None:
    """Convert one number token (``1,000``, ``-2.5e3``) to int or float; None when out of range."""
    raw = token.replace(",", "")
    try:
        if re.fullmatch(r"[-+]?\d+", raw):
            return int(raw)
        value = float(raw)
    except ValueError:  # e.g. more digits than int() accepts
        return None
    return value if math.isfinite(value) else None


def strict_number(text: str) -> float | int | None:
    """The number when the whole text (minus decoration) is one number, else None."""
    core = text.strip(_EDGE_CHARS.replace("_", "")).strip()
    if core.endswith("."):
        core = core[:-1]
    if not _STRICT_NUMBER_RE.fullmatch(core):
        return None
    return to_number(core)


def numbers_in(text: str, limit: int = 3) -> list[str]:
    """Up to ``limit`` number tokens found in free text (enough to tell "one" from "several")."""
    found: list[str] = []
    for match in _NUMBER_RE.finditer(text):
        found.append(match.group())
        if len(found) >= limit:
            break
    return found


def iter_json(text: str, openers: str = "[{") -> Iterator[object]:
    """Decoded JSON values found in ``text``, in order, each starting with one of ``openers``.

    Each value is decoded strictly first and then through the relaxed rewrite. Values nested in
    an already decoded one are skipped. At most :data:`MAX_JSON_ATTEMPTS` starts are tried.
    """
    decoder = json.JSONDecoder()
    position = 0
    relaxed_left = MAX_RELAXED_ATTEMPTS
    for _ in range(MAX_JSON_ATTEMPTS):
        start = _next_opener(text, openers, position)
        if start < 0:
            return
        try:
            value, end = decoder.raw_decode(text, start)
        except (ValueError, RecursionError):
            relaxed = _relaxed_decode(text, start) if relaxed_left > 0 else None
            relaxed_left -= 1
            if relaxed is None:
                position = start + 1
                continue
            value, end = relaxed
        yield value
        position = end


def whole_json(text: str) -> tuple[bool, object]:
    """``(True, value)`` when the whole text is one JSON value (strict or relaxed), else ``(False, None)``."""
    stripped = text.strip()
    try:
        return True, json.loads(stripped)
    except (ValueError, RecursionError):
        pass
    if stripped[:1] in ("[", "{"):
        relaxed = _relaxed_decode(stripped, 0)
        if relaxed is not None and relaxed[1] == len(stripped):
            return True, relaxed[0]
    return False, None


def _next_opener(text: str, openers: str, position: int) -> int:
    indexes = [i for i in (text.find(ch, position) for ch in openers) if i >= 0]
    return min(indexes) if indexes else -1


def _balanced_end(text: str, start: int) -> int:
    """Index just past the bracket that closes ``text[start]``, or -1. Strings of either quote
    kind are skipped; an unbalanced or mismatched structure gives -1."""
    closers = {"[": "]", "{": "}"}
    stack: list[str] = []
    quote = ""
    escaped = False
    for index in range(start, min(len(text), start + MAX_RELAXED_CHARS)):
        char = text[index]
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
        elif char in ('"', "'"):
            quote = char
        elif char in closers:
            stack.append(closers[char])
        elif char in ("]", "}"):
            if not stack or stack.pop() != char:
                return -1
            if not stack:
                return index + 1
    return -1


def _relaxed_decode(text: str, start: int) -> tuple[object, int] | None:
    end = _balanced_end(text, start)
    if end < 0:
        return None
    rewritten = _rewrite_relaxed(text[start:end])
    if rewritten is None:
        return None
    try:
        return json.loads(rewritten), end
    except (ValueError, RecursionError):
        return None


def _rewrite_relaxed(chunk: str) -> str | None:
    """Rewrite single-quoted strings, Python literals and trailing commas into JSON."""
    out: list[str] = []
    index = 0
    length = len(chunk)
    while index < length:
        char = chunk[index]
        if char in ('"', "'"):
            end = index + 1
            body: list[str] = []
            while end < length and chunk[end] != char:
                if chunk[end] == "\\" and end + 1 < length:
                    body.append(chunk[end : end + 2])
                    end += 2
                    continue
                body.append(chunk[end])
                end += 1
            if end >= length:
                return None
            text = "".join(body)
            if char == "'":
                text = text.replace("\\'", "'").replace('"', '\\"')
            out.append('"' + text + '"')
            index = end + 1
            continue
        if char == ",":
            ahead = index + 1
            while ahead < length and chunk[ahead].isspace():
                ahead += 1
            if ahead < length and chunk[ahead] in "]}":
                index += 1
                continue
        word = _PY_LITERAL_RE.match(chunk, index)
        if word and not (index and (chunk[index - 1].isalnum() or chunk[index - 1] == "_")):
            out.append(_PY_LITERALS[word.group()])
            index = word.end()
            continue
        out.append(char)
        index += 1
    return "".join(out)
