"""The same project checked out in two folders gives the same proposer prompt and program hash:
paths shown to the proposer are relative to the project, never naming the checkout folder."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

APP = '''
from typing import Literal

from lmprog import lm_function


@lm_function
def classify(ticket: str) -> Literal["billing", "bug"]:
    """Classify a support ticket."""


def clean(text: str) -> str:
    return text.strip()


def pipeline(ticket: str) -> str:
    return classify(clean(ticket))
'''

PROBE = textwrap.dedent(
    """
    import importlib, json, sys
    import lmprog
    from lmprog.optimize.propose import GroundedProposer
    from lmprog.testing import ScriptedLM

    app = importlib.import_module(sys.argv[1])
    program = lmprog.analyze(app.pipeline)
    lm = ScriptedLM(["Read the ticket and answer with its topic, billing or bug."])
    GroundedProposer(program.render(), lm=lm, seed=0).propose(app.classify, 1, data_summary="2 rows")
    print(json.dumps({"hash": program.program_hash, "render": program.render(),
                      "messages": lm.calls[0].messages}))
    """
)


def run_probe(checkout: Path, module: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, module],
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


@pytest.mark.parametrize(
    ("files", "module", "shown"),
    [
        ({"app.py": APP}, "app", "(app.py:"),
        ({"shop/__init__.py": "", "shop/app.py": APP}, "shop.app", "(shop/app.py:"),
    ],
)
def test_two_checkouts_of_one_project_give_the_same_proposer_prompt(
    tmp_path: Path, files: dict[str, str], module: str, shown: str
) -> None:
    results = []
    for folder in ("checkout_a", "checkout_b"):
        for name, text in files.items():
            path = tmp_path / folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        results.append(run_probe(tmp_path / folder, module))
    first, second = results
    prompt = "\n".join(m["content"] for m in first["messages"])
    assert shown in first["render"] and shown in prompt
    assert "checkout_" not in prompt and str(tmp_path) not in prompt
    assert first["messages"] == second["messages"]
    assert first["render"] == second["render"]
    assert first["hash"] == second["hash"]
