"""Benchmark v2's report: stored cells -> a summary (JSON), a Markdown table and an SVG picture.

:func:`summarize` groups cell payloads (``cells.CellStore`` files) by task, framework and method
and computes, per group, the mean accuracy with its 95 % bootstrap interval over seeds × test
examples (``stats``), LM calls, tokens, wall time and $ at the stated price, prediction counts and
whether a seed's program collapsed to one label. Per task it pairs lmprog's best method with
DSPy's best (each side's highest mean) and marks the difference real when its paired interval
excludes 0. :func:`markdown` and :func:`svg` render the summary. Pure: no model, no framework.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import stats
import svgplot

FRAMEWORKS = ("lmprog", "dspy")
# the hosted model whose price the report states (USD per token), so a reader sees what the
# same calls would cost there; the embedded model itself costs nothing but time
PRICE_MODEL = "openai/gpt-4o-mini"
PRICE = {"prompt": 0.15e-6, "completion": 0.60e-6}


def dollars(prompt_tokens: float, completion_tokens: float, price: Mapping[str, float] = PRICE) -> float:
    return prompt_tokens * price["prompt"] + completion_tokens * price["completion"]


def _calls(result: Mapping[str, Any], phase: str, key: str = "requests") -> float:
    """Requests or tokens of a phase: the framework's own count where the cell has one (lmprog's
    usage, which also sees the completion layout sent to llama.cpp past litellm), else the
    litellm meter's."""
    part = result.get(phase) or {}
    counts = part.get("lm_own") or part.get("lm") or {}
    return float(counts.get(key, 0) or 0)


def _group(rows: list[Mapping[str, Any]], gold: list[str]) -> dict[str, Any]:
    rows = sorted(rows, key=lambda r: r["seed"])
    matrix = [r["result"]["test"]["scores"] for r in rows]
    interval = stats.bootstrap_mean(matrix)
    per_seed = []
    for r in rows:
        res, test = r["result"], r["result"]["test"]
        per_seed.append(
            {
                "seed": r["seed"],
                "score": test["score"],
                "optimize_calls": _calls(res, "optimize"),
                "test_calls": _calls(res, "test"),
                "prompt_tokens": _calls(res, "optimize", "prompt_tokens")
                + _calls(res, "test", "prompt_tokens"),
                "completion_tokens": _calls(res, "optimize", "completion_tokens")
                + _calls(res, "test", "completion_tokens"),
                "seconds": float(res.get("cell_seconds", 0.0)),
                "errors": test.get("errors", 0),
                **({"error_kinds": test["error_kinds"]} if test.get("error_kinds") else {}),
                "prediction_counts": stats.prediction_counts(test["predictions"]),
                "collapsed": stats.collapsed(test["predictions"], gold),
                "optimizer_error": (res.get("optimize") or {}).get("error"),
                "lmprog_commit": res.get("lmprog_commit"),
                # lmprog: the layout and label decoding its optimizer chose, per function
                "layouts": (res.get("optimize") or {}).get("layouts"),
            }
        )
    n = len(per_seed)

    def mean(key: str) -> float:
        return sum(float(s[key]) for s in per_seed) / n

    prompt, completion = mean("prompt_tokens"), mean("completion_tokens")
    return {
        "interval": interval.to_dict(),
        "seeds": [s["seed"] for s in per_seed],
        "matrix": matrix,
        "optimize_calls": mean("optimize_calls"),
        "test_calls": mean("test_calls"),
        "calls": mean("optimize_calls") + mean("test_calls"),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "seconds": mean("seconds"),
        "dollars": dollars(prompt, completion),
        "collapsed_seeds": sum(s["collapsed"] for s in per_seed),
        "failed_seeds": sum(bool(s["optimizer_error"]) for s in per_seed),
        "per_seed": per_seed,
    }


def _paired(a: list[list[float]], b: list[list[float]]) -> dict[str, Any] | None:
    """The paired difference of two score matrices, or None when they scored other test sets."""
    if len(a[0]) != len(b[0]):
        return None
    diff = stats.paired_difference(*_align(a, b))
    return {**diff.to_dict(), "real": diff.excludes_zero()}


def _align(a: list[list[float]], b: list[list[float]]) -> tuple[list[list[float]], list[list[float]]]:
    """Pair seeds; a one-seed side (zero-shot, the same program for every seed) is repeated."""
    if len(a) == 1 and len(b) > 1:
        a = a * len(b)
    if len(b) == 1 and len(a) > 1:
        b = b * len(a)
    k = min(len(a), len(b))
    return a[:k], b[:k]


def summarize(payloads: Iterable[Mapping[str, Any]], task_order: Iterable[str] = ()) -> dict[str, Any]:
    """The report's numbers from cell payloads (``{"task", "framework", "method", "seed", "result"}``)."""
    by_task: dict[str, dict[tuple[str, str], list[Mapping[str, Any]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for p in payloads:
        by_task[p["task"]][(p["framework"], p["method"])].append(p)
    order = [t for t in task_order if t in by_task] + sorted(t for t in by_task if t not in set(task_order))
    out: dict[str, Any] = {"tasks": {}, "price": {"model": PRICE_MODEL, **PRICE}}
    for task in order:
        groups = by_task[task]
        gold = next(iter(groups.values()))[0]["result"]["test"]["gold"]
        label, majority = stats.majority_baseline(gold)
        methods: dict[str, dict[str, Any]] = defaultdict(dict)
        for (framework, method), rows in groups.items():
            methods[method][framework] = _group(list(rows), gold)
        best: dict[str, str] = {}
        for fw in FRAMEWORKS:
            scored = [(m[fw]["interval"]["mean"], name) for name, m in methods.items() if fw in m]
            if scored:
                best[fw] = max(scored)[1]
        entry: dict[str, Any] = {
            "n_test": len(gold),
            "majority": {"label": label, "accuracy": round(majority, 2)},
            "methods": dict(methods),
            "best": best,
        }
        if len(best) == 2:
            paired = _paired(
                methods[best["lmprog"]]["lmprog"]["matrix"], methods[best["dspy"]]["dspy"]["matrix"]
            )
            if paired is not None:
                entry["best_difference"] = paired
        for m in methods.values():
            if len(m) == 2:
                paired = _paired(m["lmprog"]["matrix"], m["dspy"]["matrix"])
                if paired is not None:
                    m["difference"] = paired
        out["tasks"][task] = entry
    out["costs"] = _costs(out["tasks"])
    out["lmprog_commits"] = _commits(out["tasks"])
    return out


def _commits(tasks: Mapping[str, Any]) -> dict[str, int]:
    """How many lmprog cells each lmprog commit computed (cells made by other code than the
    newest are named in the report, not hidden)."""
    counts: dict[str, int] = defaultdict(int)
    for entry in tasks.values():
        for sides in entry["methods"].values():
            for seed in (sides.get("lmprog") or {}).get("per_seed", []):
                if seed.get("lmprog_commit"):
                    counts[str(seed["lmprog_commit"])[:10]] += 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def _costs(tasks: Mapping[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """Totals over tasks (means over seeds), per framework and method."""
    totals: dict[str, dict[str, dict[str, float]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(float))
    )
    for entry in tasks.values():
        for method, sides in entry["methods"].items():
            for fw in FRAMEWORKS:
                g = sides.get(fw)
                if g is None:
                    continue
                for key in (
                    "optimize_calls",
                    "test_calls",
                    "prompt_tokens",
                    "completion_tokens",
                    "seconds",
                    "dollars",
                ):
                    totals[fw][method][key] += g[key]
    return {fw: {m: dict(v) for m, v in ms.items()} for fw, ms in totals.items()}


def _iv(g: Mapping[str, Any] | None) -> str:
    if g is None:
        return "-"
    iv = g["interval"]
    flag = f" ⚠ collapsed {g['collapsed_seeds']}/{len(g['seeds'])}" if g["collapsed_seeds"] else ""
    if g.get("failed_seeds"):
        flag += f" ✗ optimizer failed {g['failed_seeds']}/{len(g['seeds'])}"
    return f"{iv['mean']:.1f} [{iv['low']:.1f}, {iv['high']:.1f}]{flag}"


def _diff(d: Mapping[str, Any] | None) -> str:
    if d is None:
        return "-"
    mark = " **real**" if d["real"] else ""
    return f"{d['mean']:+.1f} [{d['low']:+.1f}, {d['high']:+.1f}]{mark}"


def markdown(
    summary: Mapping[str, Any], meta: Mapping[str, Any], labels: Mapping[str, tuple[str, str]]
) -> str:
    lines = [f"# lmprog vs DSPy, benchmark v2: {meta.get('configuration', '?')} run", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items() if not isinstance(v, (dict, list))]
    lines += [
        "",
        "Accuracy: mean over seeds of test accuracy (%), with its 95 % bootstrap interval (2000",
        "replicates drawing seeds and test examples with replacement; every seed uses the same test",
        "set). Difference: lmprog − DSPy in points, paired bootstrap (same draws for both); **real**",
        "when its interval excludes 0. Calls: mean LM requests per seed (optimization + test).",
        "⚠ collapsed k/n: in k of n seeds the program predicted one label for every test input.",
        "✗ optimizer failed k/n: in k of n seeds the optimizer raised; the unoptimized program was",
        "evaluated (what its user is left with); the errors are in summary.json.",
        "",
    ]
    for task, entry in summary["tasks"].items():
        maj = entry["majority"]
        lines += [
            f"## {task} ({entry['n_test']} test examples; "
            f"majority class {maj['label']!r}: {maj['accuracy']:.1f})",
            "",
            "| method (lmprog / DSPy) | lmprog | DSPy | difference | calls lmprog | calls DSPy |",
            "|---|---|---|---|--:|--:|",
        ]
        for method, sides in entry["methods"].items():
            name = " / ".join(labels.get(method, (method, method)))
            lp, ds = sides.get("lmprog"), sides.get("dspy")
            lines.append(
                f"| {name} | {_iv(lp)} | {_iv(ds)} | {_diff(sides.get('difference'))} | "
                f"{lp['calls'] if lp else 0:.0f} | {ds['calls'] if ds else 0:.0f} |"
            )
        best = entry.get("best", {})
        if "best_difference" in entry:
            lines += [
                "",
                f"Best lmprog ({best['lmprog']}) − best DSPy ({best['dspy']}): "
                f"{_diff(entry['best_difference'])}.",
            ]
        lines.append("")
    commits = summary.get("lmprog_commits") or {}
    if len(commits) > 1:
        lines += [
            "lmprog's cells were computed by more than one commit of lmprog (cells: "
            + ", ".join(f"`{c}` {n}" for c, n in commits.items())
            + "); a cell is computed again only when its settings change, so the older ones may "
            "not show the newest optimizers' behaviour (see findings.md).",
            "",
        ]
    lines += _cost_lines(summary, labels)
    lines += _prediction_lines(summary)
    return "\n".join(lines) + "\n"


def _cost_lines(summary: Mapping[str, Any], labels: Mapping[str, tuple[str, str]]) -> list[str]:
    price = summary["price"]
    lines = [
        "## Costs (summed over tasks, mean over seeds)",
        "",
        f"$ at {price['model']} prices: ${price['prompt'] * 1e6:.2f} per million prompt tokens, "
        f"${price['completion'] * 1e6:.2f} per million completion tokens.",
        "",
        "| framework | method | optimize calls | test calls | prompt tokens | completion tokens "
        "| wall s | $ |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for fw, methods in summary["costs"].items():
        for method, c in methods.items():
            name = labels.get(method, (method, method))[0 if fw == "lmprog" else 1]
            lines.append(
                f"| {fw} | {name} | {c['optimize_calls']:.0f} | {c['test_calls']:.0f} | "
                f"{c['prompt_tokens']:.0f} | "
                f"{c['completion_tokens']:.0f} | {c['seconds']:.0f} | {c['dollars']:.4f} |"
            )
    return [*lines, ""]


def _prediction_lines(summary: Mapping[str, Any]) -> list[str]:
    lines = ["## Prediction counts (per seed: the three most frequent predictions)", ""]
    for task, entry in summary["tasks"].items():
        for method, sides in entry["methods"].items():
            for fw, g in sides.items():
                if fw not in FRAMEWORKS:
                    continue
                parts = []
                for s in g["per_seed"]:
                    top = ", ".join(f"{k}: {v}" for k, v in list(s["prediction_counts"].items())[:3])
                    flags = (" COLLAPSED" if s["collapsed"] else "") + (
                        " OPTIMIZER FAILED" if s["optimizer_error"] else ""
                    )
                    chosen = s.get("layouts") or {}
                    how = ", ".join("/".join(v) for v in chosen.values() if v != ["chat", "sample"])
                    parts.append(f"seed {s['seed']}{flags} ({top})" + (f" [{how}]" if how else ""))
                lines.append(f"- {task} {fw} {method}: " + "; ".join(parts))
    return [*lines, ""]


def svg(summary: Mapping[str, Any], labels: Mapping[str, tuple[str, str]], title: str = "") -> str:
    panels = []
    for task, entry in summary["tasks"].items():
        panel = svgplot.Panel(task, baseline=entry["majority"]["accuracy"])
        for method, sides in entry["methods"].items():
            for fw in FRAMEWORKS:
                g = sides.get(fw)
                if g is None:
                    continue
                iv = g["interval"]
                name = labels.get(method, (method, method))[0 if fw == "lmprog" else 1]
                panel.points.append(svgplot.Point(fw, name, g["calls"], iv["mean"], iv["low"], iv["high"]))
        panels.append(panel)
    return svgplot.render(panels, title=title)
