"""``lmprog.evaluate``, ``lmprog.optimize`` and ``lmprog.trace`` are modules (their submodules and
names import) and the public functions (``lmprog.optimize(...)``), each checked in a fresh
interpreter so that no earlier import hides an import-order problem."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

APP = '''
from typing import Literal

from lmprog import lm_function


@lm_function
def classify(ticket: str) -> Literal["billing", "bug"]:
    """Classify a support ticket."""
'''


def run(code: str, cwd: Path) -> str:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize(
    "code",
    [
        "import lmprog.optimize.mipro\nassert lmprog.optimize.mipro.__name__ == 'lmprog.optimize.mipro'",
        "import lmprog.optimize.mipro as m\nassert m.__name__ == 'lmprog.optimize.mipro'",
        "from lmprog.optimize.mipro import MIPRO\nimport lmprog\nassert lmprog.optimize.mipro.MIPRO is MIPRO",
        "from lmprog.optimize import bootstrap\nassert bootstrap.__name__ == 'lmprog.optimize.bootstrap'",
        "from lmprog.trace import Trace\nimport lmprog\nassert lmprog.trace.Trace is Trace",
        "import lmprog.evaluate\nfrom lmprog.evaluate import EvaluationResult\n"
        "assert lmprog.evaluate.EvaluationResult is EvaluationResult",
        "import lmprog.trace\nimport lmprog.evaluate\nimport lmprog.optimize\nimport lmprog\n"
        "assert lmprog.trace.traced is lmprog.traced",
    ],
    ids=["submodule", "submodule-as", "from-submodule", "from-optimize", "from-trace", "evaluate", "all"],
)
def test_the_modules_and_their_submodules_import(tmp_path: Path, code: str) -> None:
    run(code, tmp_path)


def test_the_public_functions_still_run(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(APP)
    out = run(
        """
        import inspect
        import lmprog
        from lmprog import evaluate, optimize, trace
        from lmprog.testing import ScriptedLM
        import app

        rows = [{"ticket": "refund me", "output": "billing"}, {"ticket": "it crashes", "output": "bug"}]
        metric = lambda ex, pred: pred == ex["output"]
        lm = ScriptedLM(lambda messages: "billing")
        with lmprog.context(lm=lm, cache=False, load_prompts=False):
            with lmprog.trace() as t:
                result = lmprog.evaluate(app.classify, rows, metric, threads=1)
            assert [s.name for s in t.spans] == ["classify", "classify"]
            assert evaluate(app.classify, rows, metric, threads=1).score == result.score == 50.0
            with trace() as t2:
                app.classify("x")
            assert len(t2.spans) == 1
            opt = lmprog.optimize(app.classify, rows, metric, optimizer="labeled", save=False, progress=False)
            assert optimize is lmprog.optimize
            assert len(opt.states[app.classify].demos) == 2
        for name, fn in [("evaluate", lmprog.evaluate.evaluate), ("optimize", lmprog.optimize.optimize),
                         ("trace", lmprog.trace.trace)]:
            assert inspect.signature(getattr(lmprog, name)) == inspect.signature(fn), name
        print("ok")
        """,
        tmp_path,
    )
    assert out.strip() == "ok"
