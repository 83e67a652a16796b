"""Label scoring: the options of a categorical output, their log-likelihoods, and contextual
calibration.

A function whose single output is a ``Literal``, an ``Enum`` or ``bool`` has a few options
(:func:`label_options`, written as the wire format writes them: ``yes``/``no`` for bool). With
``decode="score"`` an lm_function does not sample a reply: it asks the model for the
log-likelihood of every option and returns the likeliest (:func:`best_label`).

- An LM that takes a grammar and returns logprobs (the embedded model), options that can differ in
  their first token (:func:`first_words_differ`): one request, a grammar allowing exactly the
  options (:func:`choice_grammar`), one token, ``top_logprobs`` = :data:`GRAMMAR_TOP_LOGPROBS` (of
  which the LM keeps only the alternatives that begin an option, ``alternatives_for``: the rest
  would make each cache entry ~45 KB); each option scores the best logprob among the alternatives
  that begin its text (:func:`first_token_scores` with ``lead``, strict: see there). What
  llama.cpp (xllamacpp) returns there, found by experiment: the first token's ``top_logprobs`` are
  natural-log probabilities of the model's own distribution over the whole vocabulary *before* the
  grammar's mask (not renormalised over the allowed tokens), so an option's first token may be
  missing from a short list (zero-shot, SmolLM2 ranked ``maybe`` 4,000th). The generated token is
  the likeliest allowed one, with the same unmasked logprob. (``post_sampling_probs`` with
  temperature 1 gives probabilities renormalised over the allowed tokens only when the
  unconstrained draw broke the grammar, else the unmasked ones: it depends on the draw, so it is
  not used.) Unmasked or renormalised, the allowed tokens' logprobs differ by one constant, so the
  choice and the calibrated probabilities are the same either way.
- The same LM, options that share their first word, or a one-request reply that cannot tell them
  apart: a walk of the options' token tree (:mod:`lmprog.format._trie`). Each request allows a
  group of the options (all of them first) and runs to the end of one; each option scores the
  logprob of the path up to the token that tells it apart from every other option (for options
  whose first tokens differ, the first token's logprob, as above); a shared token the reply did
  not follow, or an option whose tokens were not among the alternatives, costs one request more.
  Each request of the walk scores at least one option more: at most one per option (after the
  one-token request, when that came first).
- Options of which one is a prefix of another (``no``/``no way``): no token tells them apart, so
  one request per option, the grammar forcing exactly that option's text
  (:func:`forced_grammar`), ``logprobs`` on; the option's score is the sum of the logprobs of the
  tokens that spell it (:func:`sequence_logprob`), each under the model before the grammar's mask.
  ``ScoreRun(..., one_request=False)`` scores any options this way (for comparisons).
- Any other LM that returns logprobs: one request, one token, ``top_logprobs``; each option scores
  the best logprob among the top first tokens that begin it (:func:`first_token_scores`), the
  others a floor below the lowest seen. Options that share their first token tie; that is the
  price of one request.

``decode="calibrated"`` divides out the label bias the prompt itself causes (contextual
calibration, "Calibrate Before Use", Zhao et al. 2021): the options are scored with every input
replaced by each of the content-free values :data:`CONTENT_FREE`; the option probabilities
(softmax over the options) averaged over those inputs are the *prior* (:func:`calibration_prior`,
stored in the prompt file), and a call's choice is the option with the largest ``p(option | x) /
prior(option)`` (:func:`calibrated`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from lmprog.format._grammar import literal
from lmprog.signature import BoolSpec, ChoiceSpec, ConstrainedSpec, Signature, field_spec

Decode = Literal["sample", "score", "calibrated"]
DECODES: tuple[Decode, ...] = ("sample", "score", "calibrated")
#: the content-free inputs calibration scores the options on (each input field gets each value)
CONTENT_FREE: tuple[str, ...] = ("N/A", "", "[MASK]")
#: how many top alternatives the one-request scorer asks for (OpenAI's maximum)
TOP_LOGPROBS = 20
#: how many the one-request scorer asks a grammar LM for: its alternatives ignore the grammar
GRAMMAR_TOP_LOGPROBS = 1000
# the first pre-token of a text, as byte-level BPE tokenizers split words (GPT-2's pattern)
_FIRST_WORD = re.compile(r" ?[^\W\d_]+| ?\d| ?[^\w\s]+| ?_+|\s+")


@dataclass(frozen=True)
class LabelOption:
    """One option of a categorical output: its value and its text on the wire."""

    value: Any
    text: str


def check_decode(decode: object) -> Decode:
    """``decode`` if it is one of :data:`DECODES`; else ValueError naming the choices."""
    for known in DECODES:
        if decode == known:
            return known
    raise ValueError(f"decode must be one of {', '.join(DECODES)}, got {decode!r}")


def label_options(signature: Signature) -> tuple[LabelOption, ...] | None:
    """The options of ``signature``'s output when it is one categorical field (``Literal``,
    ``Enum``, ``bool``); None otherwise."""
    if signature.multi_output or len(signature.outputs) != 1:
        return None
    spec = field_spec(signature.outputs[0])
    while isinstance(spec, ConstrainedSpec):
        spec = spec.inner
    if isinstance(spec, BoolSpec):
        return (LabelOption(True, "yes"), LabelOption(False, "no"))
    if isinstance(spec, ChoiceSpec):
        return tuple(LabelOption(v, t) for v, t in zip(spec.options, spec.labels(), strict=True))
    return None


def forced_grammar(text: str) -> str:
    """A GBNF grammar that allows exactly ``text``."""
    return f"root ::= {literal(text)}\n"


def choice_grammar(texts: Sequence[str]) -> str:
    """A GBNF grammar that allows exactly one of ``texts``."""
    return "root ::= " + " | ".join(literal(t) for t in texts) + "\n"


def choice_texts(grammar: str) -> tuple[str, ...] | None:
    """The texts a :func:`choice_grammar` grammar allows; None for any other grammar."""
    literal_re = r'"(?:[^"\\]|\\.)*"'
    match = re.fullmatch(rf"root ::= ({literal_re}(?: \| {literal_re})*)\n?", grammar)
    if match is None:
        return None
    texts = []
    for part in re.findall(literal_re, match.group(1)):
        text = forced_text(f"root ::= {part}")
        if text is None:
            return None
        texts.append(text)
    return tuple(texts)


def first_words_differ(texts: Sequence[str]) -> bool:
    """Whether the texts' first words (pre-tokens, :data:`_FIRST_WORD`) are pairwise different.
    A tokenizer never merges across them, so texts with the same first word share their first
    token (``card_arrival``/``card_linking``); texts whose first words differ may still share one
    (``humor``/``human`` as ``hum``...), which the reply shows (:func:`first_token_scores`)."""
    words = [m.group(0) if (m := _FIRST_WORD.match(t)) else t for t in texts]
    return all(words) and len(set(words)) == len(words)


def forced_text(grammar: str) -> str | None:
    """The text a :func:`forced_grammar` grammar allows; None for any other grammar."""
    match = re.fullmatch(r'root ::= "((?:[^"\\]|\\.)*)"\n?', grammar)
    if match is None:
        return None
    escapes = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}
    return re.sub(
        r"\\(x[0-9A-Fa-f]{2}|.)",
        lambda m: (
            chr(int(m.group(1)[1:], 16)) if m.group(1)[0] == "x" else escapes.get(m.group(1), m.group(1))
        ),
        match.group(1),
    )


def sequence_logprob(logprobs: Sequence[Mapping[str, Any]], text: str) -> float:
    """The summed logprob of the leading tokens that spell ``text`` (a trailing end-of-text token
    is not counted); ValueError when the tokens do not spell it."""
    spelled, total = "", 0.0
    for token in logprobs:
        if len(spelled) >= len(text):
            break
        spelled += str(token.get("token", ""))
        total += float(token.get("logprob", 0.0))
    if spelled[: len(text)] != text or len(spelled) < len(text):
        raise ValueError(f"the returned tokens spell {spelled!r}, not {text!r}")
    return total


def first_token_scores(
    logprobs: Sequence[Mapping[str, Any]], options: Sequence[LabelOption], *, lead: str | None = None
) -> dict[str, float]:
    """Option scores from the top alternatives of the first generated token (see module docs).

    Without ``lead`` (an LM without a grammar): tokens match options loosely (case and spaces
    folded) and options not seen score a floor. With ``lead`` (the reply of a grammar allowing
    exactly ``lead + option`` for each option): a token counts for an option only when it begins
    ``lead + text`` exactly; a token that begins every option (``lead`` itself) says nothing and
    is skipped. ValueError, rather than a guess, when an option has no such token among the
    alternatives, or when a token shared by some options is likelier than one of those options'
    own tokens (the first token cannot tell them apart).
    """
    if not logprobs:
        raise ValueError("the reply carries no logprobs")
    first = logprobs[0]
    top = [(str(first.get("token", "")), float(first.get("logprob", 0.0)))]
    top += [(str(t.get("token", "")), float(t.get("logprob", 0.0))) for t in first.get("top_logprobs") or ()]
    if lead is not None:
        return _strict_scores(top, options, lead)
    floor = min(lp for _, lp in top) - math.log(10)
    scores = {}
    for option in options:
        want = _norm(option.text)
        found = [lp for token, lp in top if _norm(token) and want.startswith(_norm(token))]
        scores[option.text] = max(found) if found else floor
    return scores


def _strict_scores(
    top: Sequence[tuple[str, float]], options: Sequence[LabelOption], lead: str
) -> dict[str, float]:
    scores: dict[str, float] = {}
    shared: dict[str, float] = {}  # the best logprob of a token shared by some options, per option
    for option in options:
        want = lead + option.text
        for token, lp in top:
            if not token or not want.startswith(token):
                continue
            owners = sum(1 for o in options if (lead + o.text).startswith(token))
            if owners == len(options) > 1:
                continue
            target = scores if owners == 1 else shared
            target[option.text] = max(lp, target.get(option.text, -math.inf))
    missing = [o.text for o in options if o.text not in scores]
    if missing:
        names = ", ".join(map(repr, missing))
        raise ValueError(f"no first token of {names} among the {len(top)} alternatives")
    blurred = [text for text, lp in shared.items() if lp > scores[text]]
    if blurred:
        names = ", ".join(map(repr, blurred))
        raise ValueError(f"the likeliest first token of {names} begins another option too")
    return scores


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def probabilities(scores: Mapping[str, float]) -> dict[str, float]:
    """Softmax of option log-scores: probabilities over the options that sum to 1."""
    top = max(scores.values())
    weights = {k: math.exp(v - top) for k, v in scores.items()}
    total = sum(weights.values())
    return {k: w / total for k, w in weights.items()}


def calibration_prior(score_sets: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The mean option probabilities over the content-free inputs' scores (rounded to 6 places;
    never below 1e-6, so dividing by it stays finite)."""
    if not score_sets:
        raise ValueError("calibration needs the scores of at least one content-free input")
    probs = [probabilities(s) for s in score_sets]
    return {k: max(1e-6, round(sum(p[k] for p in probs) / len(probs), 6)) for k in score_sets[0]}


def calibrated(scores: Mapping[str, float], prior: Mapping[str, float]) -> dict[str, float]:
    """``log p(option | x) - log prior(option)`` per option (``p`` normalized over the options);
    an option the prior lacks is left uncorrected."""
    probs = probabilities(scores)
    return {k: math.log(max(p, 1e-300)) - math.log(prior.get(k, 1.0)) for k, p in probs.items()}


def best_label(scores: Mapping[str, float], options: Sequence[LabelOption]) -> LabelOption:
    """The option with the largest score (ties: the earlier option)."""
    best = options[0]
    for option in options[1:]:
        if scores[option.text] > scores[best.text]:
            best = option
    return best


def prior_problems(prior: Any, options: Sequence[LabelOption] | None) -> list[str]:
    """What is wrong with a stored calibration prior for these options (empty when fine)."""
    if not isinstance(prior, Mapping) or not prior:
        return ["must be a mapping of option -> probability"]
    problems = []
    for key, value in prior.items():
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not isinstance(key, str) or not ok or not 0 < value <= 1:
            problems.append(f"{key!r}: {value!r} is not a probability in (0, 1]")
    if options is not None:
        wanted = {o.text for o in options}
        if set(prior) != wanted:
            problems.append(f"its options {sorted(map(str, prior))} are not the output's {sorted(wanted)}")
    return problems
