"""Grounded instruction proposals: a proposer LM writes new instructions for an lm_function from the
program's own source, a summary of the data, demos, a drawn tip and the scores of earlier proposals.

The proposer is itself written with lmprog: two lm_functions whose docstrings are its prompts.
Proposals pass through guards (:func:`check_instruction`) before they become candidates.
"""

from __future__ import annotations

import functools
import json
import logging
import random
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lmprog import settings
from lmprog.errors import BudgetExceededError, LmprogError
from lmprog.format import to_jsonable
from lmprog.function import LMFunction, lm_function
from lmprog.optimize._base import provider_failed
from lmprog.signature import type_name

logger = logging.getLogger("lmprog.optimize.propose")

TIPS = {
    "concise": "Keep the instruction short and direct: one or two sentences.",
    "detailed": "Be specific: say exactly what to look at in the inputs and how to decide.",
    "persona": "Start by giving the model a fitting expert role for this task.",
    "edge_cases": "Mention the tricky cases seen in the data and how to handle them.",
    "stepwise": "Describe the steps to follow, in order, in a few short sentences.",
    "labels": "Explain what each possible answer means and when to choose it.",
}
MAX_INSTRUCTION_CHARS = 700
MIN_INSTRUCTION_CHARS = 12


@lm_function(name="lmprog_summarize_data", max_retries=1)
def summarize_data(statistics: str, rows: str) -> str:
    """Describe this data set for someone writing instructions for a model that must handle it.

    In two or three sentences say what the inputs are, what the expected outputs look like and
    any pattern worth knowing. Do not list the rows.

    Args:
        statistics: counts and value distributions computed from the data.
        rows: a sample of rows, one JSON object per line.
    """


@lm_function(name="lmprog_propose_instruction", max_retries=1, temperature=0.9)
def propose_instruction(
    program: str, function: str, data_summary: str, examples: str, history: str, tip: str
) -> str:
    """Write a better instruction for one language-model function of a Python program.

    The instruction is the text the model reads before each input; it must describe the task, not
    the reply format (the format is added separately). Reply with the new instruction only.

    Args:
        program: source code of the program, showing where and how the function is used.
        function: the function's name, inputs, outputs and current instruction.
        data_summary: what the data the program runs on looks like.
        examples: worked examples of inputs and correct outputs.
        history: earlier instructions and their scores (higher is better); improve on the best.
        tip: a suggestion on the style of instruction to write.
    """


def data_statistics(rows: Sequence[Mapping[str, Any]]) -> str:
    """Computed facts about a data set: size, fields, and the distribution of short label values."""
    if not rows:
        return "no rows"
    keys = list(dict.fromkeys(k for r in rows for k in r))
    parts = [f"{len(rows)} rows; fields: {', '.join(keys)}"]
    for k in keys:
        values = [r.get(k) for r in rows]
        texts = [str(v) for v in values if v is not None]
        distinct = Counter(texts)
        categorical = (
            len(distinct) <= 12 and len(distinct) < len(texts) and all(len(t) <= 40 for t in distinct)
        )
        if texts and categorical:
            common = ", ".join(f"{v} ({n})" for v, n in distinct.most_common())
            parts.append(f"{k}: {common}")
        elif texts:
            mean_len = sum(len(t) for t in texts) / len(texts)
            parts.append(f"{k}: free text, about {mean_len:.0f} characters")
    return "\n".join(parts)


def format_rows(rows: Sequence[Mapping[str, Any]], limit: int = 8, max_chars: int = 300) -> str:
    out = []
    for r in rows[:limit]:
        line = json.dumps(to_jsonable(dict(r)), ensure_ascii=False)
        out.append(line if len(line) <= max_chars else line[:max_chars] + "...")
    return "\n".join(out)


def describe_function(fn: LMFunction[..., Any], instruction: str | None = None) -> str:
    sig = fn.signature
    lines = [f"name: {sig.name}"]
    for f in sig.inputs:
        lines.append(
            f"input {f.name}: {type_name(f.annotation)}" + (f" - {f.description}" if f.description else "")
        )
    for f in sig.outputs:
        lines.append(
            f"output {f.name}: {type_name(f.annotation)}" + (f" - {f.description}" if f.description else "")
        )
    lines.append(f"current instruction: {instruction if instruction is not None else sig.instruction}")
    return "\n".join(lines)


_META = re.compile(
    r"(data_summary|program:|history:|tip:|examples:|\bargs:|new instruction|proposed instruction|"
    r"@lm_function|\bdef \w+\(|```|as an ai|i cannot|here is|here's)",
    re.IGNORECASE,
)
_FORMAT = re.compile(
    r"(\bjson\b|\bxml\b|\byaml\b|<\w+>|\{\s*\"|reply format|output format|respond in the format|"
    r"^\s*\w+:\s*<)",
    re.IGNORECASE | re.MULTILINE,
)


def clean_instruction(text: str) -> str:
    """Strip the usual wrappers a model puts around an instruction (labels, quotes)."""
    text = text.strip()
    text = re.sub(r"^(new |improved |better )?instruction\s*:\s*", "", text, flags=re.IGNORECASE)
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


def check_instruction(text: str, fn: LMFunction[..., Any]) -> str | None:
    """Why a proposed instruction is rejected, or None when it is acceptable.

    Rejected: empty or too short, longer than ``MAX_INSTRUCTION_CHARS``, leaking the proposer's
    own prompt (field names, code, chatter), or inventing an output format (JSON/XML/tags/templates)
    when lmprog adds the format itself.
    """
    if len(text) < MIN_INSTRUCTION_CHARS:
        return "empty or too short"
    if len(text) > MAX_INSTRUCTION_CHARS:
        return f"longer than {MAX_INSTRUCTION_CHARS} characters"
    if m := _META.search(text):
        return f"leaks proposer text ({m.group(0)!r})"
    if leak := _echoed_prompt_text(text):
        return f"leaks proposer text ({leak!r})"
    if m := _FORMAT.search(text):
        return f"invents an output format ({m.group(0).strip()!r})"
    if sum(c.isalpha() for c in text) < 0.6 * len(text):
        return "not prose"
    if text.strip().lower() == fn.signature.instruction.strip().lower():
        return "same as the original"
    return None


def _ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z0-9']+", text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


_ECHO_N = 6


@functools.cache
def _proposer_ngrams() -> frozenset[tuple[str, ...]]:
    """Word 6-grams of everything the proposer is shown by lmprog itself (its own instructions
    and the tips): a proposal repeating one copied the prompt instead of writing an instruction."""
    texts = [*TIPS.values(), summarize_data.signature.instruction, propose_instruction.signature.instruction]
    texts += [f.description for fn in (summarize_data, propose_instruction) for f in fn.signature.inputs]
    return frozenset(g for t in texts for g in _ngrams(t, _ECHO_N))


def _echoed_prompt_text(text: str) -> str | None:
    for gram in _ngrams(text, _ECHO_N):
        if gram in _proposer_ngrams():
            return " ".join(gram)
    return None


@dataclass
class Proposal:
    """An instruction candidate with where it came from."""

    instruction: str
    tip: str = ""
    round: int = 0
    rejected: list[str] = field(default_factory=list)


class GroundedProposer:
    """Writes instruction candidates for each lm_function of a program.

    ``lm``: the proposer LM (None = the task's LM). ``program_listing``: ``analyze(program).render()``.
    ``attempts``: how many proposals may be drawn per accepted candidate before giving up.
    """

    def __init__(
        self,
        program_listing: str,
        *,
        lm: Any = None,
        seed: int = 0,
        attempts: int = 3,
        use_tips: bool = True,
    ) -> None:
        self.program_listing = program_listing
        self.lm = lm
        self.seed = seed
        self.attempts = attempts
        self.use_tips = use_tips
        self.rejections: list[tuple[str, str]] = []

    def summarize(self, rows: Sequence[Mapping[str, Any]]) -> str:
        """Computed statistics plus the proposer's own summary of a sample of rows."""
        stats = data_statistics(rows)
        sample = list(rows)
        # each draw has its own generator, seeded by what it is for: what is drawn never depends on
        # which earlier steps ran in this process and which were loaded from storage (a resume)
        random.Random(f"{self.seed}-summary").shuffle(sample)
        try:
            with settings.context(**self._lm_override()):
                written = summarize_data(statistics=stats, rows=format_rows(sample))
        except BudgetExceededError:
            raise
        except LmprogError as e:
            if provider_failed(e):  # not the proposal's fault: stop, rather than store a poorer round
                raise
            logger.warning("data summary failed (%s); using statistics only", e)
            written = ""
        written = written.strip()
        if len(written) > 600 or _META.search(written):
            written = ""
        return stats + ("\n" + written if written else "")

    def propose(
        self,
        fn: LMFunction[..., Any],
        n: int,
        *,
        data_summary: str,
        demos: Sequence[Mapping[str, Any]] = (),
        history: Sequence[tuple[str, float]] = (),
        round: int = 0,
        exclude: Sequence[str] = (),
    ) -> list[Proposal]:
        """Up to ``n`` new, guarded, distinct instructions for ``fn``."""
        out: list[Proposal] = []
        seen = {e.strip().lower() for e in exclude} | {fn.signature.instruction.strip().lower()}
        examples = format_rows(list(demos), limit=4) or "(none)"
        hist = (
            "\n".join(f"score {s:.1f}: {i}" for i, s in sorted(history, key=lambda h: h[1])) or "(none yet)"
        )
        rng = random.Random(f"{self.seed}-{round}-{fn.signature.module}:{fn.signature.qualname}")
        for k in range(n * self.attempts):
            if len(out) >= n:
                break
            tip_name = rng.choice(sorted(TIPS)) if self.use_tips else ""
            try:
                with settings.context(**self._lm_override(), rollout=1 + round * 1000 + k):
                    raw = propose_instruction(
                        program=self.program_listing,
                        function=describe_function(fn),
                        data_summary=data_summary,
                        examples=examples,
                        history=hist,
                        tip=TIPS.get(tip_name, "(none)"),
                    )
            except BudgetExceededError:
                raise
            except LmprogError as e:
                if provider_failed(e):
                    raise
                self.rejections.append((str(e)[:200], "proposer failed"))
                logger.info("proposal for %s failed: %s", fn.name, e)
                continue
            text = clean_instruction(raw)
            why = check_instruction(text, fn)
            if why is None and text.lower() in seen:
                why = "duplicate"
            if why is not None:
                self.rejections.append((text[:200], why))
                logger.info("rejected proposal for %s (%s): %r", fn.name, why, text[:120])
                continue
            seen.add(text.lower())
            out.append(Proposal(text, tip_name, round))
        return out

    def _lm_override(self) -> dict[str, Any]:
        return {"lm": self.lm} if self.lm is not None else {}
