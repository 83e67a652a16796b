"""What the reflection model sees, and the lm_function that asks it for a better instruction.

For one lm_function of the program, the reflection prompt holds: the program listing from
``analyze()`` (the function in its context: entry point, helpers, schemas, call sites), the
function's inputs, outputs and current instruction, the runs of the program on a minibatch (for
each example: every call of that function in the trace, with its inputs and output or its error
and unparsed reply, the program's result, the score and the metric's feedback, general and for
that function), and the earlier edits of that function with their scores.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from lmprog.evaluate import EvaluationResult, ExampleResult
from lmprog.format import to_jsonable
from lmprog.function import LMFunction, lm_function
from lmprog.optimize.reflect_store import IterationRecord

__all__ = ["describe_history", "describe_runs", "reflect_instruction"]

#: characters kept of one value (an input, an output, a reply) in the prompt
MAX_VALUE_CHARS = 400


#: an instruction is at most MAX_INSTRUCTION_CHARS (700) characters: a reply longer than this many
#: tokens is a model rambling on, and is not retried with a larger budget (measured with the
#: 135M embedded model: every reflection ran on to 2 x 1024 tokens, about 90 s each)
REFLECTION_MAX_TOKENS = 320


@lm_function(name="lmprog_reflect_instruction", max_retries=0, max_tokens=REFLECTION_MAX_TOKENS)
def reflect_instruction(program: str, function: str, runs: str, history: str) -> str:
    """Improve the instruction of one language-model function of a Python program from how it did.

    Read the runs: for each, what the function was given and what it returned (or the error),
    the program's result, its score and the evaluator's feedback. Work out what went wrong in the
    low-scoring runs and what the high-scoring runs got right. Then write a new instruction for the
    function that fixes those failures without breaking what works, keeping any facts about the
    task the feedback reveals. Describe the task, not the reply format (the format is added
    separately). Reply with the new instruction only.

    Args:
        program: source code of the program, showing where and how the function is used.
        function: the function's name, inputs, outputs and current instruction.
        runs: the function's calls on a few examples, with scores and feedback.
        history: earlier instructions tried for this function and their scores (higher is better).
    """


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(to_jsonable(value), ensure_ascii=False)
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS] + "..."


def _names(fn: LMFunction[..., Any]) -> tuple[str, ...]:
    return (fn.signature.name, fn.signature.qualname, fn.name)


def describe_run(fn: LMFunction[..., Any], number: int, result: ExampleResult) -> str:
    """One example's run as the reflection model reads it."""
    lines = [f"## Run {number} (score {result.score:.0f} of 100)"]
    marked = result.example.input_keys is not None
    lines.append(f"program inputs: {_value(result.example.inputs() if marked else dict(result.example))}")
    spans = [s for s in (result.trace.spans if result.trace else []) if s.kind == "lm" and s.obj is fn]
    if not spans:
        lines.append(f"{fn.signature.name} was not called in this run")
    for k, span in enumerate(spans, 1):
        lines.append(f"call {k} of {fn.signature.name}: inputs {_value(span.inputs)}")
        for step in span.tool_calls or ():  # a function with tools: what it called, and got
            got = f"error {_value(step['error'])}" if "error" in step else _value(step.get("result"))
            lines.append(f"  tool call: {step.get('tool')} {_value(step.get('arguments'))} -> {got}")
        if span.error is not None:
            lines.append(f"  error: {_value(span.error)}")
            if span.raw is not None:
                lines.append(f"  unparsed reply: {_value(span.raw)}")
        else:
            lines.append(f"  output: {_value(span.output)}")
    if result.error is None:
        lines.append(f"program result: {_value(result.prediction)}")
    else:
        lines.append(f"the run failed: {_value(result.error)}")
    labels = result.example.labels() if marked else {}
    if labels:
        lines.append(f"expected: {_value(labels)}")
    fb = result.feedback
    if fb is not None and fb.text and fb.text != result.error:
        lines.append(f"feedback: {_value(fb.text)}")
    about = fb.about(*_names(fn)) if fb is not None else None
    if about:
        lines.append(f"feedback on {fn.signature.name}: {_value(about)}")
    return "\n".join(lines)


def blame(fn: LMFunction[..., Any], result: EvaluationResult) -> int:
    """How much the minibatch blames ``fn``: over the examples that lost points, 2 for each in
    which a call of ``fn`` failed, 1 for each whose feedback names ``fn``."""
    total = 0
    for r in result.results:
        if r.value >= 1.0:
            continue
        spans = r.trace.spans if r.trace else []
        if any(s.kind == "lm" and s.obj is fn and s.error is not None for s in spans):
            total += 2
        if r.feedback is not None and r.feedback.about(*_names(fn)):
            total += 1
    return total


def describe_runs(fn: LMFunction[..., Any], result: EvaluationResult) -> str:
    """Every run of a minibatch, the failed and low-scoring ones first."""
    ordered = sorted(result.results, key=lambda r: (r.value, r.index))
    return "\n\n".join(describe_run(fn, k, r) for k, r in enumerate(ordered, 1))


def describe_history(fid: str, seed_instruction: str, iterations: Sequence[IterationRecord]) -> str:
    """The earlier edits of function ``fid``: each instruction tried, its minibatch scores against
    its parent's and, when accepted, its validation score (the last eight)."""
    lines = [f"original instruction: {seed_instruction}"]
    tried = [it for it in iterations if it.kind == "reflect" and it.function == fid and it.instruction]
    for it in tried[-8:]:
        outcome = (
            f"accepted, validation {it.val_score:.1f} (parent {it.parent_val_score:.1f})"
            if it.accepted and it.val_score is not None and it.parent_val_score is not None
            else f"rejected ({it.note})"
            if it.note
            else "rejected"
        )
        lines.append(
            f"- {it.instruction!r}: minibatch {it.child_minibatch or 0:.0f} vs parent "
            f"{it.parent_minibatch or 0:.0f}; {outcome}"
        )
    return "\n".join(lines) if tried else lines[0] + "\n(no edits yet)"
