"""A self-contained HTML report of an optimization: one file, inline CSS and SVG, no script, nothing
fetched, so it opens in any browser, offline, and can be attached to a pull request or a CI run.

It shows the scores (baseline, optimized), the score of every trial with the best-so-far curve,
every candidate's score, LM usage and cost (and, when the optimizer measured it, score against
prompt size), then the chosen instruction and demos of each lm_function. Everything shown is
escaped, and the values of credential-like environment variables are redacted from the page.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmprog._version import __version__
from lmprog.lm import redact
from lmprog.optimize.mipro_result import MiproDetails
from lmprog.optimize.reflect_result import ReflectDetails
from lmprog.promptfile import atomic_write_text, function_id
from lmprog.report._reflect import reflect_sections

if TYPE_CHECKING:
    from lmprog.optimize import OptimizationResult

__all__ = ["render_report", "write_report"]

_BLUE, _ORANGE, _GREY, _GREEN = "#2563eb", "#ea580c", "#9ca3af", "#16a34a"


@dataclass(frozen=True)
class _Trial:
    label: str
    score: float


def write_report(result: OptimizationResult, path: str | os.PathLike[str], **kwargs: Any) -> Path:
    """Write :func:`render_report` to ``path`` (atomically) and return the path."""
    return atomic_write_text(Path(path), render_report(result, **kwargs))


def render_report(
    result: OptimizationResult,
    *,
    title: str | None = None,
    program: str | None = None,
    model: str | None = None,
    estimated_calls: int | None = None,
) -> str:
    """The report as one HTML document."""
    trials = _trials(result)
    u = result.usage
    heading = (
        title or f"lmprog optimization: {program or ', '.join(f.signature.qualname for f in result.states)}"
    )
    facts = [
        ("optimizer", result.optimizer),
        ("seed", str(result.seed)),
        ("model", model or "-"),
        ("lmprog", __version__),
        ("date", _dt.date.today().isoformat()),
    ]
    if result.stopped_by:
        facts.append(("stopped by budget", result.stopped_by))
    facts.extend(("warning", w) for w in result.warnings)
    cards = [
        ("baseline score", _fmt(result.baseline_score)),
        ("optimized score", _fmt(result.score)),
        ("change", _delta(result.baseline_score, result.score)),
        ("LM calls", f"{u.calls}" + (f" / ~{estimated_calls} est." if estimated_calls is not None else "")),
        ("tokens", f"{u.total_tokens:,}"),
        ("cost", f"${u.cost:.4f}"),
    ]
    sections = [
        _section("Score per trial", _trial_chart(trials, result.baseline_score), "trials"),
        _section("Per-candidate scores", _candidate_chart(result), "candidates"),
        *_reflect_blocks(result),
        _section("Cost and calls", _cost_block(result), "cost"),
        _section("Chosen prompts", _functions_block(result), "prompts"),
        _section("Details", _details_block(result), "details"),
    ]
    body = (
        f"<h1>{_e(heading)}</h1>"
        f"<p class='facts'>{' · '.join(f'<b>{_e(k)}</b> {_e(v)}' for k, v in facts)}</p>"
        f"<div class='cards'>{''.join(_card(k, v) for k, v in cards)}</div>" + "".join(sections)
    )
    head = f"<meta charset='utf-8'><title>{_e(heading)}</title><style>{_CSS}</style>"
    page = f"<!DOCTYPE html>\n<html lang='en'><head>{head}</head><body>{body}</body></html>\n"
    return str(redact(page))


def _reflect_blocks(result: OptimizationResult) -> list[str]:
    details = result.details
    if not isinstance(details, ReflectDetails):
        return []
    return [_section(title, content, anchor) for title, content, anchor in reflect_sections(details)]


# -- data ------------------------------------------------------------------------------------------
def _trials(result: OptimizationResult) -> list[_Trial]:
    """Trials in order: the optimizer's trial history when it keeps one, else its candidates."""
    details = result.details
    if isinstance(details, MiproDetails) and details.trial_history:
        return [_Trial(f"trial {t.number}", t.score) for t in details.trial_history]
    # another optimizer's, kept in its details dict (a MIPRO run with no trial has none)
    history = None if isinstance(details, MiproDetails) else details.get("trial_history")
    if isinstance(history, list) and history:
        out = []
        for i, t in enumerate(history):
            if isinstance(t, dict) and isinstance(t.get("score"), int | float):
                out.append(_Trial(str(t.get("label") or f"trial {t.get('number', i)}"), float(t["score"])))
        if out:
            return out
    return [
        _Trial(c.label or f"candidate {i + 1}", c.score)
        for i, c in enumerate(result.candidates)
        if c.score is not None
    ]


# -- charts ----------------------------------------------------------------------------------------
_W, _H, _L, _R, _T, _B = 680, 280, 48, 16, 16, 40


def _x(i: int, n: int) -> float:
    return _L + (_W - _L - _R) * (0.5 if n <= 1 else i / (n - 1))


def _y(score: float) -> float:
    return _T + (_H - _T - _B) * (1 - max(0.0, min(100.0, score)) / 100)


def _axes(n: int, x_label: str) -> list[str]:
    parts = []
    for tick in range(0, 101, 25):
        y = _y(tick)
        parts.append(f"<line x1='{_L}' y1='{y:.1f}' x2='{_W - _R}' y2='{y:.1f}' class='grid'/>")
        parts.append(f"<text x='{_L - 6}' y='{y + 4:.1f}' text-anchor='end' class='tick'>{tick}</text>")
    step = max(1, n // 10)
    for i in range(0, n, step):
        parts.append(
            f"<text x='{_x(i, n):.1f}' y='{_H - _B + 16}' text-anchor='middle' class='tick'>{i + 1}</text>"
        )
    parts.append(
        f"<text x='{(_L + _W - _R) / 2:.0f}' y='{_H - 6}' text-anchor='middle' "
        f"class='label'>{_e(x_label)}</text>"
    )
    parts.append(
        f"<text x='12' y='{(_T + _H - _B) / 2:.0f}' text-anchor='middle' class='label' "
        f"transform='rotate(-90 12 {(_T + _H - _B) / 2:.0f})'>score</text>"
    )
    return parts


def _trial_chart(trials: Sequence[_Trial], baseline: float | None) -> str:
    if not trials:
        return "<p class='empty'>No trial was scored.</p>"
    n = len(trials)
    parts = _axes(n, "trial")
    if baseline is not None:
        y = _y(baseline)
        parts.append(
            f"<line x1='{_L}' y1='{y:.1f}' x2='{_W - _R}' y2='{y:.1f}' class='baseline'><title>baseline "
            f"{baseline:.1f}</title></line>"
        )
    best, points = -1.0, []
    for i, t in enumerate(trials):
        best = max(best, t.score)
        points.append(f"{_x(i, n):.1f},{_y(best):.1f}")
    parts.append(
        f"<polyline points='{' '.join(points)}' class='best' fill='none' stroke='{_ORANGE}' "
        "stroke-width='2.5'/>"
    )
    for i, t in enumerate(trials):
        parts.append(
            f"<circle cx='{_x(i, n):.1f}' cy='{_y(t.score):.1f}' r='4' fill='{_BLUE}' class='trial'>"
            f"<title>{_e(t.label)}: {t.score:.1f}</title></circle>"
        )
    legend = _legend(
        [(_BLUE, "score of the trial"), (_ORANGE, "best so far")]
        + ([(_GREY, "baseline")] if baseline is not None else [])
    )
    return _svg(parts, "score per trial and best-so-far curve") + legend


def _candidate_chart(result: OptimizationResult) -> str:
    cands = [c for c in result.candidates if c.score is not None]
    if not cands:
        return "<p class='empty'>The optimizer scored no candidates (it chose without validating).</p>"
    chosen = max(range(len(cands)), key=lambda i: (cands[i].score or 0.0, -i))
    row, label_w = 24, 220
    height = row * len(cands) + 24
    parts = []
    for i, c in enumerate(cands):
        y = 8 + i * row
        width = (_W - label_w - 60) * max(0.0, min(100.0, c.score or 0.0)) / 100
        color = _GREEN if i == chosen else _BLUE
        name = c.label or f"candidate {i + 1}"
        parts.append(
            f"<text x='{label_w - 8}' y='{y + 15}' text-anchor='end' "
            f"class='tick'>{_e(_clip(name, 34))}</text>"
        )
        parts.append(
            f"<rect x='{label_w}' y='{y + 3}' width='{width:.1f}' height='{row - 8}' fill='{color}' "
            f"class='bar'><title>{_e(name)}: {c.score:.1f}</title></rect>"
        )
        parts.append(f"<text x='{label_w + width + 6:.1f}' y='{y + 15}' class='tick'>{c.score:.1f}</text>")
    return _svg(parts, "score of every candidate", height) + _legend(
        [(_GREEN, "chosen"), (_BLUE, "other candidates")]
    )


def _cost_block(result: OptimizationResult) -> str:
    u = result.usage
    total = max(1, u.requests + u.cache_hits)  # failed requests make requests outnumber calls
    req_w = (_W - 20) * u.requests / total
    parts = [
        f"<rect x='10' y='10' width='{req_w:.1f}' height='22' fill='{_ORANGE}'><title>{u.requests} "
        "provider requests</title></rect>",
        f"<rect x='{10 + req_w:.1f}' y='10' width='{(_W - 20) - req_w:.1f}' height='22' "
        f"fill='{_GREEN}'><title>{u.cache_hits} cache hits</title></rect>",
    ]
    rows = [
        ("LM calls", u.calls),
        ("provider requests", u.requests),
        ("failed requests", u.failed_requests),
        ("cache hits", u.cache_hits),
        ("prompt tokens", u.prompt_tokens),
        ("completion tokens", u.completion_tokens),
        ("cost", f"${u.cost:.4f}"),
    ]
    plan = result.details.plan if isinstance(result.details, MiproDetails) else None
    if plan is not None:  # how the run sized its phases to its budget
        rows.append(("plan", plan.describe()))
    table = (
        "<table class='kv'>"
        + "".join(f"<tr><th>{_e(k)}</th><td>{_e(str(v))}</td></tr>" for k, v in rows)
        + "</table>"
    )
    out = (
        _svg(parts, "provider requests and cache hits", 42)
        + _legend([(_ORANGE, "provider requests"), (_GREEN, "cache hits")])
        + table
    )
    sized = [c for c in result.candidates if c.score is not None and c.prompt_tokens]
    if sized:
        top = max(float(c.prompt_tokens or 0) for c in sized) * 1.1
        n = len(sized)
        dots = _axes(0, "prompt tokens per example")
        for c in sized:
            x = _L + (_W - _L - _R) * float(c.prompt_tokens or 0) / top
            dots.append(
                f"<circle cx='{x:.1f}' cy='{_y(c.score or 0):.1f}' r='4' "
                f"fill='{_BLUE}'><title>{_e(c.label)}: {c.score:.1f} at {c.prompt_tokens:.0f} "
                "tokens</title></circle>"
            )
        out += f"<h3>Score against prompt size ({n} candidates)</h3>" + _svg(
            dots, "score against prompt tokens"
        )
    return out


def _functions_block(result: OptimizationResult) -> str:
    parts = []
    files = {p.name: p for p in result.files}
    for fn, state in result.states.items():
        instruction = fn.signature.instruction if state.instruction is None else state.instruction
        origin = "optimized" if state.instruction is not None else "from the docstring"
        file = files.get(fn.prompt_file.name)
        parts.append(f"<h3>{_e(function_id(fn))}</h3>")
        if file is not None:
            parts.append(f"<p class='file'>prompt file: <code>{_e(_relative(file))}</code></p>")
        parts.append(f"<p>instruction ({origin}):</p><pre>{_e(instruction)}</pre>")
        if state.demos:
            keys = list(dict.fromkeys(k for d in state.demos for k in d))
            head = "".join(f"<th>{_e(k)}</th>" for k in keys)
            rows = "".join(
                "<tr>" + "".join(f"<td>{_e(_clip(_text(d.get(k, '')), 300))}</td>" for k in keys) + "</tr>"
                for d in state.demos
            )
            parts.append(
                f"<p>{len(state.demos)} demo(s):</p><table class='demos'><tr>{head}</tr>{rows}</table>"
            )
        else:
            parts.append("<p>no demos</p>")
    return "".join(parts) or "<p class='empty'>No lm_function.</p>"


def _details_block(result: OptimizationResult) -> str:
    details = result.details
    plain = details.to_dict() if isinstance(details, MiproDetails | ReflectDetails) else dict(details)
    text = json.dumps(redact(plain), indent=2, ensure_ascii=False, default=str, sort_keys=True)
    return f"<details><summary>optimizer details (JSON)</summary><pre>{_e(text)}</pre></details>"


# -- small helpers ---------------------------------------------------------------------------------
def _svg(parts: list[str], label: str, height: int = _H) -> str:
    size = f"viewBox='0 0 {_W} {height}' width='{_W}' height='{height}'"
    return f"<svg {size} role='img' aria-label='{_e(label)}'>{''.join(parts)}</svg>"


def _legend(items: list[tuple[str, str]]) -> str:
    return (
        "<p class='legend'>"
        + "".join(f"<span><i style='background:{c}'></i>{_e(t)}</span>" for c, t in items)
        + "</p>"
    )


def _section(title: str, content: str, anchor: str) -> str:
    return f"<section id='{anchor}'><h2>{_e(title)}</h2>{content}</section>"


def _card(label: str, value: str) -> str:
    return f"<div class='card'><div class='v'>{_e(value)}</div><div class='k'>{_e(label)}</div></div>"


def _fmt(score: float | None) -> str:
    return "-" if score is None else f"{score:.1f}"


def _delta(before: float | None, after: float | None) -> str:
    return "-" if before is None or after is None else f"{after - before:+.1f}"


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)


_CSS = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#111827}
body{margin:2rem auto;max-width:760px;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.25rem}
h2{font-size:1.15rem;border-bottom:1px solid #e5e7eb;padding-bottom:.2rem;margin-top:2rem}
h3{font-size:1rem;margin-bottom:.3rem}
.facts{color:#4b5563}
.cards{display:flex;flex-wrap:wrap;gap:.6rem}
.card{border:1px solid #e5e7eb;border-radius:8px;padding:.5rem .8rem;min-width:7.5rem}
.card .v{font-size:1.25rem;font-weight:600}
.card .k{color:#6b7280;font-size:.8rem}
svg{max-width:100%;height:auto;display:block}
.grid{stroke:#e5e7eb}
.baseline{stroke:#9ca3af;stroke-dasharray:6 4;stroke-width:1.5}
.tick{font-size:11px;fill:#4b5563}
.label{font-size:12px;fill:#374151}
.legend span{margin-right:1rem;font-size:.85rem;color:#374151}
.legend i{display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem}
.legend i{border-radius:2px;vertical-align:-1px}
pre{background:#f9fafb;border:1px solid #e5e7eb;border-radius:6px;padding:.6rem}
pre{white-space:pre-wrap;word-break:break-word}
table{border-collapse:collapse;font-size:.85rem;margin:.4rem 0}
td,th{border:1px solid #e5e7eb;padding:.25rem .5rem;text-align:left;vertical-align:top}
.empty{color:#6b7280;font-style:italic}
code{font-size:.85rem}
"""
