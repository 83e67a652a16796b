"""Ready metrics and the lookup they share: which field of the example is the label, which part of
the prediction is the answer.

A metric is any callable ``metric(example, prediction, trace=None) -> float | bool`` (a score in
[0, 1]; a two-argument ``metric(example, prediction)`` works as well). ``trace`` is the
:class:`~lmprog.trace.Trace` of the program's run on that example.

The ready metrics (:data:`exact_match`, :data:`f1`, :data:`contains`) find their values this way:

- the label is the example's field ``answer``, ``label`` or ``output`` (the first present), else
  its only non-input field (inputs as marked by ``Example.with_inputs``; ``evaluate`` marks them
  from the program's parameters); a list/tuple/set label means "any of these", the best score wins;
- the prediction is the program's return value when it is a plain value (str, number, enum or a
  ``Literal`` value); for a pydantic model, dataclass, named tuple or dict it is the field named
  like the label, else ``answer``, ``output`` or ``label``, else its only field.

Pick fields explicitly with :meth:`Metric.on`: ``exact_match.on("category")`` reads ``category``
on both sides, ``f1.on(label="gold", pred="text")`` reads them separately.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from lmprog.errors import UsageError

if TYPE_CHECKING:
    from lmprog.trace import Trace

__all__ = [
    "Metric",
    "MetricFn",
    "contains",
    "contains_score",
    "exact_match",
    "exact_match_score",
    "f1",
    "f1_score",
    "label_of",
    "normalize_text",
    "prediction_of",
]

MetricFn = Callable[..., "float | bool"]
"""The type of a metric: ``(example, prediction, trace=None) -> float | bool``."""

LABEL_KEYS = ("answer", "label", "output")
_ARTICLES = re.compile(r"\b(a|an|the)\b")


class Metric:
    """A metric built from ``compare(label, predicted) -> float | bool`` on values found by the
    lookup described in this module's docstring.

    Calling it, ``metric(example, prediction, trace=None)``, returns a score in [0, 1]; a list of
    labels scores the best match. :meth:`on` picks the fields it reads.

    Args:
        compare: compares one label with the predicted value.
        name: its name in results and reports (default: ``compare``'s).
        label: the example's field holding the label (default: ``answer``, ``label``, ``output``
            or the only non-input field).
        pred: the prediction's field to compare (default: the field named like the label).

    Example:
        >>> from lmprog.metrics import Metric
        >>> substring = Metric(lambda gold, pred: gold in pred, name="substring")
        >>> substring({"question": "q", "answer": "Paris"}, "It is Paris.")
        1.0
    """

    def __init__(
        self,
        compare: Callable[[Any, Any], float | bool],
        *,
        name: str | None = None,
        label: str | None = None,
        pred: str | None = None,
    ) -> None:
        self.compare = compare
        self.__name__ = name or getattr(compare, "__name__", "metric")
        self.label_key = label
        self.pred_key = pred

    def on(self, key: str | None = None, *, label: str | None = None, pred: str | None = None) -> Metric:
        """The same metric reading field ``key`` of the example and of the prediction, or
        ``label`` of the example and ``pred`` of the prediction."""
        label_key = label if label is not None else key
        pred_key = pred if pred is not None else key
        return Metric(self.compare, name=self.__name__, label=label_key, pred=pred_key)

    def __call__(self, example: Any, prediction: Any, trace: Trace | None = None) -> float:
        gold = label_of(example, self.label_key)
        value = prediction_of(prediction, self.pred_key, like=self.label_key or _label_name(example))
        golds = list(gold) if isinstance(gold, list | tuple | set | frozenset) else [gold]
        if not golds:
            raise UsageError(f"{self.__name__}: the example's label is an empty collection")
        return max(float(self.compare(g, value)) for g in golds)

    def __repr__(self) -> str:
        keys = [
            f"{k}={v!r}" for k, v in (("label", self.label_key), ("pred", self.pred_key)) if v is not None
        ]
        return f"<metric {self.__name__}{'(' + ', '.join(keys) + ')' if keys else ''}>"


# -- text comparison ------------------------------------------------------------------------------
def normalize_text(value: Any) -> str:
    """SQuAD-style normalization: lowercase, drop punctuation (ASCII and Unicode) and the articles
    a/an/the, collapse whitespace. Non-strings are turned into text first (enums by value, whole
    floats without ``.0``)."""
    text = _as_text(value).lower()
    text = "".join(
        ch for ch in text if ch not in string.punctuation and not unicodedata.category(ch).startswith("P")
    )
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match_score(gold: Any, predicted: Any) -> float:
    """1.0 when both normalize to the same text."""
    return float(normalize_text(gold) == normalize_text(predicted))


def f1_score(gold: Any, predicted: Any) -> float:
    """Token-level F1 of the normalized texts (SQuAD): the harmonic mean of the share of predicted
    tokens found in the label and of label tokens found in the prediction."""
    gold_tokens = normalize_text(gold).split()
    pred_tokens = normalize_text(predicted).split()
    if not gold_tokens or not pred_tokens:
        return float(gold_tokens == pred_tokens)
    same = sum((Counter(gold_tokens) & Counter(pred_tokens)).values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def contains_score(gold: Any, predicted: Any) -> float:
    """1.0 when the normalized label occurs in the normalized prediction as whole words."""
    return float(f" {normalize_text(gold)} " in f" {normalize_text(predicted)} ")


exact_match = Metric(exact_match_score, name="exact_match")
"""Normalized exact match (see :func:`normalize_text`): 1.0 or 0.0.

Example:
    >>> from lmprog import metrics
    >>> metrics.exact_match({"answer": "The Eiffel Tower"}, "eiffel tower!")
    1.0
"""
f1 = Metric(f1_score, name="f1")
"""SQuAD token F1 between label and prediction, in [0, 1].

Example:
    >>> from lmprog import metrics
    >>> metrics.f1({"answer": "New York City"}, "New York")
    0.8
"""
contains = Metric(contains_score, name="contains")
"""Whether the label appears (normalized, whole words) in the prediction: 1.0 or 0.0.

Example:
    >>> from lmprog import metrics
    >>> metrics.contains({"answer": "Paris"}, "The capital is Paris.")
    1.0
"""


# -- lookup ---------------------------------------------------------------------------------------
def label_of(example: Any, key: str | None = None) -> Any:
    """The example's label: field ``key``, else ``answer``/``label``/``output``, else its only
    non-input field. A value that is not a row at all (a plain string) is its own label."""
    fields = _fields(example)
    if fields is None:
        if key is not None:
            raise UsageError(f"cannot read label field {key!r} from {type(example).__name__} {example!r}")
        return example
    if key is not None:
        if key not in fields:
            raise UsageError(f"the example has no field {key!r} (fields: {', '.join(fields) or 'none'})")
        return fields[key]
    name = _label_name(example)
    if name is not None:
        return fields[name]
    raise UsageError(
        f"cannot tell which field of the example is the label (fields: {', '.join(fields) or 'none'}); "
        "name it, e.g. exact_match.on(label='category'), or mark the inputs with Example.with_inputs"
    )


def prediction_of(prediction: Any, key: str | None = None, *, like: str | None = None) -> Any:
    """The part of a program's return value to score: the value itself when it is a plain value,
    else field ``key``, else the field named ``like`` (the label's name), else
    ``answer``/``output``/``label``, else the only field."""
    fields = _fields(prediction)
    if fields is None:
        return prediction
    if key is not None:
        if key not in fields:
            raise UsageError(
                f"the prediction ({type(prediction).__name__}) has no field {key!r} "
                f"(fields: {', '.join(fields) or 'none'})"
            )
        return fields[key]
    for name in (like, "answer", "output", "label"):
        if name is not None and name in fields:
            return fields[name]
    if len(fields) == 1:
        return next(iter(fields.values()))
    raise UsageError(
        f"cannot tell which field of the prediction ({type(prediction).__name__}: "
        f"{', '.join(fields) or 'no fields'}) to score; name it, e.g. exact_match.on(pred='answer')"
    )


def _label_name(example: Any) -> str | None:
    fields = _fields(example)
    if fields is None:
        return None
    for name in LABEL_KEYS:
        if name in fields:
            return name
    input_keys = getattr(example, "input_keys", None) if isinstance(example, Mapping) else None
    if isinstance(input_keys, tuple):
        rest = [k for k in fields if k not in input_keys]
        if len(rest) == 1:
            return rest[0]
    return None


def _fields(value: Any) -> dict[str, Any] | None:
    """The named fields of a structured value, or None for a plain value."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, BaseModel):
        return dict(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return dict(value._asdict())
    return None


def _as_text(value: Any) -> str:
    if isinstance(value, enum.Enum):
        value = value.value
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
