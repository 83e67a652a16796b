"""Prompt files: the optimized state of an lm_function as a reviewable, committable YAML file.

Why YAML: instructions are prose and demos are records; YAML shows prose as block scalars (no
escaped newlines, one line per line of text, so diffs read like the text) and records as plain
keys, and it has a safe loader that reports line numbers. One file per lm_function, by default in a
``prompts/`` folder next to the function's module (``settings.prompt_dir`` moves them)::

    prompts/tickets.classify.yaml

A file records the ``signature_hash`` of the function it was made for; when the function's
signature or docstring changes the file is stale: calls log a warning naming the file and still use
it, and ``lmprog check`` fails. Writes are atomic (a temporary file renamed over the old one) and
deterministic: writing the same state twice gives the same bytes.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from lmprog import settings
from lmprog._atomic import atomic_write_text as atomic_write_text  # re-exported (cassettes, reports)
from lmprog._atomic import remove_stale_temps
from lmprog._demofit import file_problems
from lmprog.errors import PromptFileError
from lmprog.function import LMFunction, State

if TYPE_CHECKING:
    from lmprog.optimize import OptimizationResult

logger = logging.getLogger("lmprog.promptfile")

SCHEMA_VERSION = 1
HEADER = "# lmprog prompt file: made by an optimizer; review it and commit it with your code.\n"


def function_id(fn: LMFunction) -> str:
    """``module:qualname`` (a script run as ``__main__`` is named by its file)."""
    module = fn.signature.module or ""
    if module == "__main__":
        file = fn.signature.file
        module = Path(file).stem if file else "__main__"
    return f"{module}:{fn.signature.qualname}"


def prompt_path(fn: LMFunction, directory: Path | None = None) -> Path:
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


def render(fn: LMFunction, state: State, provenance: Mapping[str, Any] | None = None) -> str:
    """The file text for ``fn`` in ``state`` (deterministic)."""
    from lmprog.prompt import to_jsonable

    doc: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "function": function_id(fn),
        "signature_hash": fn.signature_hash,
        "instruction": fn.signature.instruction if state.instruction is None else state.instruction,
        "instruction_optimized": state.instruction is not None,
        "demos": [to_jsonable(dict(d)) for d in state.demos],
    }
    if provenance:
        doc["provenance"] = dict(provenance)
    return HEADER + dump_yaml(doc)


def write(
    fn: LMFunction, state: State, provenance: Mapping[str, Any] | None = None, path: Path | None = None
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


def load_state(fn: LMFunction, path: Path | None = None) -> State | None:
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
    problems = file_problems(fn.signature, target, doc.get("demos") or [])
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise PromptFileError(
            f"{problems[0]}{more}; the demos must fit {function_id(fn)}: fix them, or delete the file "
            "or re-run lmprog optimize"
        )
    optimized = doc.get("instruction_optimized", True)
    return State(instruction=doc["instruction"] if optimized else None, demos=tuple(doc.get("demos") or ()))


def status(fn: LMFunction, path: Path | None = None) -> str:
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
    problems = file_problems(fn.signature, target, doc.get("demos") or [])
    if problems:
        return "corrupt: " + "; ".join(problems)
    return "ok" if doc["signature_hash"] == fn.signature_hash else "stale"


def save_result(result: OptimizationResult) -> list[Path]:
    """Write the prompt file of every function an optimization chose a state for."""
    from lmprog import __version__

    prov_common: dict[str, Any] = {
        "optimizer": result.optimizer,
        "score": None if result.score is None else round(result.score, 2),
        "baseline_score": None if result.baseline_score is None else round(result.baseline_score, 2),
        "seed": result.seed,
        "model": _model_name(),
        "lm_calls": result.usage.calls,
        "lm_requests": result.usage.requests,
        "cost": round(result.usage.cost, 6),
        "lmprog_version": __version__,
        "date": _dt.date.today().isoformat(),
    }
    if result.details.get("validation"):  # what makes the recorded score comparable (saving.py)
        prov_common["validation"] = dict(result.details["validation"])
    return [write(fn, state, prov_common) for fn, state in result.states.items()]


def export_dotprompt(
    fn: LMFunction, path: str | os.PathLike[str] | None = None, *, model: str | None = None
) -> Path:
    """Write ``fn``'s prompt, with its current instruction and demos, as a Dotprompt ``.prompt`` file.

    The YAML front matter holds the model (``model``, else the function's own LM, else the one
    recorded in its prompt file), the sampling temperature, the input and output schemas
    (Picoschema when every field fits it, else JSON Schema) and the lmprog function id and
    signature hash under ``metadata.lmprog``. The Handlebars body renders the same messages as
    lmprog: ``{{role "system"}}`` with the instruction, one user/model turn per demo, then the
    input turn, where string inputs are ``{{name}}`` and other inputs ``{{json name}}``.
    Default path: the prompt file's, with the suffix ``.prompt``.
    """
    from lmprog.prompt import render_messages

    target = Path(path) if path is not None else prompt_path(fn).with_suffix(".prompt")
    sig, state = fn.signature, fn.state
    sentinels = {f.name: f"@@lmprog-input-{i}@@" for i, f in enumerate(sig.inputs)}
    messages = render_messages(sig, sentinels, instruction=state.instruction, demos=state.demos)
    roles = {"system": "system", "user": "user", "assistant": "model"}
    body = []
    for message in messages:
        text = message["content"].replace("{{", "\\{{")
        for field in sig.inputs:
            helper = "{{%s}}" if field.annotation is str else "{{json %s}}"
            text = text.replace(sentinels[field.name], helper % field.name)
        body.append(f'{{{{role "{roles.get(message["role"], message["role"])}"}}}}\n{text}\n')
    front: dict[str, Any] = {"name": prompt_path(fn).stem}
    chosen = model or _function_model(fn)
    if chosen:
        front["model"] = chosen
    if fn.temperature is not None:
        front["config"] = {"temperature": fn.temperature}
    front["input"] = {
        "schema": _object_schema([(f.name, f.annotation, f.description, f.has_default) for f in sig.inputs])
    }
    front["output"] = _output_spec(fn)
    front["metadata"] = {"lmprog": {"function": function_id(fn), "signature_hash": fn.signature_hash}}
    return atomic_write_text(target, f"---\n{dump_yaml(front)}---\n" + "\n".join(body))


def _function_model(fn: LMFunction) -> str | None:
    if isinstance(fn.lm, str):
        return fn.lm
    if fn.lm is not None:
        return str(getattr(fn.lm, "model", "")) or None
    target = prompt_path(fn)
    if target.exists():
        try:
            model = (read(target).get("provenance") or {}).get("model")
        except PromptFileError:
            return None
        return str(model) if model else None
    return None


def _output_spec(fn: LMFunction) -> dict[str, Any]:
    sig = fn.signature
    if sig.multi_output:
        fields = [(f.name, f.annotation, f.description, f.has_default) for f in sig.outputs]
        return {"format": "json", "schema": _object_schema(fields)}
    annotation = sig.outputs[0].annotation
    if annotation is str:
        return {"format": "text"}
    schema = _json_schema(annotation)
    structured = schema.get("type") in ("object", "array") or "$ref" in schema
    pico = _pico(schema)
    return {"format": "json" if structured else "text", "schema": pico if isinstance(pico, str) else schema}


_PICO_SCALARS = ("string", "number", "integer", "boolean", "null")


def _object_schema(fields: list[tuple[str, Any, str, bool]]) -> dict[str, Any]:
    """Picoschema for these fields when every one fits it, else a JSON Schema object."""
    props: dict[str, Any] = {}
    defs: dict[str, Any] = {}
    pico: list[tuple[str | None, Any]] = []
    for name, annotation, description, optional in fields:
        schema = _json_schema(annotation)
        defs.update(schema.pop("$defs", {}))
        if description:
            schema["description"] = description
        props[name] = schema
        pico.append(_pico_field(name + ("?" if optional else ""), schema))
    if all(key is not None for key, _ in pico):
        return {str(key): value for key, value in pico}
    out: dict[str, Any] = {"type": "object", "properties": props}
    required = [name for name, _, _, optional in fields if not optional]
    if required:
        out["required"] = required
    if defs:
        out["$defs"] = defs
    return out


def _pico_field(key: str, schema: Mapping[str, Any]) -> tuple[str | None, Any]:
    desc = schema.get("description")
    enum = schema.get("enum")
    if enum is not None and all(isinstance(v, str) for v in enum):
        return (f"{key}(enum, {desc})" if desc else f"{key}(enum)"), list(enum)
    scalar = _pico(schema)
    if isinstance(scalar, str):
        return key, f"{scalar}, {desc}" if desc else scalar
    if schema.get("type") == "array":
        item = _pico(schema.get("items") or {})
        if isinstance(item, str):
            return (f"{key}(array, {desc})" if desc else f"{key}(array)"), item
    return None, None


def _pico(schema: Mapping[str, Any]) -> str | None:
    kind = schema.get("type")
    if kind in _PICO_SCALARS and "enum" not in schema:
        return str(kind)
    return "any" if not schema else None


def _json_schema(annotation: Any) -> dict[str, Any]:
    from pydantic import TypeAdapter

    try:
        schema = TypeAdapter(annotation).json_schema()
    except Exception:  # a type pydantic cannot describe: accept anything
        return {}
    schema.pop("title", None)
    return schema


def _model_name() -> str:
    lm = settings.current().lm
    if lm is None:
        return os.environ.get("LMPROG_MODEL", "") or "local"
    return lm if isinstance(lm, str) else getattr(lm, "model", repr(lm))


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
            event = self.peek_event()
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
