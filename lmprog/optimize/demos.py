"""Demonstrations: made from successful traces (bootstrapped) or from labeled examples."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from lmprog.format import output_values, to_jsonable
from lmprog.function import LMFunction

if TYPE_CHECKING:
    from lmprog.trace import Span

Demo = dict[str, Any]


def demo_from_span(fn: LMFunction[..., Any], span: Span) -> Demo | None:
    """The inputs and parsed outputs of one successful lm_function call, JSON-friendly."""
    if span.error is not None or span.kind != "lm":
        return None
    try:
        outputs = output_values(fn.signature, span.output)
    except (TypeError, ValueError, AttributeError):
        return None
    demo = {name: to_jsonable(span.inputs.get(name)) for name in fn.signature.input_names}
    demo.update({name: to_jsonable(value) for name, value in outputs.items()})
    return demo


def labeled_demo(fn: LMFunction[..., Any], example: Mapping[str, Any]) -> Demo | None:
    """A demo for ``fn`` straight from a labeled example, when the example has all of its inputs
    and its outputs (a single-output function takes the example's only label field)."""
    sig = fn.signature
    if not all(name in example for name in sig.input_names):
        return None
    demo = {name: to_jsonable(example[name]) for name in sig.input_names}
    if all(name in example for name in sig.output_names):
        demo.update({name: to_jsonable(example[name]) for name in sig.output_names})
        return demo
    labels = [k for k in example if k not in sig.input_names]
    if len(sig.output_names) == 1 and len(labels) == 1:
        demo[sig.output_names[0]] = to_jsonable(example[labels[0]])
        return demo
    return None


def demos_from_traces(
    functions: Iterable[LMFunction[..., Any]], spans: Iterable[Span]
) -> dict[LMFunction[..., Any], list[Demo]]:
    """Demos per lm_function from the lm spans of passing runs, in order, without duplicates."""
    wanted = set(functions)
    out: dict[LMFunction[..., Any], list[Demo]] = {fn: [] for fn in wanted}
    seen: set[tuple[int, str]] = set()
    for span in spans:
        fn = span.obj
        if not isinstance(fn, LMFunction) or fn not in wanted:
            continue
        demo = demo_from_span(fn, span)
        if demo is None:
            continue
        key = (id(fn), json.dumps(demo, sort_keys=True, default=str))
        if key not in seen:
            seen.add(key)
            out[fn].append(demo)
    return out


def sample_labeled(
    fn: LMFunction[..., Any], examples: Sequence[Mapping[str, Any]], k: int, rng: random.Random | None = None
) -> list[Demo]:
    """Up to ``k`` labeled demos for ``fn`` (a seeded sample when ``rng`` is given, else the first)."""
    demos = [d for d in (labeled_demo(fn, ex) for ex in examples) if d is not None]
    if rng is not None:
        rng.shuffle(demos)
    return demos[: max(0, k)]
