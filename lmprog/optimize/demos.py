"""Demonstrations: made from successful traces (bootstrapped) or from labeled examples.

A bootstrapped demo keeps what the run showed besides its inputs and outputs: the reasoning of a
``reasoning=True`` function and the tool calls (with their results) of a function with tools.

Every demo an optimizer makes fits its function's signature (``lmprog.promptfile.demo_problems``):
the same check ``lmprog check`` and loading a prompt file apply, so a written prompt file always
loads. An input a labeled example lacks but that has a default is recorded with its default, as a call
renders it. An optimizer that finds no demo for a function says why (:func:`no_demo_warnings`).
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from lmprog.format import output_values, to_jsonable
from lmprog.function import LMFunction
from lmprog.optimize.balance import balance
from lmprog.promptfile import demo_problems, fit_demo
from lmprog.signature import TOOL_CALLS

if TYPE_CHECKING:
    from lmprog.trace import Span

Demo = dict[str, Any]

logger = logging.getLogger("lmprog.optimize")


def demo_from_span(fn: LMFunction[..., Any], span: Span) -> Demo | None:
    """The inputs and parsed outputs of one successful lm_function call, JSON-friendly; None when
    the call failed or its values do not fit the signature (an argument of the wrong type)."""
    if span.error is not None or span.kind != "lm":
        return None
    try:
        outputs = output_values(fn.signature, span.output)
    except (TypeError, ValueError, AttributeError):
        return None
    demo = {name: to_jsonable(span.inputs.get(name)) for name in fn.signature.input_names}
    demo.update({name: to_jsonable(value) for name, value in outputs.items()})
    if span.reasoning:  # an @lm_function(reasoning=True) call: the demo shows its thought too
        demo["reasoning"] = span.reasoning
    if span.tool_calls:  # an lm_function with tools: the demo shows the calls it made
        demo[TOOL_CALLS] = [dict(step) for step in span.tool_calls]
    return fit_demo(fn.signature, demo)


def labeled_demo(fn: LMFunction[..., Any], example: Mapping[str, Any]) -> Demo | None:
    """A demo for ``fn`` straight from a labeled example: its inputs (one the example lacks takes
    its default, as in a call) and its outputs (a single-output function takes the example's only
    other field), with the outputs in canonical form; None when something is missing or a value
    does not fit the signature."""
    demo = _labeled_fields(fn, example)
    return None if demo is None else fit_demo(fn.signature, demo)


def _labeled_fields(fn: LMFunction[..., Any], example: Mapping[str, Any]) -> Demo | None:
    sig = fn.signature
    demo: Demo = {}
    for field in sig.inputs:
        if field.name in example:
            demo[field.name] = to_jsonable(example[field.name])
        elif field.has_default:
            demo[field.name] = to_jsonable(field.default)
        else:
            return None
    required = [f.name for f in sig.outputs if not f.has_default]
    present = [name for name in sig.output_names if name in example]
    if present and all(name in example for name in required):
        demo.update({name: to_jsonable(example[name]) for name in present})
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
    """Up to ``k`` labeled demos for ``fn`` (a seeded sample when ``rng`` is given, else the
    first), label-balanced and interleaved when its output is categorical (:mod:`.balance`)."""
    demos = [d for d in (labeled_demo(fn, ex) for ex in examples) if d is not None]
    if rng is not None:
        rng.shuffle(demos)
    return balance(fn, demos, k)


def no_labeled_demo_reason(fn: LMFunction[..., Any], examples: Sequence[Mapping[str, Any]]) -> str:
    """Why no example of ``examples`` makes a labeled demo for ``fn`` ("" when some do)."""
    sig = fn.signature
    required = [f.name for f in sig.inputs if not f.has_default]
    if not examples:
        return "no training example was left to label it"
    with_inputs = [ex for ex in examples if all(name in ex for name in required)]
    if not with_inputs:
        return f"no training example has its input(s) {', '.join(required)}"
    built = [d for d in (_labeled_fields(fn, ex) for ex in with_inputs) if d is not None]
    if not built:
        outputs = ", ".join(sig.output_names)
        one = " (or exactly one field besides its inputs)" if len(sig.output_names) == 1 else ""
        return f"no training example with its inputs has its output(s) {outputs}{one}"
    problems = [p for d in built for p in demo_problems(sig, d)]
    if len(problems) == 0:
        return ""
    return (
        f"no labeled training example fits its signature ({len(built)} tried; first: {problems[0].message})"
    )


def no_demo_warnings(
    optimizer: str, demos: Mapping[LMFunction[..., Any], int], reason: Callable[[LMFunction[..., Any]], str]
) -> list[str]:
    """``"<optimizer>: found no demo for <function>: <reason>"`` for every function with no demo
    in ``demos`` (a count per function), each also logged as a warning."""
    out = []
    for fn, count in demos.items():
        if count:
            continue
        why = reason(fn) or "no example made one"
        message = f"{optimizer}: found no demo for {fn.signature.qualname}: {why}"
        logger.warning("%s", message)
        out.append(message)
    return out
