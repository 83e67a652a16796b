"""Every public name of the design document (``shared/design.md``) still imports from its documented
path, and the module paths of the first version's map still import (old paths are kept for users;
CHANGELOG.md lists them). Each import runs in a fresh interpreter, so no earlier import hides an
import-order problem."""

from __future__ import annotations

import subprocess
import sys

import pytest

# (module, names): the public names by their documented path
PUBLIC = [
    (
        "lmprog",
        [
            "lm_function",
            "traced",
            "configure",
            "context",
            "LM",
            "BaseLM",
            "Completion",
            "OutputParseError",
            "trace",
            "Example",
            "load_dataset",
            "evaluate",
            "EvaluationResult",
            "ExampleResult",
            "optimize",
            "OptimizationResult",
            "Budget",
            "analyze",
            "ProgramSource",
            "LMFunction",
            "metrics",
            "Usage",
            "__version__",
        ],
    ),
    ("lmprog.testing", ["ScriptedLM", "FaultyLM"]),
    ("lmprog.metrics", ["exact_match", "f1", "contains"]),
    ("lmprog.errors", ["LmprogError", "OutputParseError", "UsageError", "BudgetExceededError"]),
]

# the modules of the first version's map, and the names users imported from them
OLD_PATHS = [
    ("lmprog.function", ["LMFunction", "lm_function", "State", "use_states"]),
    ("lmprog.signature", ["Signature", "Field", "signature_from_function"]),
    ("lmprog.source", ["analyze", "ProgramSource", "signature_hash", "CallSite", "Part"]),
    ("lmprog.prompt", ["render_messages", "parse_output", "retry_messages", "format_output", "to_jsonable"]),
    ("lmprog.lm", ["LM", "BaseLM", "Completion", "Messages", "resolve_lm", "intercept_requests"]),
    ("lmprog.local", ["is_local_model", "resolve_model_path", "default_model_path", "LocalModel"]),
    ("lmprog.local_runtime", ["require_runtime", "INSTALL_COMMAND", "N_CTX"]),
    ("lmprog.cache", ["ResponseCache", "cache_key", "get_cache", "without_secrets"]),
    ("lmprog.constrain", ["grammar", "json_schema", "response_format", "constraint_params"]),
    ("lmprog.trace", ["Span", "Trace", "trace", "traced", "load_jsonl", "add_sink", "remove_sink"]),
    ("lmprog.otel", ["enable_otel", "disable_otel", "otel_enabled"]),
    ("lmprog.data", ["Example", "load_dataset", "split", "select_inputs"]),
    ("lmprog.evaluate", ["evaluate", "EvaluationResult", "ExampleResult"]),
    ("lmprog.optimize", ["optimize", "Budget", "OptimizationResult", "Optimizer", "Task", "Candidate"]),
    ("lmprog.optimize.bootstrap", ["BootstrapFewShot", "LabeledFewShot", "RandomSearch"]),
    ("lmprog.optimize.mipro", ["MIPRO"]),
    ("lmprog.optimize.budget", ["Budget"]),
    ("lmprog.promptfile", ["prompt_path", "load_state", "status", "write", "read", "export_dotprompt"]),
    ("lmprog.report", ["write_report", "render_report"]),
    ("lmprog.settings", ["configure", "context", "current"]),
    ("lmprog.usage", ["Usage", "track"]),
    ("lmprog.cli", ["app", "main"]),
]


def _import(module: str, names: list[str]) -> subprocess.CompletedProcess[str]:
    code = f"from {module} import {', '.join(names)}\nprint('ok')\n"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize(("module", "names"), PUBLIC + OLD_PATHS, ids=[m for m, _ in PUBLIC + OLD_PATHS])
def test_documented_names_import_from_their_path(module: str, names: list[str]) -> None:
    out = _import(module, names)
    assert out.returncode == 0 and out.stdout == "ok\n", out.stderr


def test_the_old_paths_are_the_new_objects() -> None:
    import lmprog
    import lmprog.cache
    import lmprog.constrain
    import lmprog.local
    import lmprog.otel
    import lmprog.prompt
    from lmprog import format as wire
    from lmprog import lm, trace

    assert lmprog.prompt.render_messages is wire.render_messages
    assert lmprog.constrain.grammar is wire.grammar
    assert lmprog.cache.ResponseCache is lm.ResponseCache
    assert lmprog.local.is_local_model("local")
    assert lmprog.otel.enable_otel is trace.enable_otel
    assert lmprog.LM is lm.LM and lmprog.trace.trace is trace.trace


def test_the_design_documents_attributes() -> None:
    from typing import Literal

    import lmprog
    from lmprog.testing import ScriptedLM

    @lmprog.lm_function
    def classify(ticket: str) -> Literal["billing", "bug", "feature"]:
        """Classify a support ticket by its topic.

        Args:
            ticket: the customer's message, verbatim.
        """

    assert classify.signature.name == "classify"
    assert len(classify.signature_hash) > 0 and classify.instruction.startswith("Classify")
    assert classify.demos == [] and classify.prompt_file.name.endswith(".yaml")
    with lmprog.context(lm=ScriptedLM(["bug"]), cache=False), lmprog.trace() as t:
        assert classify("it crashes") == "bug"
    assert [s.name for s in t.roots] == ["classify"] and len(t.spans) == 1
