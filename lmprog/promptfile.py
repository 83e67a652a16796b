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

import contextlib
import datetime as _dt
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from lmprog import settings
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


def atomic_write_text(target: Path, text: str, *, replace: Callable[[str, Path], None] = os.replace) -> Path:
    """Write ``text`` to ``target`` atomically: a temporary file in the same folder, flushed to
    disk, then renamed over ``target`` by ``replace``. Readers see the old or the new file, never a
    part; after a failure the old file is intact and the temporary file removed. An unchanged
    file is not touched."""
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    if target.exists() and target.read_text(encoding="utf-8") == text:
        return target
    fd, tmp = _create_temp(target)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _create_temp(target: Path) -> tuple[int, str]:
    """A new temporary file next to ``target`` with the permissions ``target`` has, or those of a
    newly created file (``0o666`` less the umask; ``tempfile.mkstemp`` would make it ``0o600``)."""
    try:
        mode: int | None = stat.S_IMODE(target.stat().st_mode)
    except OSError:
        mode = None
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp = str(target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
        break
    if mode is not None:
        with contextlib.suppress(OSError):  # not the file's owner: the new file keeps the default
            os.chmod(tmp, mode)
    return fd, tmp


#: a temporary file whose writer (pid) is gone is removed once it is this old (seconds) ...
STALE_DEAD_WRITER = 60.0
#: ... and any of our temporary files once it is this old (a write takes milliseconds; the pid
#: may have been reused, or the writer ran on another machine sharing the folder)
STALE_ANY_WRITER = 3600.0


def remove_stale_temps(target: Path) -> list[Path]:
    """Remove the temporary files a killed writer of ``target`` left behind; the removed paths.

    Only files named as :func:`atomic_write_text` names them (``.<name>.<pid>.<hex>.tmp``, or
    ``.<name>.<hex>.tmp`` from older versions) are candidates, and only when their writer process
    is dead and the file is over a minute old, or when the file is over an hour old. Failures
    (a read-only folder, a file removed meanwhile) are ignored: cleaning is best effort.
    """
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(?:(\d+)\.)?[0-9a-f]{{12}}\.tmp")
    removed: list[Path] = []
    try:
        candidates = list(target.parent.iterdir())
    except OSError:
        return removed
    now = time.time()
    for path in candidates:
        match = pattern.fullmatch(path.name)
        if match is None:
            continue
        try:
            age = now - path.stat().st_mtime
            pid = match.group(1)
            dead = pid is None or not _process_alive(int(pid))
            if age > STALE_ANY_WRITER or (dead and age > STALE_DEAD_WRITER):
                path.unlink()
                removed.append(path)
                logger.info("removed %s, left by an interrupted write", path)
        except OSError:
            continue
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, OverflowError):  # exists but not ours, or not checkable
        return True
    return True


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
