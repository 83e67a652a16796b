"""The part of the HTML report only a reflective run has: its iterations (what was tried on which
function, the gate used, the minibatch scores before and after, the gate's verdict, the validation
score, the best score so far and the metric's feedback on the minibatch the reflection read), when
the gate was raised, the candidate tree with the Pareto front marked, and the accepted edits as
diffs. Everything is escaped by the caller's helpers.
"""

from __future__ import annotations

import html

from lmprog.optimize.reflect_result import ReflectDetails

__all__ = ["reflect_sections"]


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _f(score: float | None) -> str:
    return "-" if score is None else f"{score:.1f}"


def _short(fid: str | None) -> str:
    return "-" if fid is None else fid.rsplit(":", 1)[-1]


#: feedback texts shown per iteration, and characters kept of each
FEEDBACK_SHOWN, FEEDBACK_CHARS = 3, 160


def _feedback(texts: tuple[str, ...]) -> str:
    kept = [
        t if len(t) <= FEEDBACK_CHARS else t[: FEEDBACK_CHARS - 3] + "..." for t in texts[:FEEDBACK_SHOWN]
    ]
    more = len(texts) - len(kept)
    return " | ".join(kept) + (f" (+{more} more)" if more > 0 else "") if kept else "-"


def iterations_table(details: ReflectDetails) -> str:
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "#",
            "kind",
            "function",
            "parent",
            "gate",
            "minibatch",
            "verdict",
            "validation",
            "best so far",
            "feedback",
        )
    )
    gates = details.gates
    rows = []
    for it, best in zip(details.iterations, details.best_scores, strict=False):
        parent = str(it.parent) + (f" + {it.other_parent}" if it.other_parent is not None else "")
        if it.candidate is not None:
            parent += f" → {it.candidate}"
        batch = (
            "-" if it.parent_minibatch is None else f"{it.parent_minibatch:.1f} → {_f(it.child_minibatch)}"
        )
        verdict = "accepted" if it.accepted else (it.note or "rejected")
        if it.false_accept:
            verdict += " (lost on validation)"
        cells = (
            it.iteration,
            it.kind,
            _short(it.function),
            parent,
            gates.get(it.iteration, "-"),
            batch,
            verdict,
            _f(it.val_score),
            _f(best),
            _feedback(it.feedback),
        )
        rows.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    rate = details.false_accept_rate
    summary = (
        f"<p>{details.accepted} edit(s) accepted by the minibatch gate, {details.false_accepts} of them "
        f"then not better than their parent on validation"
        + (f" (false-accept rate {rate:.0%})" if rate is not None else "")
        + ".</p>"
    )
    for i, gate in details.gate_changes[1:]:
        summary += f"<p>gate raised at iteration {i} to {_e(gate)} (accepted edits lost on validation).</p>"
    if details.test_score is not None:
        summary += (
            f"<p>test score {_f(details.test_score)} (seed program {_f(details.baseline_test_score)}); "
            f"validation → test gap {_f(details.val_test_gap)}.</p>"
        )
    if not rows:
        return summary + "<p class='empty'>No iteration finished.</p>"
    return summary + f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def candidate_tree(details: ReflectDetails) -> str:
    """Each candidate under its parent(s), indented by depth, the front marked with ★."""
    children: dict[int, list[int]] = {}
    for c in details.candidates:
        if c.parents:
            children.setdefault(c.parents[0], []).append(c.index)
    by_index = {c.index: c for c in details.candidates}
    lines: list[str] = []

    def show(index: int, depth: int) -> None:
        c = by_index[index]
        star = " ★" if index in details.front else ""
        how = (
            "seed"
            if not c.parents
            else (
                f"edit of {_short(c.function)}"
                if c.function
                else f"merge of {' and '.join(map(str, c.parents))}"
            )
        )
        lines.append(f"{'    ' * depth}{index}: {c.score:.1f} ({how}){star}")
        for child in children.get(index, []):
            show(child, depth + 1)

    if details.candidates:
        show(details.candidates[0].index, 0)
    return f"<pre>{_e(chr(10).join(lines))}</pre><p>★ on the Pareto front over validation examples</p>"


def edits_block(details: ReflectDetails) -> str:
    parts = [
        f"<h3>iteration {e.iteration}: {_e(_short(e.function))} ({e.parent} → {e.candidate})</h3>"
        f"<pre>{_e(e.diff)}</pre>"
        for e in details.edits
    ]
    return "".join(parts) or "<p class='empty'>No accepted edit.</p>"


def reflect_sections(details: ReflectDetails) -> list[tuple[str, str, str]]:
    """(title, html, anchor) of each section a reflective run adds."""
    return [
        ("Iterations", iterations_table(details), "iterations"),
        ("Candidate tree", candidate_tree(details), "tree"),
        ("Accepted edits", edits_block(details), "edits"),
    ]
