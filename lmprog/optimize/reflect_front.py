"""The choices of a reflective run that depend only on its records: the Pareto front of candidates
over the validation examples, the parent drawn from it, and the pairs of lineages worth merging.

The front keeps every candidate that scores best on at least one validation example (ties
included), minus those another candidate dominates (at least as good on every example, better on
one). Drawing parents from it, weighted by how many examples each is best on, keeps lineages
alive that solve some examples the overall best does not; a merge then combines two lineages that
changed different functions since their common ancestor.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from lmprog.optimize.reflect_store import CandidateRecord

__all__ = ["ancestors", "choose_parent", "merge_instructions", "merge_pair", "pareto_front"]


def pareto_front(candidates: Sequence[CandidateRecord]) -> dict[int, int]:
    """The candidates on the front, each with the number of validation examples it is best on
    (ties count for every candidate tied), in index order."""
    if not candidates:
        return {}
    n = min(len(c.values) for c in candidates)
    wins: dict[int, int] = {}
    for j in range(n):
        best = max(c.values[j] for c in candidates)
        for c in candidates:
            if c.values[j] == best:
                wins[c.index] = wins.get(c.index, 0) + 1
    if not wins:  # no validation examples: the seed alone
        return {candidates[0].index: 1}
    by_index = {c.index: c for c in candidates}
    kept = {
        i: w
        for i, w in wins.items()
        if not any(_dominates(by_index[o], by_index[i], n) for o in wins if o != i)
    }
    return dict(sorted(kept.items()))


def _dominates(a: CandidateRecord, b: CandidateRecord, n: int) -> bool:
    at_least = all(a.values[j] >= b.values[j] for j in range(n))
    if not at_least:
        return False
    if any(a.values[j] > b.values[j] for j in range(n)):
        return True
    return a.index < b.index  # identical scores everywhere: the earlier one stands for both


def choose_parent(candidates: Sequence[CandidateRecord], rng: random.Random) -> int:
    """A candidate of the front, drawn with weight = the examples it is best on."""
    front = pareto_front(candidates)
    indices = list(front)
    return rng.choices(indices, weights=[front[i] for i in indices], k=1)[0]


def ancestors(index: int, candidates: Sequence[CandidateRecord]) -> set[int]:
    """``index`` and every candidate it descends from."""
    by_index = {c.index: c for c in candidates}
    seen: set[int] = set()
    todo = [index]
    while todo:
        i = todo.pop()
        if i in seen or i not in by_index:
            continue
        seen.add(i)
        todo.extend(by_index[i].parents)
    return seen


def _changed(a: CandidateRecord, base: CandidateRecord) -> set[str]:
    return {fid for fid, text in a.instructions.items() if base.instructions.get(fid) != text}


def merge_instructions(
    a: CandidateRecord, b: CandidateRecord, candidates: Sequence[CandidateRecord]
) -> dict[str, str] | None:
    """The instructions of ``a`` and ``b`` combined: from their latest common ancestor, each
    function takes the instruction of the lineage that changed it. None when the two are not
    two lineages (one descends from the other), share no ancestor, changed the same function, or
    one of them changed nothing."""
    up_a, up_b = ancestors(a.index, candidates), ancestors(b.index, candidates)
    if a.index in up_b or b.index in up_a:
        return None
    common = up_a & up_b
    if not common:
        return None
    base = next(c for c in candidates if c.index == max(common))
    changed_a, changed_b = _changed(a, base), _changed(b, base)
    if not changed_a or not changed_b or changed_a & changed_b:
        return None
    merged = dict(base.instructions)
    merged.update({fid: a.instructions[fid] for fid in changed_a})
    merged.update({fid: b.instructions[fid] for fid in changed_b})
    return merged


def merge_pair(
    candidates: Sequence[CandidateRecord], tried: set[tuple[int, int]]
) -> tuple[int, int, dict[str, str]] | None:
    """The best pair of front candidates to merge that was not ``tried``: two lineages that
    improved different functions, whose combination is not a candidate yet; the pair with the
    highest summed validation score first. None when there is none."""
    front = pareto_front(candidates)
    by_index = {c.index: c for c in candidates}
    known = [c.instructions for c in candidates]
    pairs = sorted(
        ((a, b) for a in front for b in front if a < b and (a, b) not in tried),
        key=lambda p: (-(by_index[p[0]].score + by_index[p[1]].score), p),
    )
    for a, b in pairs:
        merged = merge_instructions(by_index[a], by_index[b], candidates)
        if merged is not None and merged not in known:
            return a, b, merged
    return None
