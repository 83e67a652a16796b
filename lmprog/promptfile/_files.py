"""Prompt files: the optimized state of an lm_function as a reviewable, committable YAML file.

Why YAML: instructions are prose and demos are records; YAML shows prose as block scalars (no
escaped newlines, one line per line of text, so diffs read like the text) and records as plain
keys, and it has a safe loader that reports line numbers. One file per lm_function, by default in a
``prompts/`` folder next to the function's module (``settings.prompt_dir`` moves them)::

    prompts/tickets.classify.yaml

A file records the ``signature_hash`` of the function it was made for; when the function's
signature or docstring changes the file is stale: calls log a warning naming the file and still use
it, and ``lmprog check`` fails. A function optimized with ``optimizer="knn"`` has a ``knn:``
section besides: the pool its calls retrieve their demos from (:mod:`lmprog.promptfile._pool`).
A state with another prompt layout or label decoding than the defaults records it in ``layout:``
(``transcript`` or ``completion``; :mod:`lmprog.format._layout`), ``decode:`` (``score`` or
``calibrated``) and, for ``calibrated``, ``calibration:`` (the content-free prior per option;
:mod:`lmprog.format._labels`); a file without them has the defaults (``chat``, ``sample``). A
scored function with a ``knn:`` pool may have ``vote:``, the weight of its retrieved demos' labels
in the choice (:mod:`lmprog.format._vote`).
Writes are atomic (a temporary file renamed over the old one) and deterministic: writing the same
state twice gives the same bytes.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from lmprog import settings
from lmprog._fingerprint import to_jsonable
from lmprog.errors import PromptFileError
from lmprog.format import (
    Decode,
    Layout,
    check_decode,
    check_layout,
    check_vote,
    label_options,
    prior_problems,
)
from lmprog.promptfile._atomic import (
    atomic_write_text as atomic_write_text,  # re-exported (cassettes, reports)
)
from lmprog.promptfile._atomic import remove_stale_temps
from lmprog.promptfile._demofit import demo_problems, file_problems
from lmprog.promptfile._pool import DemoPool, pool_from_doc, pool_problems
from lmprog.signature import Signature

logger = logging.getLogger("lmprog.promptfile")

SCHEMA_VERSION = 1
HEADER = "# lmprog prompt file: made by an optimizer; review it and commit it with your code.\n"


@dataclass(frozen=True)
class State:
    """What optimization changes in an lm_function, and what its prompt file holds: its
    instruction and its demonstrations.

    ``instruction=None`` means the docstring's instruction. Each demo maps input and output field
    names to values. With a ``pool`` (:class:`~lmprog.promptfile.DemoPool`), each call's demos
    are the pool's nearest to its inputs instead of ``demos``. ``layout`` is how the prompt is
    laid out (``"chat"``, ``"transcript"``, ``"completion"``); ``decode`` how a categorical
    output is chosen (``"sample"`` a reply, ``"score"`` every option, ``"calibrated"`` every
    option divided by ``calibration``, the content-free prior per option text). ``vote``, with a
    pool and a scoring ``decode``, mixes the retrieved demos' labels into the choice with that
    weight (:mod:`lmprog.format._vote`).
    """

    instruction: str | None = None
    demos: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)
    pool: DemoPool | None = None
    layout: Layout = "chat"
    decode: Decode = "sample"
    calibration: Mapping[str, float] | None = None
    vote: float | None = None

    def __post_init__(self) -> None:
        check_layout(self.layout)  # ValueError naming the choices
        check_decode(self.decode)
        check_vote(self.vote)
        if self.decode == "calibrated" and not self.calibration:
            raise ValueError("decode='calibrated' needs a calibration (the prior per option)")
        if self.vote is not None and (self.pool is None or self.decode == "sample"):
            raise ValueError(
                "vote weighs retrieved demos' labels: it needs a pool and decode score or calibrated"
            )

    def demos_for(self, inputs: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
        """The demos of a call with these input values: retrieved from the pool when there is one."""
        return self.pool.retrieve(inputs) if self.pool is not None else self.demos


class PromptFunction(Protocol):
    """What prompt files read of an lm_function (an :class:`~lmprog.LMFunction` is one; this
    package sits below it and never imports it)."""

    @property
    def signature(self) -> Signature: ...

    @property
    def signature_hash(self) -> str: ...


def function_id(fn: PromptFunction) -> str:
    """``module:qualname`` (a script run as ``__main__`` is named by its file)."""
    module = fn.signature.module or ""
    if module == "__main__":
        file = fn.signature.file
        module = Path(file).stem if file else "__main__"
    return f"{module}:{fn.signature.qualname}"


def prompt_path(fn: PromptFunction, directory: Path | None = None) -> Path:
    """Where ``fn``'s prompt file lives: always a file directly inside the prompt directory.

    The name comes from the function's module and qualname; any character other than letters,
    digits (Unicode ones too), ``_``, ``-`` and ``.`` becomes ``_`` and leading dots are dropped, so a hostile
    ``__qualname__`` or ``__module__`` (``../../etc/x``) cannot name a path outside the folder.
    """
    module, qualname = function_id(fn).split(":", 1)
    name = safe_file_name(f"{module.rsplit('.', 1)[-1]}.{qualname.replace('.<locals>.', '.')}") + ".yaml"
    base = directory or settings.current().prompt_dir
    if base is None:
        file = fn.signature.file
        base = Path(file).resolve().parent / "prompts" if file else Path.cwd() / "prompts"
    path = Path(base) / name
    if path.parent != Path(base) or os.path.isabs(name):  # never true after safe_file_name
        raise PromptFileError(f"{function_id(fn)}: prompt file name {name!r} leaves {base}")
    return path


_UNSAFE = re.compile(r"[^\w.-]")


def safe_file_name(name: str) -> str:
    """``name`` as one plain file name: unsafe characters replaced by ``_``, no leading dot."""
    cleaned = _UNSAFE.sub("_", name).lstrip(".")
    return cleaned or "_"


def render(fn: PromptFunction, state: State, provenance: Mapping[str, Any] | None = None) -> str:
    """The file text for ``fn`` in ``state`` (deterministic)."""
    doc: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "function": function_id(fn),
        "signature_hash": fn.signature_hash,
        "instruction": fn.signature.instruction if state.instruction is None else state.instruction,
        "instruction_optimized": state.instruction is not None,
    }
    if state.layout != "chat":
        doc["layout"] = state.layout
    if state.decode != "sample":
        doc["decode"] = state.decode
    if state.calibration:
        doc["calibration"] = {str(k): float(v) for k, v in state.calibration.items()}
    if state.vote is not None:
        doc["vote"] = float(state.vote)
    doc["demos"] = [to_jsonable(dict(d)) for d in state.demos]
    if state.pool is not None:
        doc["knn"] = state.pool.to_doc()
    if provenance:
        doc["provenance"] = dict(provenance)
    return HEADER + dump_yaml(doc)


def write(
    fn: PromptFunction, state: State, provenance: Mapping[str, Any] | None = None, path: Path | None = None
) -> Path:
    """Write ``fn``'s prompt file atomically; an unchanged state keeps the file's old date."""
    target = path or prompt_path(fn)
    prov = dict(provenance or {})
    if target.exists() and "date" in prov:
        try:
            old = read(target)
            old_prov = dict(old.get("provenance") or {})
            if {k: v for k, v in old_prov.items() if k != "date"} == {
                k: v for k, v in prov.items() if k != "date"
            }:
                prov["date"] = old_prov.get("date", prov["date"])
        except PromptFileError:
            pass
    return atomic_write_text(target, render(fn, state, prov))


def read(path: Path) -> dict[str, Any]:
    """Parse and check a prompt file; a corrupt one raises PromptFileError with path and line."""
    doc = read_yaml(path)
    text = path.read_text(encoding="utf-8")

    def fail(key: str, message: str) -> PromptFileError:
        return PromptFileError(f"{path}:{_line_of(text, key)}: {key}: {message}")

    if doc.get("schema") != SCHEMA_VERSION:
        raise fail("schema", f"unsupported schema version {doc.get('schema')!r} (expected {SCHEMA_VERSION})")
    for key in ("function", "signature_hash", "instruction"):
        if not isinstance(doc.get(key), str):
            raise fail(key, "missing or not a string")
    demos = doc.get("demos", [])
    if not isinstance(demos, list) or not all(isinstance(d, dict) for d in demos):
        raise fail("demos", "must be a list of mappings")
    if "provenance" in doc and not isinstance(doc["provenance"], dict):
        raise fail("provenance", "must be a mapping")
    if "knn" in doc:
        problems = pool_problems(doc["knn"])
        if problems:
            raise fail("knn", "; ".join(problems))
    for key, check in (("layout", check_layout), ("decode", check_decode)):
        if key in doc:
            try:
                check(doc[key])
            except ValueError as e:
                raise fail(key, "must " + str(e).split(" must ", 1)[1]) from None
    if "calibration" in doc:
        problems = prior_problems(doc["calibration"], None)
        if problems:
            raise fail("calibration", "; ".join(problems))
    if doc.get("decode") == "calibrated" and "calibration" not in doc:
        raise fail("decode", "'calibrated' needs a calibration: mapping (the prior per option)")
    if "vote" in doc:
        try:
            check_vote(doc["vote"])
        except ValueError as e:
            raise fail("vote", "must " + str(e).split(" must ", 1)[1]) from None
        if "knn" not in doc or doc.get("decode", "sample") == "sample":
            raise fail(
                "vote", "weighs retrieved demos' labels: it needs a knn: pool and decode: score or calibrated"
            )
    return doc


def read_yaml(path: Path, what: str = "prompt file") -> dict[str, Any]:
    """A YAML mapping from ``path``; anything else raises PromptFileError with the path and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise PromptFileError(f"{path}: cannot read {what}: {e}") from e
    try:
        doc = yaml.load(text, Loader=_Loader)  # a SafeLoader that refuses aliases
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise PromptFileError(f"{path}{line}: invalid YAML in {what}: {problem}") from e
    except RecursionError as e:  # the YAML parser recurses once per nesting level
        raise PromptFileError(f"{path}: invalid YAML in {what}: nested too deeply") from e
    if not isinstance(doc, dict):
        raise PromptFileError(f"{path}:1: a {what} is a YAML mapping, got {type(doc).__name__}")
    return doc


def dump_yaml(doc: Any) -> str:
    """YAML as lmprog writes it: keys in order, multi-line strings as ``|`` block scalars."""
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def load_state(fn: PromptFunction, path: Path | None = None) -> State | None:
    """``fn``'s state from its prompt file, or None when it has none. Warns when the file is stale."""
    target = path or prompt_path(fn)
    remove_stale_temps(target)
    if not target.exists():
        return None
    doc = read(target)
    if doc["function"] != function_id(fn):
        raise PromptFileError(
            f"{target}:{_line_of(target.read_text(), 'function')}: made for {doc['function']}, not "
            f"{function_id(fn)}"
        )
    if doc["signature_hash"] != fn.signature_hash:
        logger.warning(
            "%s is stale: %s changed since it was optimized (hash %s, now %s); re-run the optimizer "
            "(lmprog check fails on it)",
            target,
            function_id(fn),
            doc["signature_hash"],
            fn.signature_hash,
        )
    problems = _demo_problems(fn, target, doc)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise PromptFileError(
            f"{problems[0]}{more}; the demos must fit {function_id(fn)}: fix them, or delete the file "
            "or re-run lmprog optimize"
        )
    decoding = _decoding_problem(fn, target, doc)
    if decoding:
        raise PromptFileError(decoding)
    optimized = doc.get("instruction_optimized", True)
    return State(
        instruction=doc["instruction"] if optimized else None,
        demos=tuple(doc.get("demos") or ()),
        pool=pool_from_doc(doc["knn"]) if "knn" in doc else None,
        layout=doc.get("layout", "chat"),
        decode=doc.get("decode", "sample"),
        calibration=dict(doc["calibration"]) if "calibration" in doc else None,
        vote=float(doc["vote"]) if "vote" in doc else None,
    )


def _decoding_problem(fn: PromptFunction, target: Path, doc: Mapping[str, Any]) -> str | None:
    """Why the file's ``decode``/``calibration`` cannot work for ``fn`` (None when they can)."""
    options = label_options(fn.signature)
    text = target.read_text(encoding="utf-8")
    if doc.get("decode", "sample") != "sample" and options is None:
        return (
            f"{target}:{_line_of(text, 'decode')}: decode: {doc['decode']!r} scores the options of a "
            f"single Literal, Enum or bool output; {function_id(fn)} has none (use decode: sample)"
        )
    if "calibration" in doc:
        problems = prior_problems(doc["calibration"], options)
        if problems:
            return f"{target}:{_line_of(text, 'calibration')}: calibration: {'; '.join(problems)}"
    return None


def status(fn: PromptFunction, path: Path | None = None) -> str:
    """``"ok"``, ``"stale"``, ``"missing"`` or ``"corrupt: <why>"`` for ``lmprog check``."""
    target = path or prompt_path(fn)
    if not target.exists():
        return "missing"
    try:
        doc = read(target)
    except PromptFileError as e:
        return f"corrupt: {e}"
    if doc["function"] != function_id(fn):
        return f"corrupt: {target}: made for {doc['function']}, not {function_id(fn)}"
    problems = _demo_problems(fn, target, doc)
    decoding = _decoding_problem(fn, target, doc)
    if problems or decoding:
        return "corrupt: " + "; ".join([*problems, *([decoding] if decoding else [])])
    return "ok" if doc["signature_hash"] == fn.signature_hash else "stale"


def _demo_problems(fn: PromptFunction, target: Path, doc: Mapping[str, Any]) -> list[str]:
    """Every demo of the file (its ``demos`` and its ``knn`` pool) that does not fit ``fn``."""
    problems = list(file_problems(fn.signature, target, doc.get("demos") or []))
    knn = doc.get("knn")
    if isinstance(knn, Mapping):
        for index, demo in enumerate(knn.get("pool") or []):
            problems += [
                f"{target}:{_line_of(target.read_text(encoding='utf-8'), 'knn')}: knn pool demo {index + 1}: "
                f"{problem.message}"
                for problem in demo_problems(fn.signature, demo)
            ]
        unknown = [f for f in knn.get("fields") or () if f not in fn.signature.input_names]
        if unknown:
            problems.append(f"{target}: knn: fields {unknown} are not inputs of {function_id(fn)}")
    return problems


def _line_of(text: str, key: str) -> int:
    for i, line in enumerate(text.splitlines(), 1):
        if line.startswith(f"{key}:"):
            return i
    return 1


class _Loader(yaml.SafeLoader):
    """YAML's safe loader without aliases: a ``*name`` reference to an ``&name`` anchor is refused.

    Files lmprog writes never hold one, and each alias can repeat a whole subtree, so a few
    hundred bytes of nested aliases (an "alias bomb") would expand to gigabytes on load.
    """

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None,
                None,
                f"YAML aliases (*{event.anchor}) are not allowed; write the value out in full",
                event.start_mark,
            )
        node: yaml.Node | None = super().compose_node(parent, index)
        return node


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as ``|`` block scalars, so instructions and demos diff line by line;
    a value repeated by reference is written out again, never as an alias (reading refuses them)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _present_str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    style = "|" if "\n" in data and not any(c in data for c in "\r\t") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _present_str)
