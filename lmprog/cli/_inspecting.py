"""``lmprog show``, ``lmprog check``, ``lmprog export`` and ``lmprog trace show``: look at prompts,
prompt files and traces without calling an LM."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from lmprog import promptfile
from lmprog.cli._loading import (
    CLIError,
    get_lm_function,
    lm_functions_in,
    load_module,
    load_target,
    parse_inputs,
    python_files,
)
from lmprog.format import render_messages
from lmprog.function import LMFunction
from lmprog.lm import Completion, InterceptedRequest, intercept_requests
from lmprog.trace import Span, Trace

_ROLE_STYLE = {"system": "magenta", "user": "cyan", "assistant": "green", "prompt": "yellow"}


def run_show(target: str, inputs: Sequence[str], as_json: bool, out: Console) -> None:
    module, name = load_target(target)
    fn = get_lm_function(module, name, target)
    values = parse_inputs(inputs, fn)
    fn.signature.check_inputs(values)  # the values given; placeholders are not checked
    placeholders = [f.name for f in fn.signature.inputs if f.name not in values and not f.has_default]
    values.update({name: f"<{name}>" for name in placeholders})
    with _no_lm_calls("lmprog show"):
        state = fn.state
        messages = render_messages(
            fn.signature,
            values,
            instruction=state.instruction,
            demos=state.demos_for(values),
            layout=state.layout,
        )
    if as_json:
        out.print_json(json.dumps(messages, ensure_ascii=False))
        return
    status = promptfile.status(fn)
    out.print(f"[bold]{escape(promptfile.function_id(fn))}[/]", soft_wrap=True)
    out.print(f"prompt file: {escape(str(_relative(fn.prompt_file)))} ({escape(status)})", soft_wrap=True)
    origin = "optimized" if state.instruction is not None else "from the docstring"
    out.print(f"instruction: {origin}; demos: {len(state.demos)}; {len(messages)} message(s)")
    out.print(f"layout: {state.layout}; decode: {state.decode}", soft_wrap=True)
    if state.calibration:
        prior = ", ".join(f"{escape(k)} {v:.3f}" for k, v in state.calibration.items())
        out.print(f"calibration (content-free prior): {prior}", soft_wrap=True)
    if state.vote is not None:
        out.print(f"vote: {state.vote:g} (the weight of the retrieved demos' labels)", soft_wrap=True)
    if state.pool is not None:
        by = f"embedding model {state.pool.embedder}" if state.pool.embedder else "BM25"
        out.print(
            f"retrieved demos (knn): the {state.pool.k} nearest of a pool of {len(state.pool.demos)}, "
            f"by {by} over {', '.join(state.pool.fields)}; shown for these inputs",
            soft_wrap=True,
        )
    if placeholders:
        out.print(
            f"[dim]no value given for {', '.join(placeholders)}: shown as <name> (use --input NAME=VALUE)[/]"
        )
    for message in messages:
        role = message["role"]
        out.print(
            Panel(
                Text(message["content"]),
                title=role,
                title_align="left",
                border_style=_ROLE_STYLE.get(role, "white"),
            )
        )


@dataclass
class CheckRow:
    function: str
    file: str
    status: str
    detail: str = ""


def run_check(paths: Sequence[str], require_all: bool, out: Console) -> int:
    """List every lm_function's prompt-file status; 1 when any fails (stale, corrupt, import error,
    and missing with ``require_all``), else 0."""
    files, missing_paths = python_files(paths or ["."])
    if missing_paths:
        raise CLIError(f"no such file or folder: {', '.join(missing_paths)}")
    rows: list[CheckRow] = []
    seen: set[int] = set()
    with _no_lm_calls("lmprog check"):
        for file in files:
            try:
                module = load_module(file)
            except CLIError as e:
                rows.append(CheckRow("-", str(_relative(file)), "error", str(e)))
                continue
            for fn in lm_functions_in(module):
                if id(fn) in seen:
                    continue
                seen.add(id(fn))
                rows.append(_check_row(fn))
    failing = {"stale", "corrupt", "error"} | ({"missing"} if require_all else set())
    failed = [r for r in rows if r.status in failing]
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("status", "lm_function", "prompt file", "detail"):
        table.add_column(column, overflow="fold")
    for r in rows:
        style = "red" if r in failed else ("yellow" if r.status == "missing" else "green")
        table.add_row(f"[{style}]{r.status}[/]", escape(r.function), escape(r.file), escape(r.detail))
    if rows:
        out.print(table)
    counts = {s: sum(r.status == s for r in rows) for s in ("ok", "missing", "stale", "corrupt", "error")}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no lm_functions found"
    out.print(f"{len(files)} file(s) checked: {summary}")
    if failed:
        out.print(
            f"[red]lmprog check failed:[/] {len(failed)} problem(s); re-run lmprog optimize for stale "
            "functions, fix or delete corrupt files"
        )
        return 1
    return 0


def _check_row(fn: LMFunction[..., Any]) -> CheckRow:
    path = fn.prompt_file
    status = promptfile.status(fn)
    detail = ""
    if status.startswith("corrupt"):
        status, detail = "corrupt", status.partition(": ")[2].replace(str(path), path.name)
    elif status == "stale":
        detail = "the function changed since this file was written"
    elif status == "missing":
        detail = "not optimized yet (uses its docstring)"
    return CheckRow(promptfile.function_id(fn), str(_relative(path)), status, detail)


def run_export(target: str, output: Path | None, out: Console) -> Path:
    module, name = load_target(target)
    fn = get_lm_function(module, name, target)
    path = promptfile.export_dotprompt(fn, output)
    out.print(f"wrote {_relative(path)}", soft_wrap=True)
    return path


def run_trace_show(file: Path, show_io: bool, out: Console) -> None:
    if not file.is_file():
        raise CLIError(f"{file}: no such file")
    try:
        tr = Trace.from_jsonl(file)
    except (ValueError, TypeError, KeyError) as e:
        raise CLIError(f"{file}: not a trace written by lmprog (one JSON span per line): {e}") from e
    roots = tr.roots
    if not roots:
        out.print(f"{file}: no spans")
        return

    def label(s: Span) -> Text:
        text = Text()
        text.append(s.name, style="bold magenta" if s.kind == "lm" else "bold")
        if s.duration is not None:
            text.append(f"  {1000 * s.duration:.0f} ms", style="cyan")
        if s.kind == "lm":
            text.append(f"  {s.prompt_tokens}+{s.completion_tokens} tokens", style="dim")
            if s.cost:
                text.append(f"  ${s.cost:.4f}", style="dim")
            if s.model:
                text.append(f"  {s.model}", style="dim")
            if s.cache_hit:
                text.append("  cached", style="green")
            if s.parse_retries:
                text.append(
                    f"  {s.parse_retries} retr{'y' if s.parse_retries == 1 else 'ies'}", style="yellow"
                )
        if s.error:
            text.append(f"  ERROR {s.error}", style="bold red")
        if s.score is not None:
            text.append(f"  score {100 * s.score:.0f}", style="bold green" if s.score >= 1 else "bold yellow")
        if s.feedback:
            text.append(f"\n  feedback: {_short(s.feedback)}", style="yellow")
        if show_io:
            text.append(f"\n  in: {_short(s.inputs)}\n  out: {_short(s.output)}", style="dim")
        return text

    def add(node: Tree, s: Span) -> None:
        branch = node.add(label(s))
        for child in sorted(s.children, key=lambda c: c.start):
            add(branch, child)

    total_tokens = sum(s.prompt_tokens + s.completion_tokens for s in tr.spans)
    errors = sum(1 for s in tr.spans if s.error)
    lm_calls = len(tr.lm_spans())
    tree = Tree(
        f"[bold]{escape(str(file))}[/]: {len(tr.spans)} spans, {lm_calls} lm call(s), {total_tokens} "
        f"tokens, {errors} error(s)"
    )
    for root in roots:
        add(tree, root)
    out.print(tree)


def _short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=repr)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _no_lm_calls(command: str) -> Any:
    """Refuse every LM request inside the block (importing user modules must not call a model)."""

    def refuse(request: InterceptedRequest, send: Callable[[], Completion]) -> Completion:
        raise CLIError(
            f"{command} never calls an LM, but the code made a request to {request.lm.model}; "
            "move calls at import time under `if __name__ == '__main__':`"
        )

    return intercept_requests(refuse)


def _relative(path: Path) -> Path:
    try:
        return Path(path).resolve().relative_to(Path.cwd())
    except ValueError:
        return Path(path)
