"""Prompt layouts: how the system text, the demos and the input are laid out for the model.

Three layouts, a per-function setting (``State.layout``, recorded in the prompt file):

- ``"chat"`` (the default): a user/assistant message pair per demo, then the input
  (:func:`lmprog.format.render_messages`).
- ``"transcript"``: the system message, then ONE user message holding every demo as a block of
  ``name: value`` lines (inputs, then outputs), blocks separated by ``---`` lines, and the input
  last; a single output ends the message with its ``name:`` header as a cue. The assistant
  replies with the output only, as in the chat layout. Small models copy one long message more
  faithfully than a multi-turn conversation whose last turns pull them to one label.
- ``"completion"``: the same text as one plain prompt for the model to continue (no chat
  template), sent as the single message ``{"role": "prompt", "content": ...}``. Only an LM whose
  ``takes_prompt()`` is true (the embedded model) can take it; for any other LM an lm_function
  falls back to ``"transcript"`` (logged once per function and model; the span's messages show
  what was sent). After a single output's ``name:`` cue the model writes a space first, so the
  grammar allows one leading space (:func:`lead_space_grammar`); several outputs start on the
  line after the input (the prompt ends with a newline). A reply stops at the next ``---`` line
  (:data:`COMPLETION_STOP`).

Every layout writes values the way :mod:`lmprog.format._prompt` does, so one parser reads them all.
The transcript and completion layouts have no chat turns: a function with tools or a ``History``
input needs ``"chat"`` (``render_messages`` refuses the others with a UsageError).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from lmprog.lm import PROMPT_ROLE
from lmprog.signature import Signature

Layout = Literal["chat", "transcript", "completion"]
LAYOUTS: tuple[Layout, ...] = ("chat", "transcript", "completion")
#: where a completion-layout reply ends: the separator before the next block
COMPLETION_STOP = "\n---"
_SEPARATOR = "\n---\n"


def check_layout(layout: object) -> Layout:
    """``layout`` if it is one of :data:`LAYOUTS`; else ValueError naming the choices."""
    for known in LAYOUTS:
        if layout == known:
            return known
    raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")


def is_prompt(messages: Sequence[Mapping[str, Any]]) -> bool:
    """Whether ``messages`` is a plain-text prompt (one ``{"role": "prompt"}`` message)."""
    return len(messages) == 1 and messages[0].get("role") == PROMPT_ROLE


def transcript_text(
    signature: Signature,
    inputs_block: str,
    demo_blocks: Sequence[tuple[str, str]],
) -> str:
    """The body of a transcript: each demo as its input lines then its output lines, separated by
    ``---`` lines, then the input lines and, for a single output, its ``name:`` cue."""
    blocks = [f"{given}\n{answer}" for given, answer in demo_blocks]
    last = inputs_block
    if not signature.multi_output:
        last += f"\n{signature.outputs[0].name}:"
    blocks.append(last)
    return _SEPARATOR.join(blocks)


def single_output_line(name: str, text: str) -> str:
    """A single output in a transcript block: ``name: value`` (a value of several lines below its
    header)."""
    return f"{name}:\n{text}" if "\n" in text else f"{name}: {text}"


def layout_messages(system: str, body: str, layout: Layout) -> list[dict[str, str]]:
    """The messages of a transcript (``system`` + one user message) or of a completion prompt."""
    if layout == "completion":
        return [{"role": PROMPT_ROLE, "content": f"{system}{_SEPARATOR}{body}"}]
    return [{"role": "system", "content": system}, {"role": "user", "content": body}]


def lead_space_grammar(grammar: str) -> str:
    """``grammar`` whose root may start with one space (a completion after ``name:``)."""
    head, sep, rest = grammar.partition("\n")
    if not head.startswith("root ::= "):
        return grammar
    return f'root ::= " "? ({head[len("root ::= ") :]}){sep}{rest}'
