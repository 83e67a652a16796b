"""Label scoring by a walk of the options' token tree: options that share their first token or
word, scored in a few requests instead of one per option.

Contract. ``texts`` are the options' texts as the reply spells them (the layout's lead
included), pairwise different, none a prefix of another (:func:`nested_pair` finds such a pair;
those options are scored one request each, see :mod:`lmprog.format._labels`). A *reply* is the
``logprobs`` of a request whose grammar allows exactly the texts of a group of options
(:func:`~lmprog.format.choice_grammar`), greedy, long enough to finish an option: its generated
tokens ``g_0..g_n`` spell one option of the group, and each position carries its top
alternatives, natural-log probabilities under the model before the grammar's mask (so the same
prompt gives the same numbers whichever group the grammar allows).

:func:`walk_reply` reads one reply. With ``P`` the text generated before position ``i`` and
``L`` its summed logprob: every alternative ``t`` at position ``i`` (``g_i`` included) such that
``P + t`` begins some texts has *owners*, the options (among all, not only the group) whose text
begins with ``P + t``. One owner: that option gets the *candidate* score ``L + lp(t)``, the
log-probability of the path up to the token that tells it apart from every other option. Two or
more owners and ``t`` is not ``g_i``: a *branch* the reply did not follow. Then ``P += g_i``,
``L += lp(g_i)``; the walk stops once ``P`` has one owner (the generated option got its score at
its distinguishing token) or the tokens run out. An option's score is the best of its
candidates over every reply. Options whose first tokens differ get their score at the first
position: the first token's logprob, as :func:`~lmprog.format.first_token_scores` reads it.

:func:`next_groups` says what to request after a reply: each branch's owners still without a
score form a group (their distinguishing tokens lie past the branch), and the options left
without a score and in no group (their tokens were not among the alternatives) form one more.
A group's request scores at least the option it generates, which was without a score when the
group was requested: so the walk sends at most one request per option (:func:`branchings`
bounds it further when every option's tokens are among the alternatives).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Branch", "Walk", "branchings", "nested_pair", "next_groups", "owners_of", "walk_reply"]


@dataclass(frozen=True)
class Branch:
    """A token shared by some options that the reply did not follow: ``prefix`` is the text up
    to and including it, ``owners`` the indices of the options whose text begins with it."""

    prefix: str
    owners: tuple[int, ...]


@dataclass(frozen=True)
class Walk:
    """What one reply says (see the module docs): ``candidates``, option index -> its best
    candidate score in this reply; ``branches`` in the order met; ``path``, the text the walk
    read (the generated text up to the distinguishing token, or all of it)."""

    candidates: dict[int, float] = field(default_factory=dict)
    branches: tuple[Branch, ...] = ()
    path: str = ""


def nested_pair(texts: Sequence[str]) -> tuple[str, str] | None:
    """The first pair ``(a, b)`` of ``texts`` where ``a`` is a prefix of ``b`` (or equal to it);
    None when there is none. The walk cannot tell ``a`` from ``b`` at a token."""
    for i, a in enumerate(texts):
        for j, b in enumerate(texts):
            if i != j and b.startswith(a):
                return a, b
    return None


def owners_of(texts: Sequence[str], prefix: str) -> tuple[int, ...]:
    """The indices of the texts that begin with ``prefix``."""
    return tuple(k for k, text in enumerate(texts) if text.startswith(prefix))


def walk_reply(logprobs: Sequence[Mapping[str, Any]], texts: Sequence[str]) -> Walk:
    """The candidates and branches of one reply (see the module docs)."""
    candidates: dict[int, float] = {}
    branches: dict[str, Branch] = {}
    spelled, total = "", 0.0
    for position in logprobs:
        generated = str(position.get("token", ""))
        logprob = float(position.get("logprob", 0.0))
        top = [(generated, logprob)]
        top += [
            (str(t.get("token", "")), float(t.get("logprob", 0.0)))
            for t in position.get("top_logprobs") or ()
        ]
        for token, lp in top:
            prefix = spelled + token
            found = owners_of(texts, prefix) if token else ()
            if len(found) == 1:
                candidates[found[0]] = max(total + lp, candidates.get(found[0], -math.inf))
            elif len(found) > 1 and token != generated and prefix not in branches:
                branches[prefix] = Branch(prefix, found)
        spelled += generated
        total += logprob
        if len(owners_of(texts, spelled)) <= 1:
            break
    return Walk(candidates, tuple(branches.values()), spelled)


def next_groups(
    walk: Walk, scored: Collection[int], pending: Sequence[Sequence[int]], count: int
) -> list[tuple[int, ...]]:
    """The groups to request after ``walk`` (see the module docs), beyond the ``pending`` ones:
    ``scored`` are the options with a score so far, ``count`` the number of options. An option
    goes into one group at most."""
    queued = {k for group in pending for k in group if k not in scored}
    out: list[tuple[int, ...]] = []
    for branch in walk.branches:
        group = tuple(k for k in branch.owners if k not in scored and k not in queued)
        if group:
            out.append(group)
            queued.update(group)
    rest = tuple(k for k in range(count) if k not in scored and k not in queued)
    if rest:
        out.append(rest)
    return out


def branchings(texts: Sequence[str]) -> int:
    """The branching points of the texts' character tree beyond its root: the non-empty prefixes
    of two or more texts that go on differently in them (``v`` of ``versicolor``/``virginica``,
    ``card_`` of ``card_arrival``/``card_linking``). Each group the walk requests after its first
    request lies below one of them, one group per point, so with every option's tokens among the
    alternatives a call sends at most ``1 + branchings(texts)`` requests."""
    following: dict[str, set[str]] = {}
    for text in texts:
        for depth in range(1, len(text)):
            following.setdefault(text[:depth], set()).add(text[depth])
    return sum(1 for nexts in following.values() if len(nexts) > 1)
