"""A real PostgreSQL server for the tests: initdb + pg_ctl of the Debian package ``postgresql``
(``/usr/lib/postgresql/*/bin``) in a temporary folder, listening on 127.0.0.1 only, with trust
authentication for the user ``lmprog``. PostgreSQL refuses to run as root: as root, the server
runs as the ``postgres`` system user the package creates (through ``runuser``)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

INSTALL_HINT = "apt-get install postgresql (scripts/test.sh does it when run as root)"


class Unavailable(Exception):
    """Why no server could be started here (the tests that need one are skipped with it)."""


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise Unavailable(f"PostgreSQL is not installed: {INSTALL_HINT}")


def _as_user() -> tuple[list[str], str | None]:
    if os.geteuid() != 0:
        return [], None
    try:
        pwd.getpwnam("postgres")
    except KeyError as e:
        raise Unavailable("running as root and there is no `postgres` system user to run the server") from e
    runuser = shutil.which("runuser")
    if runuser is None:
        raise Unavailable("running as root and `runuser` is missing (util-linux)")
    return [runuser, "-u", "postgres", "--"], "postgres"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server; yields the URL of its ``postgres`` database; stops and deletes it after."""
    bin_dir = _bin_dir()
    prefix, user = _as_user()
    root = Path(tempfile.mkdtemp(prefix="lmprog-pg-"))
    data, log = root / "data", root / "server.log"
    if user is not None:
        shutil.chown(root, user=user)
    port = _free_port()

    def run(*args: str) -> None:
        done = subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            text = log.read_text() if log.exists() else ""
            raise Unavailable(f"{' '.join(args[:1])} failed: {done.stderr.strip()} {text[-500:]}")

    try:
        run(
            str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "lmprog", "-E", "UTF8", "--no-sync"
        )
        options = f"-h 127.0.0.1 -p {port} -k {root} -F -c max_connections=200"
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start")
        try:
            yield f"postgresql://lmprog@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run(
                [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                capture_output=True,
                timeout=60,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def new_database(server_url: str) -> str:
    """A new, empty database on the server; its URL."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + f"/{name}"
