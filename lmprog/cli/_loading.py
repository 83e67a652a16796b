"""Loading what the command line names: user files as modules, ``file.py:name`` targets, metrics,
data files and ``key=value`` inputs. Every problem becomes a :class:`CLIError` with a message
that names the file (the CLI prints it and exits with status 2)."""

from __future__ import annotations

import importlib
import inspect
import json
import sys
import traceback
import types
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, cast

from lmprog import metrics, settings
from lmprog.data import check_inputs, load_dataset
from lmprog.errors import DatasetError, LmprogError
from lmprog.function import LMFunction
from lmprog.lm import configured_model
from lmprog.optimize import resolve_program

BUILTIN_METRICS = ("exact_match", "f1", "contains")


class CLIError(Exception):
    """A problem with what the user asked for; printed without a traceback, exit status 2."""


def load_module(path: str | Path) -> types.ModuleType:
    """Import a Python file as the module it would be when imported normally.

    A file inside packages (folders with ``__init__.py``) is imported under its dotted name with the
    folder above the top package on ``sys.path``; any other file under its stem with its own folder
    on ``sys.path``. Code under ``if __name__ == "__main__":`` does not run.
    """
    file = Path(path).expanduser()
    if not file.exists():
        raise CLIError(f"{path}: no such file")
    if file.is_dir() or file.suffix != ".py":
        raise CLIError(f"{path}: not a Python file (expected path/to/file.py)")
    file = file.resolve()
    name, root = module_name(file)
    loaded = sys.modules.get(name)
    if loaded is not None:
        loaded_file = getattr(loaded, "__file__", None)
        if loaded_file and Path(loaded_file).resolve() == file:
            return loaded
        raise CLIError(
            f"{path}: its module name {name!r} is already taken by {loaded_file or 'a built-in module'}; "
            "rename the file"
        )
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        return importlib.import_module(name)
    except CLIError:
        raise
    except SystemExit as e:
        raise CLIError(f"{path}: the module called sys.exit({e.code}) while being imported") from e
    except Exception as e:
        raise CLIError(f"cannot import {path}: {type(e).__name__}: {e}{_where(e, root)}") from e


def module_name(file: Path) -> tuple[str, Path]:
    """The dotted module name of ``file`` and the folder to put on ``sys.path`` for it."""
    parts = [file.stem]
    folder = file.parent
    while (folder / "__init__.py").exists() and folder.parent != folder:
        parts.insert(0, folder.name)
        folder = folder.parent
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts), folder


def split_target(spec: str) -> tuple[str, str | None]:
    """``"path/file.py:name"`` -> (path, name); a spec without ``:name`` gives (path, None)."""
    head, sep, tail = spec.rpartition(":")
    if sep and head and tail.replace(".", "_").isidentifier():
        return head, tail
    return spec, None


def load_target(spec: str) -> tuple[types.ModuleType, str | None]:
    path, name = split_target(spec)
    return load_module(path), name


def lm_functions_in(module: types.ModuleType) -> list[LMFunction[..., Any]]:
    """The lm_functions defined in ``module``: at top level and as methods of its classes."""
    found: list[LMFunction[..., Any]] = []

    def add(obj: Any) -> None:
        if isinstance(obj, LMFunction) and obj.signature.module == module.__name__ and obj not in found:
            found.append(obj)

    for obj in list(vars(module).values()):
        add(obj)
        if inspect.isclass(obj) and obj.__module__ == module.__name__:
            for attr in vars(obj).values():
                add(getattr(attr, "__func__", attr))
    return found


def get_lm_function(module: types.ModuleType, name: str | None, spec: str) -> LMFunction[..., Any]:
    """The lm_function ``name`` (``Class.method`` allowed) of ``module``, or a CLIError listing them."""
    choices = ", ".join(fn.signature.qualname for fn in lm_functions_in(module)) or "(none)"
    if name is None:
        raise CLIError(f"{spec}: name the lm_function as {spec}:NAME; lm_functions here: {choices}")
    obj: Any = module
    for part in name.split("."):
        obj = getattr(obj, part, None)
    obj = getattr(obj, "__func__", obj)
    if not isinstance(obj, LMFunction):
        what = "is not an lm_function" if obj is not None else "is not defined"
        raise CLIError(f"{spec}: {name} {what}; lm_functions here: {choices}")
    return obj


def resolve_entry(module: types.ModuleType, name: str | None) -> Callable[..., Any]:
    """The program to run: ``name`` in ``module``, else its only ``@traced`` function."""
    try:
        return resolve_program(module, name)
    except LmprogError as e:
        raise CLIError(f"{module.__file__}: {e}") from e


def load_metric(spec: str, module: types.ModuleType | None = None) -> Callable[..., Any]:
    """``exact_match``/``f1``/``contains``, ``file.py:fn``, ``package.module:fn`` or a name
    defined in the program's own file."""
    if spec in BUILTIN_METRICS:
        metric: Callable[..., Any] = getattr(metrics, spec)
        return metric
    path, name = split_target(spec)
    if name is None:
        if module is not None and callable(getattr(module, spec, None)):
            found: Callable[..., Any] = getattr(module, spec)
            return found
        raise CLIError(
            f"unknown metric {spec!r}: use one of {', '.join(BUILTIN_METRICS)}, file.py:function, "
            "or the name of a function in the program's file"
        )
    if path.endswith(".py"):
        source = load_module(path)
    else:
        try:
            source = importlib.import_module(path)
        except ImportError as e:
            raise CLIError(f"metric {spec}: cannot import {path}: {e}") from e
    loaded = getattr(source, name, None)
    if not callable(loaded):
        raise CLIError(f"metric {spec}: {path} has no function {name!r}")
    return cast(Callable[..., Any], loaded)


def load_rows(path: str, program: Callable[..., Any], what: str) -> list[Any]:
    """The examples of a data file, checked to hold the program's inputs (else a CLIError)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise CLIError(f"--{what} {path}: no such file")
    names, optional = program_inputs(program)
    try:
        return check_inputs(load_dataset(file), names, optional=optional)
    except (DatasetError, LmprogError) as e:
        raise CLIError(f"--{what} {path}: {e}") from e


def program_inputs(program: Callable[..., Any]) -> tuple[list[str], list[str]]:
    """The parameter names a program takes from each row, and those that have defaults."""
    func = getattr(program, "__func__", program)
    if isinstance(func, LMFunction):
        fields = func.signature.inputs
        return [f.name for f in fields], [f.name for f in fields if f.has_default]
    params = [
        p
        for p in inspect.signature(program).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    return [p.name for p in params], [p.name for p in params if p.default is not p.empty]


def parse_inputs(pairs: Sequence[str], fn: LMFunction[..., Any]) -> dict[str, Any]:
    """``["ticket=I was charged", "k=3"]`` -> values; text fields stay text, other fields are
    read as JSON when they parse."""
    fields = {f.name: f for f in fn.signature.inputs}
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CLIError(f"--input {pair!r}: expected NAME=VALUE")
        if key not in fields:
            raise CLIError(
                f"--input {key}: {fn.signature.qualname} has no input {key!r} (inputs: {', '.join(fields)})"
            )
        values[key] = raw if fields[key].annotation is str else _json_or_text(raw)
    return values


def use_model(model: str | None) -> None:
    """``--model``: the LM for every lm_function that names none (overrides the program's own)."""
    if model:
        settings.configure(lm=model)


def model_label() -> str:
    """The model lm_functions use by default here, for display."""
    return configured_model()


def python_files(paths: Iterable[str]) -> tuple[list[Path], list[str]]:
    """The ``.py`` files under ``paths`` that mention lm_function, skipping tests, virtual
    environments, hidden and build folders (a file named explicitly is always taken). Returns the
    files and the paths that do not exist."""
    files: list[Path] = []
    missing: list[str] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_file():
            files.append(path.resolve())
        elif path.is_dir():
            files.extend(_walk(path.resolve()))
        else:
            missing.append(raw)
    unique = sorted(dict.fromkeys(files))
    return [f for f in unique if _mentions_lm_function(f)], missing


_SKIP_DIRS = {"tests", "test", "node_modules", "build", "dist", "site-packages", "venv", "__pycache__"}


def _walk(folder: Path) -> Iterable[Path]:
    for child in sorted(folder.iterdir()):
        if child.is_dir():
            if child.name.startswith(".") or child.name in _SKIP_DIRS or (child / "pyvenv.cfg").exists():
                continue
            yield from _walk(child)
        elif child.suffix == ".py" and not _is_test_file(child.name):
            yield child


def _is_test_file(name: str) -> bool:
    return name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py"


def _mentions_lm_function(file: Path) -> bool:
    try:
        return "lm_function" in file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def _json_or_text(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _where(error: BaseException, root: Path) -> str:
    """`` (file.py, line N)`` for the deepest frame of the error inside the user's folder."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename.startswith(str(root))]
    if not frames:
        return ""
    last = frames[-1]
    return f" ({last.filename}, line {last.lineno})"
