"""The lmprog command line, through typer's CliRunner and as a real subprocess.

The user's program is a file written to tmp_path that configures a ScriptedLM at import time: the
scripted model answers "bug" to everything without demos and reads keywords once it has demos, so
optimization has something to improve and no test touches the network.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lmprog import settings
from lmprog.cli import app
from lmprog.lm import Completion, InterceptedRequest, intercept_requests

PROGRAM = '''
from typing import Literal

import lmprog
from lmprog import lm_function, traced
from lmprog.testing import ScriptedLM

KEYWORDS = {"charged": "billing", "refund": "billing", "invoice": "billing",
            "crash": "bug", "error": "bug", "broken": "bug"}


def respond(messages):
    if len(messages) <= 2:  # zero-shot: the scripted model always says "bug"
        return "bug"
    ticket = messages[-1]["content"].lower()
    return next((label for word, label in KEYWORDS.items() if word in ticket), "feature")


lmprog.configure(lm=ScriptedLM(respond), cache=False)


@lm_function
def classify(ticket: str) -> Literal["billing", "bug", "feature"]:
    """Classify a support ticket by its topic.

    Args:
        ticket: the customer's message, verbatim.
    """


@traced
def pipeline(ticket: str) -> str:
    return classify(ticket)


if __name__ == "__main__":
    raise SystemExit("the __main__ block must not run")
'''

METRIC = """
def label_match(example, prediction, trace=None):
    return example["label"] == prediction
"""

ROWS = [
    ("I was charged twice", "billing"),
    ("Please refund my order", "billing"),
    ("The invoice is wrong", "billing"),
    ("The app crashes on login", "bug"),
    ("Error 500 on save", "bug"),
    ("Search is broken", "bug"),
    ("Add a dark mode", "feature"),
    ("Export to PDF would be nice", "feature"),
]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A user project in tmp_path (the working directory); undoes the imports and settings after."""
    (tmp_path / "prog.py").write_text(PROGRAM)
    (tmp_path / "metric.py").write_text(METRIC)
    (tmp_path / "train.jsonl").write_text(
        "".join(json.dumps({"ticket": t, "label": y}) + "\n" for t, y in ROWS)
    )
    monkeypatch.chdir(tmp_path)
    modules, path = set(sys.modules), list(sys.path)
    logger = logging.getLogger("lmprog")
    level, handlers = logger.level, list(logger.handlers)
    yield tmp_path
    for name in set(sys.modules) - modules:
        if str(tmp_path) in str(getattr(sys.modules[name], "__file__", "") or ""):
            del sys.modules[name]
    sys.path[:] = path
    logger.setLevel(level)
    logger.handlers[:] = handlers
    settings.reset()


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_optimize_prints_estimate_results_files_and_writes_report(project: Path) -> None:
    code, out = invoke(
        "optimize",
        "prog.py:pipeline",
        "--train",
        "train.jsonl",
        "--metric",
        "metric.py:label_match",
        "--optimizer",
        "random_search",
        "--threads",
        "2",
        "--report",
        "report.html",
    )
    assert code == 0, out
    assert "estimated LM calls: about" in out
    assert "1 lm_function(s): classify" in out
    assert "baseline score" in out and "optimized score" in out
    baseline = float(out.split("baseline score")[1].split()[0])
    optimized = float(out.split("optimized score")[1].split()[0])
    assert optimized > baseline
    predicted = out.split("classify predicted")[1].splitlines()[0]  # the chosen candidate's labels
    assert "billing" in predicted and "bug" in predicted
    assert "prompts/prog.classify.yaml" in out
    doc = yaml.safe_load((project / "prompts" / "prog.classify.yaml").read_text())
    assert doc["function"] == "prog:classify" and doc["demos"]
    assert doc["provenance"]["optimizer"] == "random_search"
    assert "<svg" in (project / "report.html").read_text()


def test_optimize_mipro_refuses_a_call_cap_below_its_smallest_plan(project: Path) -> None:
    code, out = invoke(
        "optimize",
        "prog.py:pipeline",
        "--train",
        "train.jsonl",
        "--metric",
        "exact_match",
        "--max-calls",
        "0",
        "--no-save",
    )
    assert code == 2, out  # refused before any call: nothing was spent
    assert "Budget(max_calls=0) is below the smallest plan for this task, 9 calls" in out
    assert "raise max_calls to at least 9" in out
    assert not (project / "prompts").exists()


def test_optimize_mipro_shows_the_plan_that_fits_its_call_cap(project: Path) -> None:
    code, out = invoke(
        "optimize",
        "prog.py:pipeline",
        "--train",
        "train.jsonl",
        "--metric",
        "exact_match",
        "--max-calls",
        "20",
        "--no-save",
    )
    assert code == 0, out
    assert "with mipro" in out and "plan: " in out and "of max_calls 20" in out
    assert "scaled down" in out and "num_trials 16 ->" in out
    calls = int(re.search(r"LM calls\s+\d+ \((\d+) requests", out).group(1))  # type: ignore[union-attr]
    assert calls <= 20


def test_eval_prints_the_score_table_and_saves_a_trace(project: Path) -> None:
    code, out = invoke(
        "eval", "prog.py:pipeline", "--data", "train.jsonl", "-m", "exact_match", "--trace", "t.jsonl"
    )
    assert code == 0, out
    assert "pipeline / exact_match: 37.5 on 8 example(s)" in out  # zero-shot: only the 3 bugs are right
    code, out = invoke("trace", "show", "t.jsonl")
    assert code == 0, out
    assert "16 spans, 8 lm call(s)" in out
    assert out.count("pipeline") >= 8 and "classify" in out and " ms" in out and "tokens" in out


@pytest.mark.parametrize("backend", ["loky", "dask"])
def test_eval_runs_the_examples_in_worker_processes(project: Path, backend: str) -> None:
    if backend == "dask":
        pytest.importorskip("distributed", reason='needs the extra: pip install "lmprog[distributed]"')
    (project / "where.py").write_text(
        "import os\n"
        "def elsewhere(example, prediction, trace=None):\n"
        f"    return os.getpid() != {os.getpid()}\n"
    )
    for metric, shown in [("exact_match", "exact_match: 37.5"), ("where.py:elsewhere", "elsewhere: 100.0")]:
        args = ["prog.py:pipeline", "--data", "train.jsonl", "-m", metric, "--threads", "2"]
        code, out = invoke("eval", *args, "--backend", backend)
        assert code == 0, out
        # the same score as in this process; the metric runs beside the program, in another process
        assert f"pipeline / {shown} on 8 example(s)" in out


def test_eval_refuses_an_unknown_backend_and_a_cluster_without_one(project: Path) -> None:
    args = ["eval", "prog.py:pipeline", "--data", "train.jsonl", "-m", "exact_match"]
    code, out = invoke(*args, "--backend", "spark")
    assert code != 0 and "--backend spark: choose one of threads, loky, dask, ray" in out
    code, out = invoke(*args, "--cluster", "tcp://10.0.0.5:8786")
    assert code != 0 and "--cluster is for --backend dask or ray, not threads" in out


def test_trace_show_prints_the_metric_score_and_feedback_of_each_run(project: Path) -> None:
    (project / "fb.py").write_text(
        "from lmprog import Feedback\n"
        "def judged(example, prediction):\n"
        "    ok = example['label'] == prediction\n"
        "    return Feedback(ok, None if ok else f'wanted {example[\"label\"]}, said {prediction}')\n"
    )
    code, out = invoke(
        "eval", "prog.py:pipeline", "--data", "train.jsonl", "-m", "fb.py:judged", "--trace", "t.jsonl"
    )
    assert code == 0, out
    code, out = invoke("trace", "show", "t.jsonl")
    assert code == 0, out
    assert out.count("score 100") == 3 and out.count("score 0") == 5
    assert "feedback: wanted billing, said bug" in out and "feedback: wanted feature, said bug" in out


KEYWORD_RULE = "Decide by keyword: charged, refund or invoice is billing; crash, error or broken is bug."


def test_optimize_reflect_takes_its_options_and_uses_the_reflection_model(project: Path) -> None:
    reflections: list[str] = []

    def answer(request: InterceptedRequest, send: Callable[[], Completion]) -> Completion:
        if request.lm.model == "openai/reflector":  # answered here: nothing reaches a provider
            reflections.append(request.messages[-1]["content"])
            return Completion(text=KEYWORD_RULE)
        if request.messages[0]["content"].startswith("Decide by keyword"):
            ticket = request.messages[-1]["content"].lower()
            words = {"charged": "billing", "refund": "billing", "invoice": "billing", "crash": "bug"}
            words |= {"error": "bug", "broken": "bug"}
            return Completion(text=next((y for w, y in words.items() if w in ticket), "feature"))
        return send()

    args = ["optimize", "prog.py:pipeline", "--train", "train.jsonl", "-m", "exact_match"]
    args += ["--optimizer", "reflect", "--reflection-model", "openai/reflector", "--gate", "paired"]
    args += ["--minibatch-size", "4", "--iterations", "2", "--threads", "1", "--report", "r.html"]
    args += ["--storage", "runs.db", "--study", "cli-reflect"]  # the optuna storage, as MIPRO's
    with intercept_requests(answer):
        code, out = invoke(*args)
    assert code == 0, out
    assert len(reflections) >= 1 and "## Run 4" in reflections[0] and "## Run 5" not in reflections[0]
    doc = yaml.safe_load((project / "prompts" / "prog.classify.yaml").read_text())
    assert doc["instruction"] == KEYWORD_RULE and doc["provenance"]["optimizer"] == "reflect"
    page = (project / "r.html").read_text()
    assert "<td>4 paired</td>" in page
    import optuna

    attrs = optuna.load_study(study_name="cli-reflect", storage="sqlite:///runs.db").user_attrs
    gates = {
        v["gate"] for k, v in attrs.items() if k.startswith("reflect:iteration:") and v["kind"] == "reflect"
    }
    assert gates == {"paired"} and not (project / ".lmprog" / "reflect.json").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--gate", "vote"], "gate must be 'auto', 'improve' or 'paired'"),
        (["--init", "magic"], "init must be 'none', 'bootstrap' or 'knn'"),
    ],
)
def test_optimize_reflect_refuses_bad_options(project: Path, args: list[str], message: str) -> None:
    base = ["optimize", "prog.py:pipeline", "--train", "train.jsonl", "-m", "exact_match", "--optimizer"]
    code, out = invoke(*base, "reflect", *args)
    assert code == 2 and message in " ".join(out.split()), out
    code, out = invoke(*base, "mipro", "--minibatch-size", "3", "--iterations", "2")
    assert code == 2 and "--minibatch-size, --iterations: only --optimizer reflect" in out, out


def test_model_option_overrides_the_programs_lm(project: Path) -> None:
    seen: list[str] = []

    def answer(request: InterceptedRequest, send: Callable[[], Completion]) -> Completion:
        seen.append(request.lm.model)  # answered here: nothing reaches a provider
        return Completion(text="billing")

    with intercept_requests(answer):
        code, out = invoke(
            "eval",
            "prog.py:pipeline",
            "--data",
            "train.jsonl",
            "-m",
            "exact_match",
            "--model",
            "openai/gpt-x",
        )
    assert code == 0, out
    assert seen == ["openai/gpt-x"] * len(ROWS)
    assert "pipeline / exact_match: 37.5" in out  # the 3 billing rows


def test_show_prints_the_exact_messages_with_demos(project: Path) -> None:
    code, out = invoke("show", "prog.py:classify", "--input", "ticket=My card was charged", "--json")
    assert code == 0, out
    messages = json.loads(out)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[-1]["content"] == "ticket: My card was charged"
    assert (
        invoke(
            "optimize",
            "prog.py:pipeline",
            "--train",
            "train.jsonl",
            "-m",
            "exact_match",
            "--optimizer",
            "labeled",
        )[0]
        == 0
    )
    code, out = invoke("show", "prog.py:classify", "-i", "ticket=Refund me")
    assert code == 0, out
    assert "prompts/prog.classify.yaml (ok)" in out
    assert "demos: 4" in out and out.count("assistant") == 4
    assert "ticket: Refund me" in out


def test_show_displays_a_knn_pool_and_the_demos_retrieved_for_the_inputs(project: Path) -> None:
    code, out = invoke(
        "optimize", "prog.py:pipeline", "--train", "train.jsonl", "-m", "exact_match", "--optimizer", "knn"
    )
    assert code == 0, out
    assert "4 retrieved demo(s) of a pool of 8" in out
    assert "knn:" in (project / "prompts" / "prog.classify.yaml").read_text()
    code, out = invoke("show", "prog.py:classify", "-i", "ticket=Please refund the invoice")
    assert code == 0, out
    assert "retrieved demos (knn): the 4 nearest of a pool of 8, by BM25 over ticket" in out
    assert out.count("assistant") == 4
    # the nearest training example is the last demo, right before the question
    assert out.rindex("Please refund my order") > out.rindex("The invoice is wrong")


def test_check_passes_then_fails_on_stale_and_corrupt_files(project: Path) -> None:
    code, out = invoke("check", ".")
    assert code == 0, out
    assert "missing" in out and "prog:classify" in out
    assert invoke("check", ".", "--require-all")[0] == 1
    assert (
        invoke(
            "optimize",
            "prog.py:pipeline",
            "--train",
            "train.jsonl",
            "-m",
            "exact_match",
            "--optimizer",
            "labeled",
        )[0]
        == 0
    )
    code, out = invoke("check")
    assert code == 0 and "1 ok" in out, out

    # The docstring changes: the committed file no longer matches the function.
    (project / "prog.py").write_text(PROGRAM.replace("by its topic", "by its main topic"))
    for name in [n for n in sys.modules if n == "prog"]:
        del sys.modules[name]
    code, out = invoke("check", ".")
    assert code == 1, out
    assert "stale" in out and "prompts/prog.classify.yaml" in out and "lmprog check failed" in out

    (project / "prompts" / "prog.classify.yaml").write_text("schema: 1\nfunction: [oops\n")
    del sys.modules["prog"]
    code, out = invoke("check", "prog.py")
    assert code == 1, out
    assert "corrupt" in out and "prog.classify.yaml:3: invalid YAML" in out


def test_check_fails_on_demos_that_do_not_fit_the_signature_naming_file_and_line(project: Path) -> None:
    code, out = invoke(
        "optimize",
        "prog.py:pipeline",
        "--train",
        "train.jsonl",
        "-m",
        "exact_match",
        "--optimizer",
        "labeled",
    )
    assert code == 0, out
    path = project / "prompts" / "prog.classify.yaml"
    assert invoke("check")[0] == 0
    lines = path.read_text().splitlines()
    outputs = [i for i, line in enumerate(lines) if line.startswith("  output: ")]
    lines[outputs[1]] = "  label: bug"  # an output key renamed: the file keeps its signature hash
    path.write_text("\n".join(lines) + "\n")
    del sys.modules["prog"]
    code, out = invoke("check")
    assert code == 1, out
    assert "corrupt" in out and f"prog.classify.yaml:{outputs[1] + 1}: demo 2: 'label' is not a field" in out
    assert "1 corrupt" in out

    lines[outputs[1]] = "  output: refund"  # a value that is not one of the Literal's options
    path.write_text("\n".join(lines) + "\n")
    del sys.modules["prog"]
    code, out = invoke("check")
    assert code == 1, out
    assert f"prog.classify.yaml:{outputs[1] + 1}: demo 2: output: expected exactly one of" in out

    # a call names the file and the line too
    code, out = invoke("show", "prog.py:classify", "-i", "ticket=Refund me")
    assert code == 2, out  # a PromptFileError is reported as an error of the command
    assert f"prog.classify.yaml:{outputs[1] + 1}: demo 2: output: expected exactly one of" in " ".join(
        out.split()
    )


def test_show_fills_constrained_inputs_with_placeholders_and_checks_given_values(project: Path) -> None:
    (project / "ranked.py").write_text(
        "from typing import Annotated\n"
        "from pydantic import Field\n"
        "from lmprog import lm_function\n\n\n"
        "@lm_function\n"
        "def rank(rating: Annotated[int, Field(ge=1, le=5)]) -> str:\n"
        '    """Describe the rating."""\n'
    )
    code, out = invoke("show", "ranked.py:rank")
    assert code == 0, out
    assert "rating: <rating>" in out
    code, out = invoke("show", "ranked.py:rank", "-i", "rating=9")
    assert code == 2
    assert "argument rating=9 does not fit Annotated[int, Ge(ge=1), Le(le=5)]" in " ".join(out.split())


def test_check_skips_tests_and_virtualenvs_and_reports_import_errors(project: Path) -> None:
    (project / "tests").mkdir()
    (project / "tests" / "test_prog.py").write_text(
        "from lmprog import lm_function\nraise RuntimeError('no')\n"
    )
    (project / "venv").mkdir()
    (project / "venv" / "pyvenv.cfg").write_text("")
    (project / "venv" / "lib.py").write_text("from lmprog import lm_function\nraise RuntimeError('no')\n")
    code, out = invoke("check")
    assert code == 0, out
    (project / "broken.py").write_text("from lmprog import lm_function\nundefined_name\n")
    code, out = invoke("check")
    assert code == 1, out
    assert "error" in out and "NameError" in out and "broken.py" in out


def test_export_writes_a_dotprompt_file(project: Path) -> None:
    code, out = invoke("export", "prog.py:classify", "-o", "classify.prompt")
    assert code == 0, out
    text = (project / "classify.prompt").read_text()
    assert text.startswith("---\n") and '{{role "system"}}' in text and "{{ticket}}" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "missing.py:pipeline", "--data", "train.jsonl", "-m", "f1"], "missing.py: no such file"),
        (["eval", "prog.py:nothing", "--data", "train.jsonl", "-m", "f1"], "has no function 'nothing'"),
        (["eval", "prog.py:pipeline", "--data", "nope.jsonl", "-m", "f1"], "--data nope.jsonl: no such file"),
        (
            ["eval", "prog.py:pipeline", "--data", "bad.jsonl", "-m", "f1"],
            "bad.jsonl, line 2: missing input(s) 'ticket'",
        ),
        (["eval", "prog.py:pipeline", "--data", "train.jsonl", "-m", "nope"], "unknown metric 'nope'"),
        (
            ["optimize", "prog.py:pipeline", "--train", "train.jsonl", "-m", "f1", "--optimizer", "x"],
            "--optimizer x: unknown",
        ),
        (["show", "prog.py:pipeline"], "pipeline is not an lm_function; lm_functions here: classify"),
        (["trace", "show", "train.jsonl"], "train.jsonl: not a trace written by lmprog"),
    ],
)
def test_usage_errors_exit_2_without_traceback(project: Path, args: list[str], message: str) -> None:
    (project / "bad.jsonl").write_text('{"ticket": "ok", "label": "bug"}\n{"text": "no ticket"}\n')
    code, out = invoke(*args)
    assert code == 2, out
    assert "error:" in out and message in " ".join(out.split())
    assert "Traceback" not in out


def _lmprog_command() -> list[str]:
    script = Path(sys.executable).with_name("lmprog")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from lmprog.cli import main; main()"]


def test_real_subprocess_optimize_and_usage_error(project: Path) -> None:
    env = {**os.environ, "COLUMNS": "200", "LMPROG_CACHE_DIR": str(project / "cache")}
    done = subprocess.run(
        [
            *_lmprog_command(),
            "optimize",
            "prog.py:pipeline",
            "--train",
            "train.jsonl",
            "-m",
            "exact_match",
            "--optimizer",
            "labeled",
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "optimization result" in done.stdout and "prompts/prog.classify.yaml" in done.stdout
    assert "estimated LM calls: about 0" in done.stderr
    assert (project / "prompts" / "prog.classify.yaml").exists()

    bad = subprocess.run(
        [*_lmprog_command(), "optimize", "nowhere.py:main", "--train", "train.jsonl", "-m", "f1"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    assert "error: nowhere.py: no such file" in bad.stderr and "Traceback" not in bad.stderr


def test_help_lists_the_commands() -> None:
    code, out = invoke("--help")
    assert code == 0
    for command in ("optimize", "eval", "show", "check", "export", "trace"):
        assert command in out


def test_optimize_with_another_metric_does_not_reuse_the_stored_study(project: Path) -> None:
    (project / "zero.py").write_text("def always_zero(example, prediction, trace=None):\n    return 0\n")
    args = ["optimize", "prog.py:pipeline", "--train", "train.jsonl", "--no-save", "--threads", "2"]
    code, out = invoke(*args, "--metric", "exact_match")
    assert code == 0, out
    assert float(out.split("optimized score")[1].split()[0]) > 0
    code, out = invoke(*args, "--metric", "zero.py:always_zero")
    # scored with the new metric, not the stored study of the first: 0 before and after
    assert float(out.split("baseline score")[1].split()[0]) == 0.0, out
    assert float(out.split("optimized score")[1].split()[0]) == 0.0, out


def test_optimize_that_does_not_beat_the_committed_file_keeps_it_and_exits_1(project: Path) -> None:
    (project / "zero.py").write_text("def always_zero(example, prediction, trace=None):\n    return 0\n")
    args = ["optimize", "prog.py:pipeline", "--train", "train.jsonl", "--optimizer", "random_search"]
    code, out = invoke(*args, "--metric", "exact_match")
    assert code == 0, out
    committed = project / "prompts" / "prog.classify.yaml"
    before = committed.read_bytes()
    # another seed: other candidates, so the one kept (every score is 0, and the zero-shot one,
    # answering "bug" to everything, is collapsed) is not the committed configuration itself
    code, out = invoke(*args, "--metric", "zero.py:always_zero", "--seed", "1")
    assert code == 1, out
    assert "no prompt file written" in out and "does not beat" in out and "nothing optimized" in out
    assert committed.read_bytes() == before
