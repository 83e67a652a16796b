"""Render a benchmark run (the JSON that ``run.py`` writes) as a Markdown report."""

from __future__ import annotations

from typing import Any

METHOD_NAMES = {"zero_shot": "zero-shot", "bootstrap": "bootstrap", "mipro": "MIPRO"}


def render(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines = [
        f"# lmprog vs DSPy: {meta['configuration']} run of {meta['started'][:10]}",
        "",
        _config_text(results),
        "",
        "## Results",
        "",
        "Score: test exact match in % (HotPotQA: answer EM, then gold-title recall of the retrieved",
        "passages). LM calls and tokens: requests that reached the model (cache hits excluded),",
        "optimization + test evaluation. Time: wall seconds, optimization + test evaluation.",
        "Errors: test examples with no usable prediction (the model's reply could not be parsed).",
        "A test evaluation with 0 LM calls was served from the cache: the optimizer found no demo and",
        "returned the zero-shot program.",
        "",
        "| task | method (budget) | score lmprog | score DSPy | LM calls lmprog | LM calls DSPy "
        "| tokens lmprog | tokens DSPy | time lmprog | time DSPy | errors lmprog | errors DSPy |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    losses = []
    for task, entry in results["tasks"].items():
        fws = entry["frameworks"]
        methods = entry["config"]["methods"]
        for method in methods:
            cells = {fw: _cells(task, fws.get(fw, {}), method) for fw in ("lmprog", "dspy")}
            budget = entry["config"]["budgets"].get(method)
            label = METHOD_NAMES.get(method, method) + (f" ({budget})" if budget else "")
            task_label = task + (f" ({'; '.join(entry['notes'])})" if entry.get("notes") else "")
            row = [task_label, label]
            for key in ("score", "calls", "tokens", "time", "errors"):
                row += [cells["lmprog"][key], cells["dspy"][key]]
            lines.append("| " + " | ".join(row) + " |")
            ls, ds = cells["lmprog"]["raw_score"], cells["dspy"]["raw_score"]
            if ls is not None and ds is not None and ds > ls:
                losses.append(f"{task} {METHOD_NAMES.get(method, method)}: lmprog {ls:.1f} < DSPy {ds:.1f}")
    for task, why in results.get("skipped", {}).items():
        lines.append(f"| {task} | skipped: {why} |" + " |" * 10)
    lines += ["", *_failures(results)]
    lines += _warm(results)
    lines += _micro(results)
    lines += ["", "## Where lmprog scores lower than DSPy (this run)", ""]
    lines += [f"- {loss}" for loss in losses] or ["- nowhere in this run"]
    lines.append("")
    return "\n".join(lines)


def _config_text(results: dict[str, Any]) -> str:
    meta = results["meta"]
    m = meta["machine"]
    parts = [
        f"Model: `{meta['model']}` (both frameworks, temperature {meta['temperature']}, "
        f"max_tokens {meta['max_tokens']}; llama.cpp threads: {meta['llama_threads']}). "
        f"Seed {meta['seed']}.",
        f"Machine: {m['cores']} cores, Python {m['python']}, load average at start "
        f"{m['load_average_start']}, at end {meta.get('load_average_end')} "
        "(a shared machine: wall times are noisy; compare within a row).",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".",
        f"Total wall time: {meta.get('wall_seconds', 0):.0f} s.",
        "",
        "| task | train/val/test | methods | optimizer settings (both frameworks) |",
        "|---|---|---|---|",
    ]
    for task, entry in results["tasks"].items():
        cfg = entry["config"]
        boot = cfg["bootstrap"]["lmprog"]
        settings = (
            f"bootstrap: {boot['max_bootstrapped_demos']} bootstrapped + {boot['max_labeled_demos']} "
            f"labeled demos, {boot['max_rounds']} round"
        )
        if "mipro" in cfg["methods"]:
            mp = cfg["mipro"]["lmprog"]
            settings += (
                f"; MIPRO: {mp['num_instructions']} instruction and demo-set candidates, "
                f"{mp['num_trials']} trials on minibatches of {mp['minibatch_size']}, full "
                f"validation every {mp['full_eval_every']} trials"
            )
        sizes = "/".join(str(s) for s in cfg["sizes"])
        lines_methods = ", ".join(METHOD_NAMES.get(x, x) for x in cfg["methods"])
        parts.append(f"| {task} | {sizes} | {lines_methods} | {settings} |")
    return "\n".join(parts)


def _cells(task: str, fw: dict[str, Any], method: str) -> dict[str, Any]:
    m = fw.get("methods", {}).get(method)
    empty = {"score": "n/a", "calls": "", "tokens": "", "time": "", "errors": "", "raw_score": None}
    if not m:
        return {**empty, "score": fw.get("status", "n/a")}
    if "error" in m and "test" not in m:
        return {**empty, "score": "failed"}
    test = m.get("test", {})
    opt = m.get("optimize", {})
    t_lm, o_lm = test.get("lm", {}), opt.get("lm", {})
    score = f"{test.get('score', 0):.1f}"
    if task == "hotpotqa":
        score += f" / {test.get('title_recall', 0):.0f}"

    def pair(a: Any, b: Any, fmt: str = "{:.0f}") -> str:
        return f"{fmt.format(a)} + {fmt.format(b)}" if opt else fmt.format(b)

    tokens_o = (o_lm.get("prompt_tokens", 0) + o_lm.get("completion_tokens", 0)) / 1000
    tokens_t = (t_lm.get("prompt_tokens", 0) + t_lm.get("completion_tokens", 0)) / 1000
    calls = pair(o_lm.get("requests", 0), t_lm.get("requests", 0))
    if o_lm.get("refused"):
        calls += f" ({o_lm['refused']} refused)"
    return {
        "score": score,
        "calls": calls,
        "tokens": pair(tokens_o, tokens_t, "{:.1f}k"),
        "time": pair(opt.get("seconds", 0), test.get("seconds", 0)),
        "errors": str(test.get("errors", "")),
        "raw_score": test.get("score"),
    }


def _failures(results: dict[str, Any]) -> list[str]:
    out = []
    for task, entry in results["tasks"].items():
        for fw, res in entry["frameworks"].items():
            if res.get("status") != "ok":
                out.append(f"- {task}/{fw}: worker {res.get('status')} (log: `{res.get('log')}`)")
            for method, m in res.get("methods", {}).items():
                if "error" in m:
                    out.append(f"- {task}/{fw}/{method}: {m['error'][:300]}")
                stopped = m.get("optimize", {}).get("stopped_by")
                if stopped:
                    out.append(f"- {task}/{fw}/{method}: the optimizer stopped at the budget ({stopped})")
    return (["Run notes:", "", *out, ""]) if out else []


def _warm(results: dict[str, Any]) -> list[str]:
    warm = results.get("warm_rerun")
    if not warm:
        return []
    lines = [
        "## Warm-cache re-run of an optimization",
        "",
        f"Bootstrap on {warm['task']} ({warm['train']} training examples, no budget cap), run twice",
        "in two new processes sharing the cache directories (second time / first time; lower is",
        "better).",
        "",
        "| framework | first run s | LM calls | second run s | LM calls | second / first |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for fw in ("lmprog", "dspy"):
        w = warm.get(fw)
        if not w:
            continue
        lines.append(
            f"| {fw} | {w['first_seconds']} | {w['first_requests']} | {w['second_seconds']} | "
            f"{w['second_requests']} | {w['ratio']} |"
        )
    return [*lines, ""]


def _micro(results: dict[str, Any]) -> list[str]:
    micro = results.get("micro")
    if not micro:
        return []
    imp, call, ev = micro["import"], micro["per_call"], micro["evaluation"]
    lines = [
        "## Micro-benchmarks (one process, same run)",
        "",
        "| measure | lmprog | DSPy | DSPy / lmprog |",
        "|---|--:|--:|--:|",
        f"| import time, s (median of {micro['config']['import_runs']} fresh interpreters, "
        f"minus bare startup {imp['python_startup_s']:.3f} s) | {imp['lmprog_net_s']:.3f} | "
        f"{imp['dspy_net_s']:.3f} | {imp['dspy_over_lmprog']} |",
        f"| framework overhead per call, ms (scripted LM: ScriptedLM / DummyLM; median of "
        f"{micro['config']['rounds']} x {micro['config']['calls']} calls) | {call['lmprog_ms']:.3f} | "
        f"{call['dspy_ms']:.3f} | {call['dspy_over_lmprog']} |",
    ]
    for key in sorted(k for k in ev if k.startswith("threads_")):
        threads = key.split("_")[1]
        lm, ds = ev[key]["lmprog"], ev[key]["dspy"]
        lines.append(
            f"| evaluation throughput / raw sequential calls ({ev['examples']} examples, "
            f"{ev['simulated_latency_s'] * 1000:.0f} ms simulated latency, {threads} threads; "
            f"higher is better) | {lm['ratio']:.2f} | {ds['ratio']:.2f} | "
            f"{ds['ratio'] / lm['ratio']:.2f} |"
        )
    return [*lines, ""]
