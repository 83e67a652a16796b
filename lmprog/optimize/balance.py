"""Demo selection that cannot collapse: label-balanced demo sets, and a collapse check on
validation predictions.

A small model shown few-shot demos that end on one label tends to answer that label for every
input. Where an lm_function's output is categorical (its first ``Literal``, ``Enum`` or ``bool``
output field, :func:`label_field`), optimizers therefore:

- pick demos label-balanced and interleaved (:func:`balance`): labels take turns, round-robin, in
  the order they first appear in the (seeded) candidate list, so every label gets an equal share
  (as far as the examples allow) and the last demos before the question are all different labels;
- count the validation predictions per label (:func:`label_counts`), and rank candidates with
  :func:`rank_key`: a configuration is *collapsed* (:func:`is_collapsed`) when, for some function,
  every prediction it made on validation data is one label, or nearly every one and far more
  than that label's share of the data, while the validation labels for it hold at least two.
  A collapsed configuration scores little better than the constant answer and is never chosen
  over one that is not, whatever their scores; among equals the score decides.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from lmprog.format import output_values, to_jsonable
from lmprog.function import LMFunction
from lmprog.signature import (
    BoolSpec,
    ChoiceSpec,
    ConstrainedSpec,
    TypeSpec,
    UnsupportedType,
    build_spec,
    field_spec,
)

if TYPE_CHECKING:
    from lmprog.evaluate import EvaluationResult

Demo = dict[str, Any]
#: per function qualname: label -> count
LabelCounts = dict[str, dict[str, int]]


def label_field(fn: LMFunction[..., Any]) -> str | None:
    """The output field whose values are ``fn``'s labels: its first ``Literal``, ``Enum`` or
    ``bool`` output; None when no output is categorical."""
    for out in fn.signature.outputs:
        if _is_label_spec(field_spec(out)):
            return out.name
    return None


def is_categorical(annotation: Any) -> bool:
    """Whether values of ``annotation`` are a few labels: a ``Literal``, an ``Enum`` or ``bool``
    (inside ``Annotated`` too), as the signature's type registry reads it."""
    try:
        return _is_label_spec(build_spec(annotation))
    except UnsupportedType:
        return False


def _is_label_spec(spec: TypeSpec) -> bool:
    while isinstance(spec, ConstrainedSpec):
        spec = spec.inner
    return isinstance(spec, ChoiceSpec | BoolSpec)


def label_of(value: Any) -> str:
    """A label as text (an enum by its value, ``true``/``false`` for bool)."""
    plain = to_jsonable(value)
    return plain if isinstance(plain, str) else json.dumps(plain)


def balance(fn: LMFunction[..., Any], demos: Sequence[Mapping[str, Any]], k: int) -> list[Demo]:
    """Up to ``k`` of ``demos``, label-balanced and interleaved when ``fn``'s output is
    categorical (else the first ``k``). Within a label the earlier demos are preferred, and labels
    take turns in the order they first appear in ``demos``, so a seeded shuffle of ``demos`` makes
    a seeded balanced set. Demos without the label field are used only after all labelled ones."""
    name = label_field(fn)
    chosen = [dict(d) for d in demos[: max(0, k)]] if name is None else _round_robin(demos, name, k)
    return chosen


def _round_robin(demos: Sequence[Mapping[str, Any]], name: str, k: int) -> list[Demo]:
    groups: dict[str, list[Mapping[str, Any]]] = {}
    rest: list[Mapping[str, Any]] = []
    for demo in demos:
        if name in demo:
            groups.setdefault(label_of(demo[name]), []).append(demo)
        else:
            rest.append(demo)
    out: list[Demo] = []
    depth = 0
    while len(out) < k and any(depth < len(g) for g in groups.values()):
        for group in groups.values():
            if depth < len(group) and len(out) < k:
                out.append(dict(group[depth]))
        depth += 1
    out.extend(dict(d) for d in rest[: max(0, k - len(out))])
    return out


def label_counts(
    functions: Sequence[LMFunction[..., Any]], result: EvaluationResult
) -> tuple[LabelCounts, LabelCounts]:
    """Per categorical function (by qualname): how often each label was predicted on the examples
    of ``result`` (:func:`predicted_counts`), and how often each label is the expected one
    (:func:`expected_counts`)."""
    return predicted_counts(functions, result), expected_counts(
        functions, [r.example for r in result.results]
    )


def predicted_counts(functions: Sequence[LMFunction[..., Any]], result: EvaluationResult) -> LabelCounts:
    """Per categorical function (by qualname): how often each label was predicted on the examples
    of ``result``, from the lm calls in their traces."""
    predicted: LabelCounts = {}
    for fn in functions:
        name = label_field(fn)
        if name is None:
            continue
        pred: Counter[str] = Counter()
        for res in result.results:
            for span in res.trace.spans if res.trace is not None else []:
                if span.obj is not fn or span.kind != "lm" or span.error is not None:
                    continue
                try:
                    pred[label_of(output_values(fn.signature, span.output)[name])] += 1
                except (TypeError, ValueError, AttributeError, KeyError):
                    continue
        predicted[fn.signature.qualname] = dict(sorted(pred.items()))
    return predicted


def expected_counts(
    functions: Sequence[LMFunction[..., Any]], examples: Sequence[Mapping[str, Any]]
) -> LabelCounts:
    """Per categorical function (by qualname): how often each label is the expected one among
    ``examples`` (those that carry a label for that function)."""
    expected: LabelCounts = {}
    for fn in functions:
        name = label_field(fn)
        if name is None:
            continue
        gold = Counter(t for t in (_expected_label(fn, name, ex) for ex in examples) if t is not None)
        expected[fn.signature.qualname] = dict(sorted(gold.items()))
    return expected


def _expected_label(fn: LMFunction[..., Any], name: str, example: Mapping[str, Any]) -> str | None:
    if name in example:
        return label_of(example[name])
    others = [key for key in example if key not in fn.signature.input_names]
    if len(fn.signature.output_names) == 1 and len(others) == 1:
        return label_of(example[others[0]])
    return None


#: near collapse: at least this share of a function's predictions are one label ...
NEAR_SHARE = 0.9
#: ... while that label is the expected one on at least this share fewer examples ...
NEAR_EXCESS = 0.3
#: ... out of at least this many predictions
NEAR_MIN = 10


def is_collapsed(predicted: LabelCounts, expected: LabelCounts) -> bool:
    """Whether some function's predictions ignore its inputs while its expected labels on the
    same examples hold two or more: it predicted one label only (at least two predictions), or
    *nearly* only: out of at least :data:`NEAR_MIN` predictions, one label took at least
    :data:`NEAR_SHARE` of them and at least :data:`NEAR_EXCESS` more than its share of the
    expected labels. A near collapse on validation is a full one on test data as often as not:
    on Iris (three species, a third each) the embedded model's 39-of-40 "setosa" on validation
    was 50 of 50 on test. A skewed data set answered skewed is not collapsed: with 85 % of the
    labels "no", 95 % "no" predictions are within the excess."""
    for qualname, counts in predicted.items():
        gold = expected.get(qualname, {})
        n = sum(counts.values())
        if n < 2 or len(gold) < 2:
            continue
        top, most = max(counts.items(), key=lambda kv: kv[1])
        if most == n:
            return True
        share = most / n
        if (
            n >= NEAR_MIN
            and share >= NEAR_SHARE
            and share - gold.get(top, 0) / sum(gold.values()) >= NEAR_EXCESS
        ):
            return True
    return False


def rank_key(score: float | None, collapsed: bool) -> tuple[int, float]:
    """Sort key of a scored candidate, larger is better: any non-collapsed one above every
    collapsed one, then by score (an unscored candidate counts as 0)."""
    return (0 if collapsed else 1, score or 0.0)


def format_counts(counts: LabelCounts) -> list[str]:
    """``"qualname: label N, label M"`` lines for a summary."""
    return [
        f"{qualname}: " + ", ".join(f"{label} {n}" for label, n in per.items())
        for qualname, per in counts.items()
        if per
    ]
