"""Demo votes: a scored categorical call that mixes the model's option probabilities with the
labels of the demos retrieved for it.

With a demo pool (``optimizer="knn"``, or retrieved demos inside mipro and reflect) each call
shows the model the ``k`` training examples nearest to its input. A small model mostly copies their
labels, and where it does not it is often wrong: on TREC the label most of the 4 nearest demos
carry beat the embedded model's own choice on one seed of three, and lost on another. ``vote``
mixes the two ("kNN prompting", Xu et al. 2023, interpolates the same way)::

    p_vote(option) = (1 - vote) * p_model(option) + vote * share(option)

where ``p_model`` is the softmax of the option scores over the options (calibrated first when the
call is), ``share`` the fraction of the call's retrieved demos whose output is that option, and
``vote`` in (0, 1] a per-function weight the optimizers choose on validation data (the variants
step) and the prompt file records. ``vote=1`` still lets the model break ties between labels the
demos vote for equally (its probability is added with a weight of 1e-6).

Pure functions: scores and demo labels in, scores out. A demo whose output is none of the options
(an edited prompt file) votes for nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lmprog.format._labels import LabelOption, probabilities

#: the weight of the model's probability when ``vote`` is 1: it only breaks ties
TIE_WEIGHT = 1e-6


def check_vote(vote: object) -> float | None:
    """``vote`` as a float when it is None or a number in (0, 1]; else ValueError."""
    if vote is None:
        return None
    if isinstance(vote, bool) or not isinstance(vote, int | float) or not 0 < vote <= 1:
        raise ValueError(f"vote must be a number in (0, 1] (the weight of the demos' labels), got {vote!r}")
    return float(vote)


def demo_labels(demos: Iterable[Mapping[str, Any]], output: str, options: Sequence[LabelOption]) -> list[str]:
    """The option text each demo's ``output`` value is (demos whose value is no option are left
    out). A value matches an option by value (``True``, an Enum member) or by its wire text."""
    out = []
    for demo in demos:
        if output not in demo:
            continue
        value = demo[output]
        for option in options:
            if _same(value, option):
                out.append(option.text)
                break
    return out


def _same(value: Any, option: LabelOption) -> bool:
    if isinstance(value, bool) or isinstance(option.value, bool):
        return value is option.value or (isinstance(value, str) and value.strip().lower() == option.text)
    if value == option.value:
        return True
    return isinstance(value, str) and value.strip() == option.text


def voted(scores: Mapping[str, float], labels: Sequence[str], vote: float) -> dict[str, float]:
    """The log of the mixed probability per option (see the module docstring); ``labels`` are
    the option texts the call's demos vote for. Without labels the scores' probabilities stay."""
    probs = probabilities(scores)
    if not labels:
        return {k: math.log(max(p, 1e-300)) for k, p in probs.items()}
    model = TIE_WEIGHT if vote >= 1 else 1.0 - vote
    share = {k: sum(1 for label in labels if label == k) / len(labels) for k in probs}
    return {k: math.log(max(model * p + vote * share[k], 1e-300)) for k, p in probs.items()}
