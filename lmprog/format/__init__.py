"""The wire format: a signature, an instruction and demos become chat messages; a completion
becomes the function's return value; and what constrains a model to write only readable replies
(GBNF grammars, JSON schemas); prompt layouts and label scoring.

Holds ``_prompt`` (render and parse, retry messages), ``_layout`` (transcript and completion
layouts), ``_labels`` (label options, their scores, contextual calibration), ``_trie`` (scoring
options that share their first tokens by a walk of their token tree), ``_vote`` (the retrieved
demos' labels mixed into the option scores), ``_wire`` (how values
are written), ``_read`` (the parser), ``_partial`` (the complete fields of a reply being streamed),
``_grammar``, ``_schema``, ``_constrain`` and ``_tools`` (tools on the wire). May import:
``errors``, ``_fingerprint``, ``signature`` and, for the constraint kinds, ``lm``.
"""

from __future__ import annotations

from lmprog.format._constrain import constraint_params, grammar, json_schema, response_format
from lmprog.format._labels import (
    CONTENT_FREE,
    DECODES,
    GRAMMAR_TOP_LOGPROBS,
    TOP_LOGPROBS,
    Decode,
    LabelOption,
    best_label,
    calibrated,
    calibration_prior,
    check_decode,
    choice_grammar,
    choice_texts,
    first_token_scores,
    first_words_differ,
    forced_grammar,
    forced_text,
    label_options,
    prior_problems,
    probabilities,
    sequence_logprob,
)
from lmprog.format._layout import (
    COMPLETION_STOP,
    LAYOUTS,
    Layout,
    check_layout,
    is_prompt,
    lead_space_grammar,
)
from lmprog.format._partial import partial_fields
from lmprog.format._prompt import (
    ParseFailure,
    format_output,
    output_values,
    parse_output,
    render_messages,
    reply_format,
    retry_messages,
)
from lmprog.format._tools import (
    read_tool_call,
    step_messages,
    tool_call_text,
    tool_grammar,
    tool_result_text,
    tool_schemas,
    tools_section,
)
from lmprog.format._trie import Walk, branchings, nested_pair, next_groups, owners_of, walk_reply
from lmprog.format._vote import check_vote, demo_labels, voted
from lmprog.format._wire import to_jsonable
from lmprog.lm import PROMPT_ROLE

__all__ = [
    "COMPLETION_STOP",
    "CONTENT_FREE",
    "DECODES",
    "GRAMMAR_TOP_LOGPROBS",
    "LAYOUTS",
    "PROMPT_ROLE",
    "TOP_LOGPROBS",
    "Decode",
    "LabelOption",
    "Layout",
    "ParseFailure",
    "Walk",
    "best_label",
    "branchings",
    "calibrated",
    "calibration_prior",
    "check_decode",
    "check_layout",
    "check_vote",
    "choice_grammar",
    "choice_texts",
    "constraint_params",
    "demo_labels",
    "first_token_scores",
    "first_words_differ",
    "forced_grammar",
    "forced_text",
    "format_output",
    "grammar",
    "is_prompt",
    "json_schema",
    "label_options",
    "lead_space_grammar",
    "nested_pair",
    "next_groups",
    "output_values",
    "owners_of",
    "parse_output",
    "partial_fields",
    "prior_problems",
    "probabilities",
    "read_tool_call",
    "render_messages",
    "reply_format",
    "response_format",
    "retry_messages",
    "sequence_logprob",
    "step_messages",
    "to_jsonable",
    "tool_call_text",
    "tool_grammar",
    "tool_result_text",
    "tool_schemas",
    "tools_section",
    "voted",
    "walk_reply",
]
