"""``lmprog show`` shows a prompt file's layout, decoding and calibration, and the messages in
that layout."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lmprog import settings
from lmprog.cli import app

PROGRAM = '''
from typing import Literal

from lmprog import lm_function


@lm_function
def classify(ticket: str) -> Literal["billing", "bug"]:
    """Classify a support ticket."""
'''

PROMPT_FILE = """schema: 1
function: prog:classify
signature_hash: {hash}
instruction: Classify a support ticket.
instruction_optimized: false
layout: completion
decode: calibrated
calibration:
  billing: 0.25
  bug: 0.75
demos:
- ticket: charged twice
  output: billing
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "prog.py").write_text(PROGRAM)
    monkeypatch.chdir(tmp_path)
    modules, path = set(sys.modules), list(sys.path)
    yield tmp_path
    for name in set(sys.modules) - modules:
        if str(tmp_path) in str(getattr(sys.modules[name], "__file__", "") or ""):
            del sys.modules[name]
    sys.path[:] = path
    settings.reset()


def show(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["show", "prog.py:classify", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_show_prints_layout_decoding_calibration_and_the_prompt_message(project: Path) -> None:
    sys.path.insert(0, str(project))
    import prog

    (project / "prompts").mkdir()
    (project / "prompts" / "prog.classify.yaml").write_text(
        PROMPT_FILE.format(hash=prog.classify.signature_hash)
    )
    code, out = show("-i", "ticket=Refund me")
    assert code == 0, out
    assert "layout: completion; decode: calibrated" in out
    assert "calibration (content-free prior): billing 0.250, bug 0.750" in out
    code, out = show("-i", "ticket=Refund me", "--json")
    [message] = json.loads(out)
    assert message["role"] == "prompt"
    assert message["content"].endswith(
        "\n---\nticket: charged twice\noutput: billing\n---\nticket: Refund me\noutput:"
    )


def test_show_names_the_file_and_field_of_a_bad_layout(project: Path) -> None:
    sys.path.insert(0, str(project))
    import prog

    (project / "prompts").mkdir()
    text = PROMPT_FILE.format(hash=prog.classify.signature_hash).replace("layout: completion", "layout: grid")
    (project / "prompts" / "prog.classify.yaml").write_text(text)
    code, out = show("-i", "ticket=Refund me")
    assert code != 0
    assert (
        "prog.classify.yaml:6: layout: must be one of chat, transcript, completion, got 'grid'"
        in out.replace("\n", "")
    )
