"""Prompt files against hostile input: names that try to leave the prompt folder, YAML alias bombs,
and temporary files left behind by a killed writer."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lmprog import lm_function, settings
from lmprog.errors import PromptFileError
from lmprog.function import LMFunction, State
from lmprog.promptfile import atomic_write_text, load_state, prompt_path, read, write


@pytest.fixture(autouse=True)
def prompt_dir(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "project" / "prompts"
    with settings.context(prompt_dir=folder, cache=False):
        yield folder


def hostile(qualname: str | None = None, module: str | None = None) -> LMFunction:
    def classify(ticket: str) -> str:
        """Classify the ticket."""

    if qualname is not None:
        classify.__qualname__ = qualname
    if module is not None:
        classify.__module__ = module
    return lm_function(classify)


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    ("qualname", "module"),
    [
        ("../../../escaped", None),
        ("a/../../../escaped", None),
        ("classify", "../../escaped"),
        ("..", "..."),
        ("/etc/escaped", None),
        ("classify", "/escaped/abs"),
        ("x\\..\\..\\escaped", None),
    ],
)
def test_a_hostile_name_cannot_leave_the_prompt_folder(
    prompt_dir: Path, tmp_path: Path, qualname: str, module: str | None
) -> None:
    fn = hostile(qualname, module)
    path = prompt_path(fn)
    assert path.parent == prompt_dir
    assert path.resolve().parent == prompt_dir.resolve()
    assert "/" not in path.name and "\\" not in path.name and not path.name.startswith(".")
    if not (qualname + (module or "")).startswith("/") and "/escaped/abs" not in (module or ""):
        before = files_under(tmp_path)
        written = write(fn, State(instruction="Mine."))
        assert written == path and files_under(tmp_path) - before == {path}
        assert load_state(fn) == State(instruction="Mine.")


def test_ordinary_names_keep_their_file_name(prompt_dir: Path) -> None:
    fn = hostile("Tickets.classify_é")
    assert prompt_path(fn) == prompt_dir / f"{fn.signature.module.rsplit('.', 1)[-1]}.Tickets.classify_é.yaml"


def alias_bomb(levels: int, width: int = 9) -> str:
    """A prompt file whose last key expands to ``width ** levels`` strings through aliases."""
    text = 'schema: 1\nfunction: "m:f"\nsignature_hash: x\ninstruction: x\n'
    text += "l0: &l0 [" + ", ".join(['"lol"'] * width) + "]\n"
    for level in range(1, levels):
        text += f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * width) + "]\n"
    return text


def test_a_yaml_alias_bomb_is_refused_naming_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb(levels=4))  # 9**4 = 6561 strings if expanded: harmless if it were
    with pytest.raises(PromptFileError) as info:
        read(path)
    message = str(info.value)
    assert message.startswith(f"{path}:6: ") and "aliases" in message and "*l0" in message


def test_a_written_file_with_shared_values_holds_no_alias_and_reads_back(prompt_dir: Path) -> None:
    shared = {"tags": ["a", "b"]}
    fn = hostile()
    demos = ({"ticket": "t1", "output": "x", "meta": shared}, {"ticket": "t2", "output": "y", "meta": shared})
    path = write(fn, State(instruction="I.", demos=demos))
    text = path.read_text()
    assert "&" not in text and "*" not in text
    assert read(path)["demos"][1]["meta"] == shared


# -- temporary files of killed writers ------------------------------------------------------------
def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def age(path: Path, seconds: float) -> Path:
    past = time.time() - seconds
    os.utime(path, (past, past))
    return path


def make(folder: Path, name: str) -> Path:
    path = folder / name
    path.write_text("partial")
    return path


@pytest.mark.parametrize("operation", ["write", "load"])
def test_stale_temp_files_of_dead_writers_are_removed_on_the_next_write_or_load(
    prompt_dir: Path, operation: str
) -> None:
    fn = hostile()
    target = write(fn, State(instruction="Old."))
    name = target.name
    dead, alive = dead_pid(), os.getpid()
    removed = [
        age(make(prompt_dir, f".{name}.{dead}.0123456789ab.tmp"), 120),  # writer dead for 2 minutes
        age(make(prompt_dir, f".{name}.0123456789ab.tmp"), 2 * 3600),  # old naming, 2 hours old
        age(make(prompt_dir, f".{name}.{alive}.aaaaaaaaaaaa.tmp"), 2 * 3600),  # any writer, 2 hours
    ]
    kept = [
        make(prompt_dir, f".{name}.{alive}.bbbbbbbbbbbb.tmp"),  # a live writer's file
        age(make(prompt_dir, f".{name}.{dead}.cccccccccccc.tmp"), 1),  # too recent to judge
        age(make(prompt_dir, f".{name}.notours.tmp"), 2 * 3600),  # not our naming pattern
        age(make(prompt_dir, f".other.yaml.{dead}.0123456789ab.tmp"), 2 * 3600),  # another file's
        age(make(prompt_dir, "notes.txt"), 2 * 3600),
    ]
    actions: dict[str, Callable[[], object]] = {
        "write": lambda: write(fn, State(instruction="New.")),
        "load": lambda: load_state(fn),
    }
    actions[operation]()
    assert [p.exists() for p in removed] == [False] * len(removed)
    assert [p.exists() for p in kept] == [True] * len(kept)


def test_atomic_write_names_its_temp_file_after_the_writer(tmp_path: Path) -> None:
    target = tmp_path / "a.yaml"
    seen: list[str] = []

    def replace(tmp: str, dest: Path) -> None:
        seen.append(Path(tmp).name)
        os.replace(tmp, dest)

    atomic_write_text(target, "one\n", replace=replace)
    assert len(seen) == 1 and seen[0].startswith(f".a.yaml.{os.getpid()}.") and seen[0].endswith(".tmp")
