"""Fixtures every test folder shares: the store on both of its databases.

``db`` (or ``db_at``) runs a test once on SQLite and once on PostgreSQL: ``db("t.db")`` is where that test's
database is (a file in ``tmp_path``, or a fresh schema on the session's PostgreSQL server, which
:mod:`tests.pg` starts on first use and stops at the end; it fails the session, never skips,
when it cannot).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pg import DbAt, PgServer, start_postgres


@pytest.fixture(scope="session")
def postgres() -> Iterator[PgServer]:
    try:
        server = start_postgres()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_at(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> DbAt:
    if backend == "sqlite":
        return lambda name: tmp_path / name
    server: PgServer = request.getfixturevalue("postgres")
    made: dict[str, str] = {}

    def at(name: str) -> str:
        if name not in made:
            made[name] = server.fresh()
        return made[name]

    return at


@pytest.fixture
def db(db_at: DbAt) -> DbAt:
    """``db_at`` by a shorter name (a module may define its own ``db`` over ``db_at``)."""
    return db_at
