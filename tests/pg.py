"""A real PostgreSQL 15 for the tests: Debian's binaries, a cluster in a temporary directory.

``scripts/ensure-postgres.sh`` (``make test-deps``) installs the package when it is missing.
As root the server runs as the ``postgres`` user (``initdb`` refuses root). Without the binaries,
or when the server does not start, the session fails (the tests never skip).
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from processor.store.pgconn import PgConnection
from processor.urls import DbLocation

DbAt = Callable[[str], DbLocation]
"""The ``db`` fixture: ``db(name)`` is where the test's database ``name`` is (the same name,
the same database)."""

BIN = Path("/usr/lib/postgresql/15/bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgServer:
    """One running cluster; :meth:`fresh` gives each test its own schema in it."""

    base: Path
    port: int
    as_user: tuple[str, ...]

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def fresh(self) -> str:
        """The URL of a new, empty schema (the search path of every session that uses it)."""
        schema = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")  # type: ignore[call-overload]
        return f"{self.url}?options=-csearch_path%3D{schema}"

    def stop(self) -> None:
        subprocess.run([*self.as_user, str(BIN / "pg_ctl"), "-D", str(self.base / "data"), "-m", "immediate", "stop"],
                       capture_output=True, check=False)
        shutil.rmtree(self.base, ignore_errors=True)


def start_postgres() -> PgServer:
    """initdb and start a cluster on a free port of 127.0.0.1; raises ``RuntimeError`` (with
    the server's log) when it cannot."""
    if not (BIN / "initdb").exists():
        raise RuntimeError(f"{BIN / 'initdb'} is missing: run scripts/ensure-postgres.sh (make test-deps) as root")
    base = Path(tempfile.mkdtemp(prefix="axmon-pg-"))
    as_user: tuple[str, ...] = ()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        as_user = ("runuser", "-u", "postgres", "--")
    port = _free_port()
    server = PgServer(base, port, as_user)
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    steps = (
        [str(BIN / "initdb"), "-D", str(base / "data"), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C"],
        [str(BIN / "pg_ctl"), "-D", str(base / "data"), "-o", options, "-l", str(base / "log"), "-w", "-t", "60", "start"],
    )
    for step in steps:
        done = subprocess.run([*as_user, *step], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            log = (base / "log").read_text(errors="replace")[-2000:] if (base / "log").exists() else ""
            server.stop()
            raise RuntimeError(f"PostgreSQL did not start ({step[0]}): {done.stderr.strip()[-2000:]}\n{log}")
    return server


def connect(location: DbLocation) -> sqlite3.Connection | PgConnection:
    """A plain read-write connection to a test's database (tuples for rows), on either backend."""
    if isinstance(location, str):
        return PgConnection(location, read_only=False)
    return sqlite3.connect(location)
