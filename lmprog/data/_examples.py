"""Data rows: ``Example``, ``load_dataset`` (lists, JSONL, JSON, CSV/TSV), input checks and splits.

A row's keys that match the program's parameter names are its inputs and the rest are its labels,
unless the row marks its inputs explicitly with :meth:`Example.with_inputs`. Rows loaded from a
file remember where they came from, so that every later complaint about a row (a missing input,
an error during evaluation) can name the file and the line.
"""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic_core import to_jsonable_python

from lmprog.data._readers import describe_value, read_rows
from lmprog.errors import DatasetError, UsageError

__all__ = ["Example", "check_inputs", "load_dataset", "location", "select_inputs", "split"]

T = TypeVar("T")


class Example(Mapping[str, Any]):
    """An immutable row: a mapping of field name to value, with attribute access.

    ``ex["answer"]`` and ``ex.answer`` are the same (use the item form for a field whose name is
    also a method, such as ``inputs``). ``Example({"q": 1}, a=2)`` builds like ``dict``. Two
    examples are equal when their fields are equal (the input marking and the origin do not
    count), an example equals a plain ``dict`` with the same items, and examples are hashable
    (unhashable values such as lists are hashed by content). Examples pickle and copy.
    """

    __slots__ = ("_data", "_hash", "_input_keys", "_origin")

    _data: dict[str, Any]
    _input_keys: tuple[str, ...] | None
    _origin: str | None
    _hash: int | None

    def __init__(self, data: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None, /, **fields: Any):
        values = dict(data if data is not None else (), **fields)
        bad = [k for k in values if not isinstance(k, str)]
        if bad:
            raise UsageError(f"Example field names must be strings, got {bad!r}")
        object.__setattr__(self, "_data", values)
        object.__setattr__(self, "_input_keys", None)
        object.__setattr__(self, "_origin", None)
        object.__setattr__(self, "_hash", None)

    # -- mapping ---------------------------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in Example.__slots__:
            raise AttributeError(name)
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(
                f"Example has no field {name!r}; its fields are: {', '.join(self._data) or '(none)'}"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Example is immutable; build a new one, e.g. Example({**ex, name: value})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Example is immutable")

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Example):
            return self._data == other._data
        if isinstance(other, Mapping):
            return self._data == dict(other)
        return NotImplemented

    def __hash__(self) -> int:
        if self._hash is None:
            object.__setattr__(self, "_hash", hash(_freeze(self._data)))
        return self._hash  # type: ignore[return-value]

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self._data, self._input_keys, self._origin))

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v!r}" if k.isidentifier() else f"**{{{k!r}: {v!r}}}" for k, v in self.items())
        marked = "" if self._input_keys is None else f".with_inputs({', '.join(map(repr, self._input_keys))})"
        return f"Example({body}){marked}"

    # -- inputs and labels -----------------------------------------------------------------------
    @property
    def input_keys(self) -> tuple[str, ...] | None:
        """The keys marked as inputs with :meth:`with_inputs`, or None when unmarked."""
        return self._input_keys

    def with_inputs(self, *names: str) -> Example:
        """A copy whose inputs are exactly ``names`` (whatever the program's parameters are).

        A name may be absent from the row (an optional parameter the row leaves to its default).
        """
        copy = _rebuild(self._data, tuple(dict.fromkeys(names)), self._origin)
        return copy

    def inputs(self, names: Iterable[str] | None = None) -> dict[str, Any]:
        """The input fields: the marked ones if :meth:`with_inputs` was used, else the fields among
        ``names`` (a program's parameter names)."""
        keys = self._keys_for(names)
        return {k: v for k, v in self._data.items() if k in keys}

    def labels(self, names: Iterable[str] | None = None) -> dict[str, Any]:
        """Every field that is not an input (see :meth:`inputs`)."""
        keys = self._keys_for(names)
        return {k: v for k, v in self._data.items() if k not in keys}

    def _keys_for(self, names: Iterable[str] | None) -> frozenset[str]:
        if self._input_keys is not None:
            return frozenset(self._input_keys)
        if names is None:
            raise UsageError(
                "this Example does not say which fields are inputs: mark them with "
                "ex.with_inputs(...) or pass the program's parameter names"
            )
        return frozenset(names)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-serializable dict (models and dataclasses become dicts, unknown
        objects their ``repr``). The input marking is not included."""
        out: dict[str, Any] = to_jsonable_python(self._data, fallback=repr)
        return out


def _rebuild(data: dict[str, Any], input_keys: tuple[str, ...] | None, origin: str | None) -> Example:
    ex = Example(data)
    object.__setattr__(ex, "_input_keys", input_keys)
    object.__setattr__(ex, "_origin", origin)
    return ex


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return frozenset((k, _freeze(v)) for k, v in value.items())
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, set | frozenset):
        return frozenset(_freeze(v) for v in value)
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def location(example: Mapping[str, Any], index: int, source: str | None = None) -> str:
    """Where a row comes from, for messages: ``"train.jsonl, line 7"`` for rows loaded from a
    file, else ``"data[6]"`` (``source`` names the collection, default ``data``)."""
    origin = example._origin if isinstance(example, Example) else None
    return origin or f"{source or 'data'}[{index}]"


def load_dataset(
    path_or_rows: str | os.PathLike[str] | Iterable[Mapping[str, Any]],
    *,
    limit: int | None = None,
    required: Iterable[str] | None = None,
    inputs: Iterable[str] | None = None,
    format: str | None = None,
    encoding: str = "utf-8-sig",
    name: str | None = None,
) -> list[Example]:
    """Read rows into examples.

    Args:
        path_or_rows: a path (``.jsonl``/``.ndjson``: one JSON object a line; ``.json``: an
            array of objects; ``.csv``/``.tsv``: a header row then one row a line, every value a
            string) or an iterable of dicts/Examples (Examples are kept as they are).
        limit: keep the first rows only.
        required: keys every row must have.
        inputs: mark these keys as the inputs of every row (see :meth:`Example.with_inputs`).
        format: overrides the file's suffix (``"jsonl"``, ``"json"``, ``"csv"``, ``"tsv"``).
        encoding: the file's text encoding (a UTF-8 byte-order mark is skipped).
        name: names an in-memory collection in messages (``trainset[3]``; default ``data``).

    Returns:
        The examples, in the order of the rows.

    Raises:
        DatasetError: a malformed file or row, naming the file, the line and the problem
            (invalid JSON, a row that is not an object, a wrong column count, an empty file, a
            missing required key).
        UsageError: a negative ``limit``, or a single mapping instead of rows.

    Example:
        >>> from lmprog import load_dataset
        >>> data = load_dataset([{"question": "2 + 2?", "answer": "4"}], required=["answer"])
        >>> data[0].answer, data[0]["question"]
        ('4', '2 + 2?')
    """
    if limit is not None and limit < 0:
        raise UsageError(f"limit must be >= 0, got {limit}")
    need = tuple(required or ())
    mark = tuple(inputs) if inputs is not None else None
    path: str | None = None
    if isinstance(path_or_rows, str | os.PathLike):
        path = str(path_or_rows)
        rows = read_rows(Path(path_or_rows), format, encoding)
    elif isinstance(path_or_rows, Mapping):
        raise UsageError("load_dataset expects a path or a list of rows, got a single mapping")
    else:
        rows = ((0, row) for row in path_or_rows)

    out: list[Example] = []
    if limit == 0:
        return out
    for index, (line, row) in enumerate(rows):
        where = f"{path}, line {line}" if path else f"{name or 'data'}[{index}]"
        ex = _to_example(row, where, from_file=path is not None)
        if path is not None:
            object.__setattr__(ex, "_origin", where)
        missing = [k for k in need if k not in ex]
        if missing:
            raise DatasetError(
                f"{where}: missing required key(s) {', '.join(map(repr, missing))} "
                f"(the row has: {', '.join(ex) or 'no keys'})"
            )
        out.append(ex.with_inputs(*mark) if mark is not None else ex)
        if limit is not None and len(out) >= limit:
            break
    if path is not None and not out:
        raise DatasetError(f"{path}: the file holds no rows")
    return out


def select_inputs(
    example: Mapping[str, Any],
    input_names: Sequence[str],
    *,
    optional: Iterable[str] = (),
    extra_ok: bool = False,
    index: int = 0,
    source: str | None = None,
) -> dict[str, Any]:
    """The keyword arguments that a program whose parameters are ``input_names`` gets from one row.

    Parameters in ``optional`` (those with defaults) may be missing. A row marked with
    ``with_inputs`` must not mark a key the program does not take, unless ``extra_ok`` (the program
    takes ``**kwargs``). Raises :class:`DatasetError` naming the row.
    """
    opt = set(optional)
    ex = example if isinstance(example, Example) else Example(example)
    values = ex.inputs(input_names)
    if ex.input_keys is not None and not extra_ok:
        unknown = [k for k in values if k not in input_names]
        if unknown:
            raise DatasetError(
                f"{location(example, index, source)}: {', '.join(map(repr, unknown))} marked as input(s) "
                f"but the program has no such parameter (parameters: {', '.join(input_names)})"
            )
    missing = [k for k in input_names if k not in values and k not in opt]
    if missing:
        raise DatasetError(
            f"{location(example, index, source)}: missing input(s) {', '.join(map(repr, missing))} "
            f"(the row has: {', '.join(ex) or 'no keys'})"
        )
    return values


def check_inputs(
    examples: Iterable[Mapping[str, Any]],
    input_names: Sequence[str],
    *,
    optional: Iterable[str] = (),
    source: str | None = None,
) -> list[Example]:
    """Check that every row has the inputs a program needs; return the rows as examples.

    Raises one :class:`DatasetError` listing the first few bad rows (file and line for rows loaded
    from a file, else ``source[index]``).
    """
    opt = tuple(optional)
    rows = load_dataset(examples, name=source)
    problems: list[str] = []
    for i, row in enumerate(rows):
        try:
            select_inputs(row, input_names, optional=opt, index=i, source=source)
        except DatasetError as e:
            problems.append(str(e))
    if problems:
        shown = "; ".join(problems[:5])
        more = f"; and {len(problems) - 5} more row(s)" if len(problems) > 5 else ""
        raise DatasetError(f"{len(problems)} row(s) lack the program's inputs: {shown}{more}")
    return rows


def split(items: Sequence[T], *parts: float | int, seed: int = 0, shuffle: bool = True) -> list[list[T]]:
    """Shuffle (seeded: the same seed gives the same split) and cut into consecutive parts.

    ``parts`` are all fractions (floats, summing to at most 1) or all sizes (ints, summing to at
    most ``len(items)``).

    Args:
        items: the examples (any sequence).
        *parts: the fractions or sizes of the parts, in order.
        seed: the shuffle's seed.
        shuffle: ``False`` cuts ``items`` in their order.

    Returns:
        One list per part, plus one more holding the rest when the parts do not cover every item.

    Raises:
        UsageError: no part, fractions and sizes mixed, or parts that add up to too much.

    Example:
        >>> from lmprog import split
        >>> train, val, test = split(list(range(10)), 0.6, 0.2, 0.2)
        >>> len(train), len(val), len(test)
        (6, 2, 2)
        >>> train, rest = split(list(range(10)), 8)
        >>> len(rest)
        2
    """
    if not parts:
        raise UsageError("split needs at least one fraction or size, e.g. split(data, 0.8)")
    n = len(items)
    if all(isinstance(p, int) and not isinstance(p, bool) for p in parts):
        sizes = [int(p) for p in parts]
        if any(s < 0 for s in sizes) or sum(sizes) > n:
            raise UsageError(f"split sizes {sizes} must be >= 0 and sum to at most {n} (the number of items)")
        cuts = [sum(sizes[: i + 1]) for i in range(len(sizes))]
    elif all(isinstance(p, float) for p in parts):
        total = sum(parts)
        if any(not 0 <= p <= 1 for p in parts) or total > 1 + 1e-9:
            raise UsageError(f"split fractions {list(parts)} must be in [0, 1] and sum to at most 1")
        running = 0.0
        cuts = []
        for p in parts:
            running += p
            cuts.append(min(n, int(running * n + 0.5)))
        if abs(total - 1) <= 1e-9:
            cuts[-1] = n
    else:
        raise UsageError(f"split parts must be all fractions (floats) or all sizes (ints), got {list(parts)}")
    order = list(range(n))
    if shuffle:
        random.Random(seed).shuffle(order)
    bounds = [0, *cuts] + ([n] if cuts[-1] < n else [])
    return [[items[i] for i in order[a:b]] for a, b in itertools.pairwise(bounds)]


def _to_example(row: Any, where: str, *, from_file: bool) -> Example:
    if isinstance(row, Example):
        return row
    if isinstance(row, Mapping):
        return Example(row)
    kind = "JSON object" if from_file else "mapping (dict or Example)"
    raise DatasetError(f"{where}: expected a {kind}, got {describe_value(row)}")
