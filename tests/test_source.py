"""lmprog.source: static analysis of a multi-module fixture project (tests/fixtures/proj)."""

from __future__ import annotations

import importlib
import itertools
import json
import logging
import re
import shutil
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

import lmprog
from lmprog.errors import UsageError
from lmprog.source import ProgramSource, analyze, signature_hash

FIXTURES = Path(__file__).parent / "fixtures"
_variants = itertools.count()


@pytest.fixture(scope="module")
def proj() -> types.ModuleType:
    sys.path.insert(0, str(FIXTURES))
    try:
        return importlib.import_module("proj.main")
    finally:
        sys.path.remove(str(FIXTURES))


@pytest.fixture(scope="module")
def program(proj: types.ModuleType) -> ProgramSource:
    return analyze(proj.run)


def load_variant(tmp_path: Path, edits: dict[str, list[tuple[str, str]]] | None = None) -> types.ModuleType:
    """A copy of the fixture package under a fresh name, edited by text replacement, imported."""
    name = f"proj_variant_{next(_variants)}"
    dest = tmp_path / name
    shutil.copytree(FIXTURES / "proj", dest, ignore=shutil.ignore_patterns("__pycache__"))
    for file, replacements in (edits or {}).items():
        text = (dest / file).read_text()
        for old, new in replacements:
            assert old in text, f"{old!r} not in {file}"
            text = text.replace(old, new, 1)
        (dest / file).write_text(text)
    sys.path.insert(0, str(tmp_path))
    try:
        importlib.invalidate_caches()
        return importlib.import_module(f"{name}.main")
    finally:
        sys.path.remove(str(tmp_path))


# -- reachability ----------------------------------------------------------------------------------


def test_reaches_lm_functions_through_helpers_modules_methods_and_closures(program: ProgramSource) -> None:
    keys = [program.key_of(f) for f in program.functions]
    assert keys == [  # breadth first from the entry, callees in source order
        "proj.llm.classify",
        "proj.llm.Triage.priority",
        "proj.llm.answer",
        "proj.llm.summarize",
        "proj.llm.make_extractor.<locals>.extract_keywords",
    ]
    assert all(isinstance(f, lmprog.LMFunction) for f in program.functions)
    assert program.entry == "proj.main.run"


def test_unrelated_code_is_not_reached(program: ProgramSource) -> None:
    everything = set(program.call_graph) | set(program.types) | set(program.constants)
    for name in ("translate", "unused_helper", "unrelated", "Unused", "UNUSED_CONSTANT"):
        assert not any(key.endswith("." + name) for key in everything), name


def test_library_code_is_not_followed(program: ProgramSource) -> None:
    # respond() calls json.dumps and the models subclass pydantic.BaseModel: neither is followed
    everything = set(program.call_graph) | {c for cs in program.call_graph.values() for c in cs}
    everything |= set(program.types) | set(program.constants)
    assert everything and all(key.startswith("proj.") for key in everything)


def test_call_graph_edges(program: ProgramSource) -> None:
    graph = program.call_graph
    assert graph["proj.main.run"] == sorted(graph["proj.main.run"])
    assert {"proj.helpers.triage", "proj.helpers.respond", "proj.llm.Triage.route"} <= set(
        graph["proj.main.run"]
    )
    assert graph["proj.helpers.triage"] == ["proj.helpers.clean", "proj.llm.classify"]
    assert graph["proj.helpers.respond"] == ["proj.llm.answer"]
    assert graph["proj.helpers.short_summary"] == ["proj.llm.summarize"]  # llm.summarize(...)
    # self.method(), obj.method() on an annotated parameter, and self.attr.method()
    assert graph["proj.llm.Triage.route"] == ["proj.llm.Triage.priority"]
    assert graph["proj.helpers.escalate"] == ["proj.llm.Triage.priority"]
    assert graph["proj.helpers.Desk.handle"] == ["proj.llm.Triage.priority"]
    # a closure: the module-level ``extract`` is the function make_extractor returned
    extractor = "proj.llm.make_extractor.<locals>.extractor"
    assert extractor in graph["proj.main.run"]
    assert graph[extractor] == ["proj.llm.make_extractor.<locals>.extract_keywords"]
    assert graph["proj.llm.classify"] == []


def test_nested_defs_are_resolved_statically(proj: types.ModuleType) -> None:
    # analyzing the factory itself: the nested defs exist only in the source
    result = analyze(proj.helpers.llm.make_extractor)
    extractor = "proj.llm.make_extractor.<locals>.extractor"
    assert result.call_graph["proj.llm.make_extractor"] == [extractor]
    assert result.call_graph[extractor] == ["proj.llm.make_extractor.<locals>.extract_keywords"]
    assert result.lm_keys == ["proj.llm.make_extractor.<locals>.extract_keywords"]
    assert result.functions == []  # no runtime object for a def the factory has not run


def test_module_entry(proj: types.ModuleType) -> None:
    whole = analyze(proj)
    assert whole.entry == "proj.main"
    assert whole.roots == ["proj.main.run", "proj.main.unrelated"]
    assert "proj.llm.translate" in whole.lm_keys  # unrelated() reaches it
    one = analyze(proj, entry="run")
    assert one.entry == "proj.main.run"
    assert one.program_hash == analyze(proj.run).program_hash
    with pytest.raises(UsageError, match=r"no function 'nope'.*run"):
        analyze(proj, entry="nope")


def test_lm_function_entry(proj: types.ModuleType) -> None:
    result = analyze(proj.helpers.classify)
    assert result.functions == [proj.helpers.classify]
    assert result.call_graph == {"proj.llm.classify": []}
    assert set(result.types) == {"proj.models.Label"}


# -- collected definitions -------------------------------------------------------------------------


def test_types_of_signatures_transitively(program: ProgramSource) -> None:
    types_ = program.types
    for key in ("Label", "Priority", "Answer", "Citation", "Passage", "Style"):
        assert f"proj.models.{key}" in types_, key
    assert types_["proj.models.Label"].strip() == 'Label = Literal["billing", "bug", "feature"]'
    assert "citations: list[Citation]" in types_["proj.models.Answer"]
    assert "tags: list[str] = field(default_factory=list)" in types_["proj.models.Passage"]
    assert program.signature_types["proj.llm.answer"] == [
        "proj.models.Passage",
        "proj.models.Answer",
        "proj.models.Citation",
    ]


def test_constants_read_by_reached_functions(program: ProgramSource) -> None:
    constants = program.constants
    assert constants["proj.config.LABELS"].strip() == 'LABELS = ["billing", "bug", "feature"]'
    assert constants["proj.config.MAX_LEN"].strip() == "MAX_LEN = 200"
    # BANNER is read by respond(); its value reads PROMPT_PREFIX
    assert "proj.config.BANNER" in constants and "proj.config.PROMPT_PREFIX" in constants


def test_sources_keep_comments_and_exact_text(program: ProgramSource) -> None:
    assert "# trim overly long tickets" in program.sources["proj.helpers.clean"]
    assert "# the main classification call" in program.sources["proj.helpers.triage"]
    assert program.sources["proj.llm.answer"].startswith("@lm_function(max_retries=3)\ndef answer(")
    part = program.parts["proj.llm.classify"]
    assert part.path is not None and part.path.endswith("llm.py") and part.line == 10
    site = program.call_sites["proj.llm.classify"][0]
    assert site.caller == "proj.helpers.triage" and site.line == 20
    assert "> 20 |     label = classify(text)" in site.text


# -- render ----------------------------------------------------------------------------------------


def test_render_orders_by_relevance(program: ProgramSource) -> None:
    text = program.render()
    order = [
        "# Entry point: proj.main.run",
        "## proj.llm.classify is called from:",
        "# lm_function proj.llm.classify",
        "# type proj.models.Label",
        "# helper proj.helpers.triage",
        "# constant proj.config.LABELS",
    ]
    positions = [text.index(marker) for marker in order]
    assert positions == sorted(positions)
    assert "omitted" not in text
    # each lm_function: call sites, then definition, then its types
    assert text.index("## proj.llm.answer is called from:") < text.index("# lm_function proj.llm.answer")
    assert text.index("# lm_function proj.llm.answer") < text.index("# type proj.models.Citation")


def test_render_budget_drops_least_relevant_first(program: ProgramSource) -> None:
    full = program.render()
    budget = len(full) // 4 // 2
    cut = program.render(max_tokens=budget)
    assert len(cut) <= budget * 4
    assert "# Entry point: proj.main.run" in cut
    assert "# lm_function proj.llm.classify" in cut
    assert "# constant proj.config.LABELS" not in cut  # constants go before lm_functions
    note = re.search(r"# \[omitted to fit \d+ tokens: (.*)\]", cut)
    assert note is not None and "constants" in note.group(1)


def test_render_tiny_budget_truncates_the_entry(program: ProgramSource) -> None:
    cut = program.render(max_tokens=60)
    assert len(cut) <= 240
    assert cut.startswith("# Entry point: proj.main.run")
    assert "(truncated)" in cut and "omitted" in cut


# -- hashes ----------------------------------------------------------------------------------------


def _hashes(main: types.ModuleType) -> dict[str, str]:
    llm = sys.modules[main.__name__.rsplit(".", 1)[0] + ".llm"]
    fns = {"classify": llm.classify, "answer": llm.answer, "summarize": llm.summarize}
    fns["priority"] = llm.Triage.priority
    hashes = {name: signature_hash(fn) for name, fn in fns.items()}
    hashes["program"] = analyze(main.run).program_hash
    return hashes


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return _hashes(load_variant(tmp_path_factory.mktemp("base")))


def test_hashes_are_stable_and_short(baseline: dict[str, str], proj: types.ModuleType) -> None:
    assert all(re.fullmatch(r"[0-9a-f]{16}", h) for k, h in baseline.items() if k != "program")
    assert re.fullmatch(r"[0-9a-f]{64}", baseline["program"])
    assert len(set(baseline.values())) == len(baseline)
    assert _hashes(proj) == baseline  # the same code under another package name
    assert proj.helpers.classify.signature_hash == baseline["classify"]


UNCHANGED = {
    "body": {"llm.py": [('given style."""\n    ...', 'given style."""\n    raise NotImplementedError')]},
    "other function": {"helpers.py": [("return text.strip()[:MAX_LEN]", "return text[:MAX_LEN].strip()")]},
    "formatting": {
        "llm.py": [
            (
                "def classify(ticket: str) -> Label:",
                "# a comment\ndef classify(\n    ticket : str,  # the ticket\n) -> Label :",
            ),
            ("@lm_function(max_retries=3)", "@lm_function( max_retries = 3 )"),
        ],
        "models.py": [
            (
                'Label = Literal["billing", "bug", "feature"]',
                "Label = Literal[\n  'billing', 'bug',\n  'feature',\n]",
            )
        ],
    },
    "unreached code": {
        "main.py": [('return helpers.unused_helper("x")', 'return helpers.unused_helper("y")')],
        "models.py": [("    value: int", "    value: int\n    other: str = ''")],
        "config.py": [("UNUSED_CONSTANT = 42", "UNUSED_CONSTANT = 43")],
    },
}


@pytest.mark.parametrize("edit", list(UNCHANGED))
def test_signature_hash_ignores(edit: str, baseline: dict[str, str], tmp_path: Path) -> None:
    hashes = _hashes(load_variant(tmp_path, UNCHANGED[edit]))
    assert {k: v for k, v in hashes.items() if k != "program"} == {
        k: v for k, v in baseline.items() if k != "program"
    }
    program_changes = hashes["program"] != baseline["program"]
    assert program_changes == (edit in ("body", "other function")), edit


CHANGED = {
    "docstring": ({"llm.py": [("by its topic.", "by its main topic.")]}, {"classify"}),
    "annotation": (
        {"llm.py": [("def classify(ticket: str)", "def classify(ticket: str | None)")]},
        {"classify"},
    ),
    "parameter": (
        {"llm.py": [("def classify(ticket: str)", 'def classify(ticket: str, lang: str = "en")')]},
        {"classify"},
    ),
    "default": ({"llm.py": [("style: Style = Style.SHORT", "style: Style = Style.LONG")]}, {"summarize"}),
    "decorator argument": ({"llm.py": [("max_retries=3", "max_retries=4")]}, {"answer"}),
    "function name": (
        {
            "llm.py": [
                ("def classify(", "def categorize("),
                ("\n\n@lm_function(max", "\nclassify = categorize\n\n\n@lm_function(max"),
            ]
        },
        {"classify"},
    ),
    "model field": ({"models.py": [("    quote: str", "    quote: str\n    page: int = 0")]}, {"answer"}),
    "literal alias": ({"models.py": [('"feature"]', '"feature", "other"]')]}, {"classify"}),
    "enum member": ({"models.py": [('HIGH = "high"', 'HIGH = "high"\n    URGENT = "urgent"')]}, {"priority"}),
}


@pytest.mark.parametrize("edit", list(CHANGED))
def test_signature_hash_changes(edit: str, baseline: dict[str, str], tmp_path: Path) -> None:
    edits, changed = CHANGED[edit]
    hashes = _hashes(load_variant(tmp_path, edits))
    differing = {k for k in baseline if hashes[k] != baseline[k]}
    assert differing == changed | {"program"}


def test_signature_hash_without_source() -> None:
    def define(doc: str) -> lmprog.LMFunction:
        module = types.ModuleType("repl_like")
        code = f'''
from lmprog import lm_function
@lm_function
def guess(x: str) -> str:
    """{doc}"""
'''
        exec(code, module.__dict__)
        return module.guess

    first, again, other = define("Guess."), define("Guess."), define("Guess twice.")
    assert re.fullmatch(r"[0-9a-f]{16}", signature_hash(first))
    assert signature_hash(first) == signature_hash(again) != signature_hash(other)


# -- code without source -----------------------------------------------------------------------


@pytest.fixture
def repl_module() -> Iterator[types.ModuleType]:
    module = types.ModuleType("repl_defined")
    exec(
        textwrap.dedent(
            '''
            from lmprog import lm_function

            @lm_function
            def guess(x: str) -> str:
                """Guess the hidden word."""

            def run(x: str) -> str:
                return guess(x)
            '''
        ),
        module.__dict__,
    )
    sys.modules[module.__name__] = module
    yield module
    del sys.modules[module.__name__]


def test_entry_without_source_is_a_clear_error(repl_module: types.ModuleType) -> None:
    with pytest.raises(UsageError, match=r"repl_defined\.run.*no source code"):
        analyze(repl_module.run)


def test_callee_without_source_degrades(
    repl_module: types.ModuleType, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = tmp_path / "repl_app.py"
    app.write_text("import repl_defined\n\n\ndef main(x: str) -> str:\n    return repl_defined.guess(x)\n")
    sys.path.insert(0, str(tmp_path))
    try:
        module = importlib.import_module("repl_app")
    finally:
        sys.path.remove(str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="lmprog.source"):
        result = analyze(module.main)
    assert result.functions == [repl_module.guess]
    assert result.call_graph == {"repl_app.main": ["repl_defined.guess"], "repl_defined.guess": []}
    source = result.sources["repl_defined.guess"]
    assert "def guess(x: str) -> str:" in source and "Guess the hidden word." in source
    assert any("repl_defined.guess" in r.getMessage() for r in caplog.records)
    assert result.warnings and "repl_defined.guess" in result.warnings[0]
    assert "Guess the hidden word." in result.render()


# -- __main__ scripts ------------------------------------------------------------------------------


def test_main_script() -> None:
    script = FIXTURES / "scripts" / "main_app.py"
    run = f"import runpy; runpy.run_path({str(script)!r}, run_name='__main__')"
    out = subprocess.run([sys.executable, "-c", run], capture_output=True, text=True, timeout=120, check=True)
    data = json.loads(out.stdout)
    assert data["entry"] == "__main__.main"
    assert data["functions"] == ["proj.llm.classify", "__main__.reply"]
    assert data["call_graph"]["__main__.main"] == ["__main__.reply", "proj.llm.classify"]
    assert data["constants"] == ["__main__.TONE"]
    assert "# classify first, then answer in the house tone" in data["render"]
    assert "# type proj.models.Label" in data["render"]
    assert re.fullmatch(r"[0-9a-f]{16}", data["hash"])


# -- more call patterns ------------------------------------------------------------------------

PATTERNS = '''
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional

from lmprog import lm_function


@lm_function
async def ask(question: str) -> str:
    """Ask a question."""


@lm_function
def tag(text: str, n: int = 3) -> list[str]:
    """Tag the text."""


def _by_tag(x: str) -> list[str]:
    return tag(x)


def _by_length(x: str) -> int:
    return len(x)


HANDLERS = {"tag": _by_tag, "length": _by_length}
tag5 = functools.partial(tag, n=5)


class Bot:
    @classmethod
    def make(cls) -> Bot:
        return cls()

    @staticmethod
    def helper(x: str) -> list[str]:
        return tag5(x)

    def go(self, x: str) -> list[str]:
        return Bot.helper(x)


@dataclass
class Config:
    bot: Bot


async def main(kind: str, cfg: Optional[Config] = None) -> object:
    answer = await ask(kind)
    out = HANDLERS[kind](answer)
    if cfg is not None:
        out = cfg.bot.go(answer)
    return Bot.make(), out
'''


def test_dispatch_tables_partials_static_class_methods_and_async(tmp_path: Path) -> None:
    (tmp_path / "patterns_app.py").write_text(PATTERNS)
    sys.path.insert(0, str(tmp_path))
    try:
        module = importlib.import_module("patterns_app")
    finally:
        sys.path.remove(str(tmp_path))
    result = analyze(module.main)
    graph = result.call_graph
    assert graph["patterns_app.main"] == [
        "patterns_app.Bot.go",  # cfg: Optional[Config], Config.bot: Bot
        "patterns_app.Bot.make",  # a classmethod
        "patterns_app._by_length",  # both functions of the dispatch table
        "patterns_app._by_tag",
        "patterns_app.ask",  # awaited
    ]
    assert graph["patterns_app.Bot.go"] == ["patterns_app.Bot.helper"]  # a staticmethod
    assert graph["patterns_app.Bot.helper"] == ["patterns_app.tag"]  # through functools.partial
    assert result.functions == [module.ask, module.tag]
    assert "patterns_app.HANDLERS" in result.constants
    assert {"patterns_app.Config", "patterns_app.Bot"} <= set(result.types)


# -- normalization -----------------------------------------------------------------------------


def test_canonical_text_ignores_formatting_not_meaning() -> None:
    from lmprog.source._canon import canonical_text

    def same(a: str, b: str) -> bool:
        return canonical_text(textwrap.dedent(a)) == canonical_text(textwrap.dedent(b))

    assert same(
        """
        def f(a, b=0x1F):  # a comment
            '''Doc.'''
            return a + b
        """,
        """
        def f(
            a,
            b = 31,
        ):
            \"\"\"Doc.
            \"\"\"

            return (
                a + b
            )
        """,
    )
    assert same("if x: y = [1, 2,]\n", "if x:\n    y = [\n        1,\n        2,\n    ]\n")
    assert same("x = f'{a}!'\n", 'x = f"{a}!"\n')
    assert not same("x = (1,)\n", "x = (1)\n")  # a tuple is not an int
    assert not same("y = x[a,]\n", "y = x[a]\n")
    assert not same("p = 'a '\n", "p = 'a'\n")  # string content is meaning
    assert not same("def f(a=1): pass\n", "def f(a=2): pass\n")


CALLABLE = '''
from lmprog import lm_function


@lm_function
def shout(text: str) -> str:
    """Say it louder."""


@lm_function
def whisper(text: str) -> str:
    """Say it softer."""


class Pipeline:
    """A callable object whose steps are set on the instance."""

    def __init__(self, step) -> None:
        self.step = step

    def __call__(self, text: str) -> str:
        return self.step(text)

    def run(self, text: str) -> str:
        return self(text)
'''


def test_callable_objects_and_bound_methods_use_the_instance(tmp_path: Path) -> None:
    (tmp_path / "callable_app.py").write_text(CALLABLE)
    sys.path.insert(0, str(tmp_path))
    try:
        module = importlib.import_module("callable_app")
    finally:
        sys.path.remove(str(tmp_path))
    loud, soft = module.Pipeline(module.shout), module.Pipeline(module.whisper)
    assert analyze(loud).functions == [module.shout]  # self.step is read from the instance
    assert analyze(soft).functions == [module.whisper]
    assert analyze(soft.run).call_graph["callable_app.Pipeline.run"] == ["callable_app.Pipeline.__call__"]
    with pytest.raises(UsageError, match="lambda"):
        analyze(lambda text: module.shout(text))
