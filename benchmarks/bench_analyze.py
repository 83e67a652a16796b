"""Benchmark ``lmprog.analyze`` on a generated ~5,000-line project.

Run: ``python benchmarks/bench_analyze.py [--modules 25] [--runs 5]``

The project has layered modules of helpers (each calling helpers of the next layer, methods
through ``self`` and module constants), pydantic models, Literal aliases and lm_functions at the
bottom. ``analyze(entry)`` is timed cold (parse cache cleared) and warm, against a baseline
measured in the same run: ``libcst.parse_module`` on every file of the project.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import libcst

import lmprog
from lmprog.source import analyze, clear_cache

HELPERS_PER_MODULE = 12


def _module(index: int, count: int) -> str:
    last = index == count - 1
    lines = [
        f'"""Generated module {index}."""',
        "",
        "from __future__ import annotations",
        "",
        "import json",
        "from typing import Literal",
        "",
        "from pydantic import BaseModel",
        "",
        "from lmprog import lm_function",
        "",
    ]
    if not last:
        lines += [f"from . import mod_{index + 1} as nxt", ""]
    lines += [
        f'Label{index} = Literal["a{index}", "b{index}", "c{index}"]',
        f"LIMIT_{index} = {index * 10 + 5}",
        f'PREFIX_{index} = "module {index}: "',
        "",
        "",
        f"class Record{index}(BaseModel):",
        f'    """A record of module {index}."""',
        "",
        "    name: str",
        "    score: float = 0.0",
        "    tags: list[str] = []",
        "",
        "",
        "@lm_function",
        f"def judge_{index}(text: str, record: Record{index}) -> Label{index}:",
        f'    """Judge the text of module {index}."""',
        "",
        "",
    ]
    for h in range(HELPERS_PER_MODULE):
        judged = last or h % 4 == 0  # every fourth helper also asks the module's lm_function
        callee = f"nxt.helper_{h}(data)" if not last else "data"
        if judged:
            callee = f"judge_{index}({callee}, Record{index}(name=data))"
        lines += textwrap.dedent(
            f'''
            def helper_{h}(text: str) -> str:
                """Helper {h} of module {index}: cleans, then delegates."""
                # normalize the input before delegating
                data = PREFIX_{index} + text.strip()[:LIMIT_{index}]
                if len(data) > {h + 3}:
                    data = data.lower()
                parts = [p for p in data.split() if p]
                payload = json.dumps({{"parts": parts, "n": len(parts)}})
                for _ in range(2):
                    payload = payload.replace(" ", "")
                result = {callee}
                return str(result) + payload[:1]
            '''
        ).splitlines()
    lines += textwrap.dedent(
        f'''

        class Service{index}:
            """Calls its helpers through self."""

            def __init__(self, factor: int = {index}) -> None:
                self.factor = factor

            def run(self, text: str) -> str:
                return self.step(text) * self.factor

            def step(self, text: str) -> str:
                return helper_0(text)


        def unused_{index}(text: str) -> str:
            return text[::-1]
        '''
    ).splitlines()
    return "\n".join(lines) + "\n"


def generate(root: Path, modules: int) -> tuple[str, list[Path]]:
    package = root / "benchproj"
    package.mkdir()
    (package / "__init__.py").write_text('"""Generated benchmark project."""\n')
    files = [package / "__init__.py"]
    for index in range(modules):
        path = package / f"mod_{index}.py"
        path.write_text(_module(index, modules))
        files.append(path)
    entry = package / "entry.py"
    calls = "\n".join(f"    out.append(mod_0.helper_{h}(text))" for h in range(HELPERS_PER_MODULE))
    entry.write_text(
        '"""Entry point."""\n\nfrom lmprog import traced\n\nfrom . import mod_0\n\n\n'
        f"@traced\ndef main(text: str) -> list[str]:\n    out: list[str] = []\n{calls}\n"
        "    out.append(mod_0.Service0().run(text))\n    return out\n"
    )
    files.append(entry)
    return "benchproj.entry", files


def median_time(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--modules", type=int, default=25)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        entry_name, files = generate(Path(tmp), args.modules)
        total_lines = sum(len(p.read_text().splitlines()) for p in files)
        sys.path.insert(0, tmp)
        entry = importlib.import_module(entry_name).main

        def parse_all() -> None:
            for path in files:
                libcst.parse_module(path.read_text())

        def cold() -> lmprog.source.ProgramSource:
            clear_cache()
            return analyze(entry)

        result = cold()
        baseline = median_time(parse_all, args.runs)
        cold_time = median_time(cold, args.runs)
        warm_time = median_time(lambda: analyze(entry), args.runs)
        print(f"project: {len(files)} files, {total_lines} lines, libcst {libcst_version()}")
        print(
            f"reached: {len(result.call_graph)} functions, {len(result.functions)} lm_functions, "
            f"{len(result.types)} types, {len(result.constants)} constants"
        )
        print(f"baseline libcst.parse_module, all files: {baseline * 1000:8.1f} ms")
        for label, seconds in (("cold (parse cache cleared)", cold_time), ("warm (files parsed)", warm_time)):
            print(f"analyze() {label:<28} {seconds * 1000:8.1f} ms  ({seconds / baseline:.2f}x baseline)")
        rendered, cut = result.render(), result.render(max_tokens=2000)
        print(f"render(): {len(rendered)} chars; render(max_tokens=2000): {len(cut)} chars")


def libcst_version() -> str:
    from importlib.metadata import version

    return version("libcst")


if __name__ == "__main__":
    main()
