"""The public API is typed: mypy checks a user's program (``tests/typing/``) and sees each
lm_function call with its declared return type, and refuses calls that do not fit."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent / "typing"
ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("mypy")


def _mypy(*files: Path) -> subprocess.CompletedProcess[str]:
    """mypy --strict on ``files`` as a user's project sees lmprog (errors inside lmprog are not
    the sample's: ``--follow-imports=silent``). lm_function bodies are docstrings: the samples
    turn off ``empty-body``, as a user's configuration does."""
    command = [
        sys.executable,
        "-m",
        "mypy",
        "--strict",
        "--no-incremental",
        "--config-file=",
        "--follow-imports=silent",
        *map(str, files),
    ]
    env = {**os.environ, "MYPYPATH": str(ROOT)}
    return subprocess.run(
        command, capture_output=True, text=True, timeout=600, check=False, cwd=ROOT, env=env
    )


def test_lm_function_calls_have_their_declared_types() -> None:
    out = _mypy(HERE / "sample_program.py")
    assert out.returncode == 0, out.stdout + out.stderr


def test_calls_that_do_not_fit_are_type_errors() -> None:
    path = HERE / "sample_errors.py"
    expected = {
        i: line.split("# E: ", 1)[1].strip()
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if "# E: " in line
    }
    out = _mypy(path)
    found: dict[int, list[str]] = {}
    for line in out.stdout.splitlines():
        m = re.match(r".*sample_errors\.py:(\d+): error: (.*)", line)
        if m:
            found.setdefault(int(m.group(1)), []).append(m.group(2))
    assert sorted(found) == sorted(expected), out.stdout
    for line, message in expected.items():
        assert any(message in text for text in found[line]), (line, found[line])
