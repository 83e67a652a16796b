"""Atomic file writes (a temporary file renamed over the target) and the removal of the
temporary files a killed writer leaves behind. Used for prompt files, cassettes and reports."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger("lmprog.promptfile")


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
