"""Prompts: a signature, an instruction and demos become chat messages; a completion becomes
the function's return value.

The wire format is short and explicit so that a 135M-parameter model can follow it (long JSON
schemas confuse small models; demonstrations help them most), and it costs a frontier model
nothing. For ``classify(ticket: str) -> Literal["billing", "bug", "feature"]``::

    system:    Classify a support ticket by its topic.

               Inputs:
               - ticket: the customer's message, verbatim.

               Reply with exactly one of: billing, bug, feature.
    user:      ticket: I was charged twice this month.
    assistant: billing                                   (one pair per demo)
    user:      ticket: The app crashes when I log in.

- System: the instruction (or ``Task: <function name>.`` when there is none), the inputs with
  their descriptions (a one-line list when none has a description), then the reply format. A
  single output gets one sentence: ``Reply with the text only.`` / ``an integer`` / ``a number`` /
  ``yes or no`` / ``exactly one of: a, b`` / ``a JSON list of strings`` / ``a JSON object like
  {"name": string, "age": integer}``. Several outputs (a model, dataclass or TypedDict return)
  get one line per field: ``Reply with these lines:`` then ``reasoning: <text>``,
  ``answer: <one of: yes, no>``; output descriptions, when any, are listed before.
- User: one ``name: value`` line per input. Text is written raw (on the following lines when it
  has several), a list of strings as numbered ``[1] ...`` lines, anything else as compact JSON.
- Assistant (demos): :func:`format_output` of the demo's output values.

Parsing is lenient but never guesses. A single output may carry an ``output:`` label, a code
fence or quotes; numbers may sit in a sentence when it holds exactly one number; yes/no and
options are matched without case or punctuation, or found as the only option the reply
mentions; JSON is the first balanced value that validates (only :mod:`json` decodes it, with
a relaxed retry for single quotes, trailing commas and Python literals). Several outputs are read
from ``name:`` headers (any case, Markdown bullets or bold allowed; a value runs to the next
header; a header repeated or an input header after all outputs ends the reply), or from one JSON
object with the field names. Anything else raises :class:`ParseFailure` with short messages the
model can act on (:func:`retry_messages`).

Known ambiguities: in ``int | str`` a reply ``42`` is the integer; for ``str | None`` the
replies ``none``, ``null`` and nothing are None (``format_output`` quotes such strings).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from lmprog.errors import UsageError
from lmprog.format._layout import (
    Layout,
    check_layout,
    layout_messages,
    single_output_line,
    transcript_text,
)
from lmprog.format._read import parse_multi, parse_single, parse_structured
from lmprog.format._tools import step_messages, tools_section
from lmprog.format._wire import render_output_value, render_plain, to_jsonable
from lmprog.signature import TOOL_CALLS, Field, ParseFailure, Signature, field_spec, history_turns

__all__ = [
    "ParseFailure",
    "format_output",
    "output_values",
    "parse_output",
    "render_messages",
    "retry_messages",
    "to_jsonable",
]

_logger = logging.getLogger(__name__)
_REPLY = "Reply with "


def render_messages(
    signature: Signature,
    inputs: Mapping[str, Any],
    *,
    instruction: str | None = None,
    demos: Sequence[Mapping[str, Any]] = (),
    tools: Sequence[Signature] = (),
    native_tools: bool = False,
    layout: str = "chat",
) -> list[dict[str, str]]:
    """Chat messages for one call: system, a user/assistant pair per demo, then the user input.

    ``instruction=None`` uses ``signature.instruction``. The ``History`` input, if any, is not an
    input line: its turns come just before the user message (of the call, or of a demo that
    holds one). A demo maps input and output field names
    to values (a multi-output demo may instead hold the whole return value under ``"output"``);
    inputs missing from a demo are left out, outputs missing from it are an error. ``tools``: the
    signatures of the tools the model may call, listed in the system message (with the text
    protocol unless ``native_tools``); a demo's tool calls (``TOOL_CALLS``) are then rendered
    between its input and its answer (see :mod:`lmprog.format._tools`). ``layout``
    ``"transcript"`` or ``"completion"`` lays the same content out otherwise (see
    :mod:`lmprog.format._layout`); those layouts have no chat turns, so tools or a ``History``
    input need ``"chat"`` (UsageError otherwise, as for a bad layout).
    """
    try:
        checked = check_layout(layout)
    except ValueError as error:
        raise UsageError(str(error), function=signature.qualname) from None
    if checked != "chat":
        _check_chat_only(signature, checked, tools=bool(tools))
        return _laid_out(signature, inputs, instruction, demos, checked)
    system = _system_message(signature, instruction)
    if tools:
        system = _with_tools(system, signature, tools_section(tools, native=native_tools))
    messages = [{"role": "system", "content": system}]
    for index, demo in enumerate(demos):
        messages.extend(_history(signature, demo))
        messages.append({"role": "user", "content": _input_lines(signature, demo, demo_index=index)})
        steps = demo.get(TOOL_CALLS) if tools else None
        if isinstance(steps, list):
            messages.extend(step_messages(steps))
        outputs = _demo_outputs(signature, demo, index)
        # several output fields are always name lines (a reasoning demo may lack its reasoning)
        content = _output_lines(outputs) if signature.multi_output else format_output(outputs)
        messages.append({"role": "assistant", "content": content})
    messages.extend(_history(signature, inputs))
    messages.append({"role": "user", "content": _input_lines(signature, inputs)})
    return messages


def _laid_out(
    signature: Signature,
    inputs: Mapping[str, Any],
    instruction: str | None,
    demos: Sequence[Mapping[str, Any]],
    layout: Layout,
) -> list[dict[str, str]]:
    blocks = []
    for index, demo in enumerate(demos):
        outputs = _demo_outputs(signature, demo, index)
        if signature.multi_output:
            answer = _output_lines(outputs)
        else:
            field = signature.outputs[0]
            value = outputs.get(field.name, field.default)
            answer = single_output_line(field.name, render_output_value(value, single=True))
        blocks.append((_input_lines(signature, demo, demo_index=index), answer))
    body = transcript_text(signature, _input_lines(signature, inputs), blocks)
    if layout == "completion" and signature.multi_output:
        body += "\n"  # the model continues with the first output's header on a line of its own
    return layout_messages(_system_message(signature, instruction), body, layout)


def _check_chat_only(signature: Signature, layout: Layout, *, tools: bool) -> None:
    """UsageError when ``signature`` needs chat turns (tools, a ``History`` input) that
    ``layout`` cannot hold."""
    what = "tools" if tools else f"a History input ({signature.history!r})" if signature.history else None
    if what is not None:
        raise UsageError(
            f"the {layout!r} layout has no chat turns for {what}: use layout='chat'",
            function=signature.qualname,
        )


def _history(signature: Signature, values: Mapping[str, Any]) -> list[dict[str, str]]:
    """The prior chat turns of a call or a demo: its :data:`~lmprog.signature.History` input."""
    name = signature.history
    return history_turns(to_jsonable(values.get(name))) if name is not None else []


def parse_output(signature: Signature, text: str, *, structured: bool = False) -> Any:
    """The return value read from a completion, or :class:`ParseFailure` (never another error).
    ``structured``: the reply was constrained by a JSON schema (:func:`lmprog.format.json_schema`): read it as
    one JSON object keyed by output field names first."""
    if not isinstance(text, str):
        raise ParseFailure([f"expected text, got {type(text).__name__}"])
    try:
        if structured:
            return parse_structured(signature, text)
        if signature.multi_output:
            return parse_multi(signature, text)
        return parse_single(signature, text)
    except ParseFailure as failure:
        raise ParseFailure(failure.problems) from None
    except Exception as error:  # a parser bug must not escape as anything but a parse failure
        _logger.warning("internal error parsing output of %s: %r", signature.qualname, error, exc_info=True)
        raise ParseFailure([f"internal parser error ({type(error).__name__})"]) from error


def retry_messages(
    messages: Sequence[Mapping[str, str]],
    completion: str,
    errors: Sequence[str],
    reply_format: str | None = None,
) -> list[dict[str, str]]:
    """The conversation to retry with: ``messages``, the bad completion, and a user message
    listing the errors and repeating the reply format.

    Args:
        messages: the conversation the bad completion answered.
        completion: the bad completion.
        errors: what was wrong with it, addressed to the model.
        reply_format: the reply-format instruction to repeat (:func:`reply_format` of the
            signature; lm_functions pass it). ``None`` (direct callers of earlier versions): the
            part of the system message from its last ``Reply with`` line on, if any.
    """
    problems = "\n".join(f"- {error}" for error in errors) or "- the reply did not follow the format"
    if reply_format is None:
        reply_format = _reply_format(messages)
    reminder = reply_format or "Reply again in the required format."
    content = f"Your reply could not be used:\n{problems}\n\n{reminder}"
    return [
        *(dict(m) for m in messages),  # a native tool call's message keeps its tool_calls
        {"role": "assistant", "content": completion},
        {"role": "user", "content": content},
    ]


def format_output(values: Mapping[str, Any]) -> str:
    """Output values as a model should write them (see the module docs). Depends on the values
    only: ``{"output": v}`` is ``v`` alone, anything else ``name: value`` lines."""
    names = list(values)
    if names == ["output"]:
        return render_output_value(values["output"], single=True)
    return _output_lines(values)


def _output_lines(values: Mapping[str, Any]) -> str:
    names = list(values)
    return "\n".join(
        f"{name}: {render_output_value(values[name], single=False, names=names)}" for name in names
    )


def output_values(signature: Signature, value: Any) -> dict[str, Any]:
    """Output-field values of a return value (the inverse of ``Signature.build_return``)."""
    return signature.split_return(value)


def _system_message(signature: Signature, instruction: str | None) -> str:
    text = (signature.instruction if instruction is None else instruction).strip()
    parts = [text or f"Task: {signature.name.replace('_', ' ')}."]
    shown = [f for f in signature.inputs if f.name != signature.history]
    if shown:
        parts.append(_field_list("Inputs", shown))
    parts.append(_reply_section(signature))
    return "\n\n".join(parts)


def _with_tools(system: str, signature: Signature, section: str) -> str:
    """The system message with the tool section inserted before the reply format."""
    reply = _reply_section(signature)
    if system.endswith(reply):
        return system[: len(system) - len(reply)] + section + "\n\n" + reply
    return system + "\n\n" + section


def _field_list(title: str, fields: Sequence[Field]) -> str:
    if not any(f.description for f in fields):
        return f"{title}: {', '.join(f.name for f in fields)}."
    lines = [f"- {f.name}: {f.description}" if f.description else f"- {f.name}" for f in fields]
    return f"{title}:\n" + "\n".join(lines)


def _reply_section(signature: Signature) -> str:
    if not signature.multi_output:
        output = signature.outputs[0]
        sentence = reply_format(signature)
        return f"Output: {output.description}\n{sentence}" if output.description else sentence
    if any(f.description for f in signature.outputs):
        return _field_list("Outputs", signature.outputs) + "\n\n" + reply_format(signature)
    return reply_format(signature)


def reply_format(signature: Signature) -> str:
    """The reply-format instruction of ``signature``: how the model must write its reply (the end
    of the system message, repeated in retry messages)."""
    if not signature.multi_output:
        return field_spec(signature.outputs[0]).reply()
    lines = [f"{f.name}: <{field_spec(f).hint()}>" for f in signature.outputs]
    return _REPLY + "these lines:\n" + "\n".join(lines)


def _reply_format(messages: Sequence[Mapping[str, str]]) -> str:
    """The reply-format part of the system message: from its last ``Reply with`` line on."""
    system = next((m.get("content", "") for m in messages if m.get("role") == "system"), "")
    if system.startswith(_REPLY):
        return system
    index = system.rfind("\n" + _REPLY)
    return system[index + 1 :] if index >= 0 else ""


def _input_lines(signature: Signature, values: Mapping[str, Any], *, demo_index: int | None = None) -> str:
    lines = []
    for field in signature.inputs:
        if field.name == signature.history:
            continue
        if field.name in values:
            value = values[field.name]
        elif field.has_default:
            value = field.default
        elif demo_index is not None:
            continue
        else:
            raise UsageError(f"missing input {field.name!r}", function=signature.qualname)
        lines.append(_input_line(field.name, value))
    return "\n".join(lines) if lines else "(no inputs)"


def _input_line(name: str, value: Any) -> str:
    if isinstance(value, str):
        return f"{name}:\n{value}" if "\n" in value else f"{name}: {value}".rstrip()
    if isinstance(value, list | tuple) and value and all(isinstance(item, str) for item in value):
        return f"{name}:\n" + "\n".join(f"[{index}] {item}" for index, item in enumerate(value, 1))
    return f"{name}: {render_plain(value)}"


def _demo_outputs(signature: Signature, demo: Mapping[str, Any], index: int) -> dict[str, Any]:
    names = signature.output_names
    present = {name: demo[name] for name in names if name in demo}
    if signature.multi_output and not present and "output" in demo:
        return output_values(signature, demo["output"])
    missing = [f.name for f in signature.outputs if f.name not in present and not f.has_default]
    if missing:
        raise UsageError(
            f"demo {index + 1} has no value for output(s) {', '.join(missing)} "
            f"(its keys: {', '.join(map(str, demo))})",
            function=signature.qualname,
        )
    return present
