"""A small SVG writer for the benchmark's accuracy-vs-LM-calls picture (no plotting library).

:func:`render` draws one panel per task in a grid: x is LM calls on a log scale (``log10(1 + x)``,
so zero-call methods sit at the left edge), y is accuracy in % (0-100), each point a method of one
series (framework) with its 95 % interval as a vertical bar and a short label, and the
majority-class baseline as a dashed line. Pure: text in, text out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

PANEL_W, PANEL_H = 360, 260
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 44, 12, 28, 36
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")


@dataclass(frozen=True)
class Point:
    series: str
    label: str
    x: float  # LM calls
    y: float  # accuracy %
    low: float
    high: float


@dataclass
class Panel:
    title: str
    points: list[Point] = field(default_factory=list)
    baseline: float | None = None


def _fx(calls: float, max_calls: float) -> float:
    span = math.log10(1.0 + max(max_calls, 1.0))
    return MARGIN_L + (PANEL_W - MARGIN_L - MARGIN_R) * math.log10(1.0 + max(calls, 0.0)) / span


def _fy(acc: float) -> float:
    acc = min(max(acc, 0.0), 100.0)
    return MARGIN_T + (PANEL_H - MARGIN_T - MARGIN_B) * (1.0 - acc / 100.0)


def _panel(panel: Panel, colors: dict[str, str]) -> list[str]:
    max_x = 2.0 * max([p.x for p in panel.points] + [10.0])  # room on the right for labels
    out = [
        f'<text x="{PANEL_W / 2:.0f}" y="16" text-anchor="middle" font-weight="bold">'
        f"{escape(panel.title)}</text>",
        f'<rect x="{MARGIN_L}" y="{MARGIN_T}" width="{PANEL_W - MARGIN_L - MARGIN_R}" '
        f'height="{PANEL_H - MARGIN_T - MARGIN_B}" fill="none" stroke="#999"/>',
    ]
    for acc in (0, 25, 50, 75, 100):
        y = _fy(acc)
        out.append(f'<line x1="{MARGIN_L - 3}" y1="{y:.1f}" x2="{MARGIN_L}" y2="{y:.1f}" stroke="#999"/>')
        out.append(f'<text x="{MARGIN_L - 5}" y="{y + 4:.1f}" text-anchor="end" font-size="10">{acc}</text>')
    tick = 1
    while tick <= max_x:
        x = _fx(tick, max_x)
        out.append(
            f'<line x1="{x:.1f}" y1="{PANEL_H - MARGIN_B}" x2="{x:.1f}" '
            f'y2="{PANEL_H - MARGIN_B + 3}" stroke="#999"/>'
        )
        out.append(
            f'<text x="{x:.1f}" y="{PANEL_H - MARGIN_B + 14}" text-anchor="middle" '
            f'font-size="10">{tick}</text>'
        )
        tick *= 10
    out.append(
        f'<text x="{(MARGIN_L + PANEL_W - MARGIN_R) / 2:.0f}" y="{PANEL_H - 6}" text-anchor="middle" '
        'font-size="10">LM calls (optimization + test, log scale)</text>'
    )
    if panel.baseline is not None:
        y = _fy(panel.baseline)
        out.append(
            f'<line x1="{MARGIN_L}" y1="{y:.1f}" x2="{PANEL_W - MARGIN_R}" y2="{y:.1f}" stroke="#666" '
            'stroke-dasharray="4 3"><title>majority class</title></line>'
        )
    placed: list[tuple[float, float]] = []
    for p in sorted(panel.points, key=lambda q: (-q.y, q.x)):
        x, color = _fx(p.x, max_x), colors[p.series]
        ty = _fy(p.y) - 4
        while any(abs(ty - py) < 10 and abs(x - px) < 60 for px, py in placed):
            ty += 10  # labels of nearby points are stacked instead of drawn over each other
        placed.append((x, ty))
        tip = escape(f"{p.series} {p.label}: {p.y:.1f} [{p.low:.1f}, {p.high:.1f}], {p.x:.0f} calls")
        out.append(
            f'<line x1="{x:.1f}" y1="{_fy(p.low):.1f}" x2="{x:.1f}" y2="{_fy(p.high):.1f}" stroke="{color}"/>'
        )
        out.append(
            f'<circle cx="{x:.1f}" cy="{_fy(p.y):.1f}" r="3.5" fill="{color}"><title>{tip}</title></circle>'
        )
        out.append(
            f'<text x="{x + 5:.1f}" y="{ty:.1f}" font-size="9" fill="{color}">{escape(p.label)}</text>'
        )
    return out


def render(panels: list[Panel], columns: int = 2, title: str = "") -> str:
    """The SVG document: ``panels`` in a grid of ``columns``, a legend of the series on top."""
    series = list(dict.fromkeys(p.series for panel in panels for p in panel.points))
    colors = {name: COLORS[i % len(COLORS)] for i, name in enumerate(series)}
    rows = max(1, math.ceil(len(panels) / columns))
    head = 40
    width, height = columns * PANEL_W, head + rows * PANEL_H
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="8" y="18" font-weight="bold">{escape(title)}</text>',
    ]
    for i, name in enumerate(series):
        x = 8 + i * 120
        out.append(f'<circle cx="{x + 4}" cy="31" r="4" fill="{colors[name]}"/>')
        out.append(f'<text x="{x + 12}" y="35">{escape(name)}</text>')
    out.append('<text x="260" y="35" font-size="10">bars: 95 % interval; dashed: majority class</text>')
    for i, panel in enumerate(panels):
        dx, dy = (i % columns) * PANEL_W, head + (i // columns) * PANEL_H
        out.append(f'<g transform="translate({dx},{dy})">')
        out.extend(_panel(panel, colors))
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"
