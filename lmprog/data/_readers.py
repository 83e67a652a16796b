"""File readers for ``load_dataset``: each yields ``(line number, parsed row)`` and raises
:class:`~lmprog.errors.DatasetError` naming the file and the line of the first malformed row."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lmprog.errors import DatasetError

FORMATS = ("jsonl", "json", "csv", "tsv")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv"}


def describe_value(value: Any) -> str:
    """A value's kind in JSON terms, for messages ("an array", "a number (3)")."""
    names = {list: "an array", dict: "an object", str: "a string", type(None): "null"}
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    return names.get(type(value), type(value).__name__)


def read_rows(path: Path, format: str | None, encoding: str) -> Iterator[tuple[int, Any]]:
    """The rows of a data file (format from ``format`` or the suffix); the file is read and
    decoded before this returns, so a missing or empty file fails here."""
    kind = (format or _SUFFIXES.get(path.suffix.lower(), "")).lower().lstrip(".")
    if kind not in FORMATS:
        raise DatasetError(
            f"{path}: unsupported data format {path.suffix or '(no suffix)'!r}; use one of "
            f"{', '.join('.' + f for f in FORMATS)} or pass format="
        )
    try:
        raw = path.read_bytes()
    except FileNotFoundError as e:
        raise DatasetError(f"{path}: no such file") from e
    except OSError as e:
        raise DatasetError(f"{path}: cannot read the file: {e.strerror or e}") from e
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DatasetError(f"{path}, line {line}: not valid {encoding} text; pass encoding=") from e
    if not text.strip():
        raise DatasetError(f"{path}: the file is empty")
    if kind == "jsonl":
        return _read_jsonl(path, text)
    if kind == "json":
        return _read_json(path, text)
    return _read_csv(path, text, "\t" if kind == "tsv" else ",")


def _read_jsonl(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{path}, line {number}: invalid JSON: {e.msg} (column {e.colno})") from e


def _read_json(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    """Yield the elements of a top-level array with the line each starts on."""
    decoder = json.JSONDecoder()

    def fail(message: str, pos: int) -> DatasetError:
        return DatasetError(f"{path}, line {text.count(chr(10), 0, pos) + 1}: {message}")

    def skip(pos: int) -> int:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        return pos

    pos = skip(0)
    if text[pos] != "[":
        try:
            top = decoder.decode(text)
        except json.JSONDecodeError as e:
            raise fail(f"invalid JSON: {e.msg} (column {e.colno})", e.pos) from e
        raise fail(f"expected a JSON array of objects at the top level, got {describe_value(top)}", pos)
    pos = skip(pos + 1)
    if pos < len(text) and text[pos] == "]":
        return
    while True:
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise fail(f"invalid JSON: {e.msg} (column {e.colno})", e.pos) from e
        yield text.count("\n", 0, pos) + 1, value
        pos = skip(end)
        if pos < len(text) and text[pos] == "]":
            if skip(pos + 1) < len(text):
                raise fail("invalid JSON: extra data after the top-level array", skip(pos + 1))
            return
        if pos >= len(text) or text[pos] != ",":
            raise fail("invalid JSON: expected ',' or ']' after an array element", pos)
        pos = skip(pos + 1)


def _read_csv(path: Path, text: str, delimiter: str) -> Iterator[tuple[int, Any]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header: list[str] | None = None
    while True:
        start = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise DatasetError(f"{path}, line {start}: malformed CSV: {e}") from e
        if not record:
            continue
        if header is None:
            dupes = sorted({h for h in record if record.count(h) > 1})
            if dupes:
                raise DatasetError(f"{path}, line {start}: duplicate column name(s) in the header: {dupes}")
            header = record
            continue
        if len(record) != len(header):
            raise DatasetError(
                f"{path}, line {start}: expected {len(header)} columns ({', '.join(header)}), "
                f"got {len(record)}"
            )
        yield start, dict(zip(header, record, strict=True))
