"""PostgreSQL as the store: a connection with the part of ``sqlite3``'s interface the store uses.

:class:`PgConnection` runs the store's statements (SQLite's dialect, translated by
:mod:`processor.store.pgdialect`) on psycopg in autocommit mode, so transactions are explicit
(``BEGIN`` ... ``COMMIT``, savepoints) as on SQLite with ``isolation_level=None``. Rows index
by position and by name (:class:`PgRow`, like ``sqlite3.Row``); ``numeric`` results (``SUM``
of integers) come back as ``int`` when whole, else ``float``, as SQLite gives them. Errors are
raised as ``sqlite3``'s DB-API exception classes (an integrity or data error as
``IntegrityError``/``DataError``, a missing table, a lost server or a deadlock as
``OperationalError``), so the store's handlers treat both databases alike.

The schema is the SQLite schema's translation (:func:`open_pg_for_writing` creates or
upgrades it, one transaction under an advisory lock, so several sinks may start together);
``schema_version`` holds its version where SQLite has ``PRAGMA user_version``.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Self

import psycopg
from psycopg import errors as pg_errors
from psycopg.adapt import Loader
from psycopg.rows import RowMaker, tuple_row

from processor.store.pgdialect import FUNCTIONS, PG_EXTRAS, PG_REPLACED, schema_statements, translate
from processor.urls import display_url

_LOCK = 0x61786D6F6E  # "axmon": the advisory lock around schema changes


class PgRow(tuple[Any, ...]):
    """A row by position (``row[0]``) or by column name (``row["id"]``); ``dict(row)`` works."""

    _names: dict[str, int]

    def __new__(cls, values: Sequence[Any], names: dict[str, int]) -> Self:
        row = super().__new__(cls, values)
        row._names = names
        return row

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return super().__getitem__(self._names[key])
        return super().__getitem__(key)

    def keys(self) -> list[str]:
        return list(self._names)


def _pg_rows(cursor: psycopg.Cursor[Any]) -> RowMaker[PgRow]:
    names = {d.name: i for i, d in enumerate(cursor.description or ())}
    return lambda values: PgRow(values, names)


class _Number(Loader):
    """``numeric`` as SQLite returns sums: an ``int`` when whole, else a ``float``."""

    def load(self, data: Any) -> int | float:
        text = bytes(data)
        return int(text) if text.lstrip(b"-").isdigit() else float(text)


_OPERATIONAL = frozenset({"08", "25", "40", "42", "53", "55", "57"})
"""SQLSTATE classes SQLite reports as ``OperationalError``: connection, transaction state
(a write in a read-only session), rollback (deadlock, serialization), syntax or a missing
object, resources, lock not available, operator intervention."""


class TransientError(sqlite3.OperationalError):
    """A transaction PostgreSQL ended as deadlocked or unserializable: it was rolled back, and
    the same transaction may simply be tried again."""


def _sqlite_error(exc: psycopg.Error) -> sqlite3.Error:
    message = str(exc).strip()
    if (exc.sqlstate or "").startswith("40"):
        return TransientError(message)
    if isinstance(exc, pg_errors.IntegrityError):
        return sqlite3.IntegrityError(message)
    if isinstance(exc, psycopg.DataError):
        return sqlite3.DataError(message)
    if isinstance(exc, psycopg.OperationalError) or (exc.sqlstate or "")[:2] in _OPERATIONAL:
        return sqlite3.OperationalError(message)
    if isinstance(exc, psycopg.InterfaceError):
        return sqlite3.InterfaceError(message)
    if isinstance(exc, psycopg.ProgrammingError):
        return sqlite3.ProgrammingError(message)
    return sqlite3.DatabaseError(message)


class PgCursor:
    """A cursor of :class:`PgConnection`: ``execute`` returns it; iterate or fetch its rows."""

    def __init__(self, conn: PgConnection) -> None:
        self._conn = conn
        self._cursor = conn.raw.cursor(row_factory=_pg_rows)
        self._rows: list[Any] | None = None
        self.rowcount = -1

    @property
    def row_factory(self) -> object:
        return self._cursor.row_factory

    @row_factory.setter
    def row_factory(self, factory: object) -> None:
        """``None``: plain tuples (as for ``sqlite3``); anything else: :class:`PgRow`."""
        self._cursor.row_factory = tuple_row if factory is None else _pg_rows  # type: ignore[assignment]

    def execute(self, sql: str, parameters: Sequence[Any] | Mapping[str, Any] = ()) -> Self:
        pragma = re.match(r"\s*PRAGMA\s+(\w+)", sql, re.I)
        if pragma is not None:
            self._rows = self._conn.pragma(pragma.group(1).lower())
            return self
        self._rows = None
        if self._conn.trace is not None:
            self._conn.trace(f"{sql} -- {list(parameters)!r}")
        try:
            self._cursor.execute(translate(sql), parameters)  # type: ignore[arg-type]
        except psycopg.Error as exc:
            raise _sqlite_error(exc) from exc
        self._counted()
        return self

    def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> Self:
        self._rows = None
        params = list(seq)
        if not params:
            self.rowcount = 0
            return self
        try:
            self._cursor.executemany(translate(sql), params)
        except psycopg.Error as exc:
            raise _sqlite_error(exc) from exc
        self._counted()
        return self

    def _counted(self) -> None:
        self.rowcount = self._cursor.rowcount
        if self._cursor.description is None and self.rowcount > 0:
            self._conn.total_changes += self.rowcount

    @property
    def description(self) -> list[tuple[str, ...]] | None:
        """As DB-API's: a tuple per result column, its name first (``None`` for a statement
        without a result)."""
        found = self._cursor.description
        return None if found is None else [(d.name,) for d in found]

    def fetchone(self) -> Any:
        if self._rows is not None:
            return self._rows.pop(0) if self._rows else None
        return self._cursor.fetchone() if self._cursor.description is not None else None

    def fetchall(self) -> list[Any]:
        if self._rows is not None:
            rows, self._rows = self._rows, []
            return rows
        return self._cursor.fetchall() if self._cursor.description is not None else []

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())

    def close(self) -> None:
        self._cursor.close()


class PgConnection:
    """One PostgreSQL session speaking the store's ``sqlite3`` subset (see the module docstring)."""

    def __init__(self, url: str, *, read_only: bool) -> None:
        self.url = url
        try:
            self.raw = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise sqlite3.OperationalError(f"cannot connect to {display_url(url)}: {str(exc).strip()}") from exc
        self.raw.adapters.register_loader("numeric", _Number)
        if read_only:
            self.raw.execute("SET default_transaction_read_only = on")
        self.total_changes = 0
        """Rows inserted, updated or deleted through this connection (as ``sqlite3``'s)."""
        self.row_factory: object = PgRow
        self.trace: Callable[[str], object] | None = None

    def set_trace_callback(self, trace: Callable[[str], object] | None) -> None:
        """``trace(statement)`` before each ``execute`` (the SQLite text and its parameters)."""
        self.trace = trace

    def cursor(self) -> PgCursor:
        return PgCursor(self)

    def execute(self, sql: str, parameters: Sequence[Any] | Mapping[str, Any] = ()) -> PgCursor:
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> PgCursor:
        return self.cursor().executemany(sql, seq)

    def close(self) -> None:
        self.raw.close()

    def __del__(self) -> None:
        """Closed when dropped, as ``sqlite3``'s connections are (psycopg would warn)."""
        raw = getattr(self, "raw", None)
        if raw is not None and not raw.closed:
            raw.close()

    def lock(self, name: str) -> None:
        """Lock ``name`` until the transaction ends (an advisory lock)."""
        self.raw.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (name,))

    def lock_partitions(self, keys: Iterable[tuple[str, int]]) -> None:
        """Lock each (topic, partition) until the transaction ends (advisory locks, taken in
        the order given: sorted, so that sinks never wait on each other in a circle)."""
        for topic, partition in keys:
            self.raw.execute("SELECT pg_advisory_xact_lock(hashtext(%s), %s)", (topic, partition))

    def pragma(self, name: str) -> list[Any]:
        """SQLite's pragmas the store reads: ``user_version`` (from ``schema_version``),
        ``quick_check`` ('ok' once the server answers: PostgreSQL checks its own pages); the
        others (journal mode, sync, timeouts) have no meaning here and return nothing."""
        if name == "user_version":
            return [(self.version(),)]
        if name in ("quick_check", "integrity_check"):
            self.raw.execute("SELECT 1")
            return [("ok",)]
        return []

    def version(self) -> int:
        try:
            found = self.raw.execute("SELECT version FROM schema_version").fetchone()
        except pg_errors.UndefinedTable:
            return 0
        except psycopg.Error as exc:
            raise _sqlite_error(exc) from exc
        return int(found[0]) if found else 0


def open_pg_for_writing(url: str, migrations: Mapping[int, str], version: int, always: Sequence[str]) -> PgConnection:
    """Connect and bring the schema to ``version``: each missing version's migration
    (translated) and its :data:`PG_EXTRAS`, then ``always`` (statements safe to run on every
    open) and the functions, in one transaction."""
    conn = PgConnection(url, read_only=False)
    try:
        with conn.raw.transaction():
            conn.raw.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
            conn.raw.execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
            found = conn.version()
            if found > version:
                raise sqlite3.DatabaseError(f"schema version {found} is newer than this axmon ({version})")
            for target in range(found + 1, version + 1):
                steps = PG_REPLACED[target] if target in PG_REPLACED else schema_statements(migrations[target])
                for statement in (*steps, *PG_EXTRAS.get(target, ())):
                    conn.raw.execute(statement)  # type: ignore[call-overload]
            for statement in (*(s for script in always for s in schema_statements(script)), *FUNCTIONS):
                conn.raw.execute(statement)  # type: ignore[call-overload]
            conn.raw.execute("DELETE FROM schema_version")
            conn.raw.execute("INSERT INTO schema_version(version) VALUES (%s)", (version,))
    except psycopg.Error as exc:
        conn.close()
        raise _sqlite_error(exc) from exc
    except BaseException:
        conn.close()
        raise
    return conn


def open_pg_read_only(url: str, version: int) -> PgConnection:
    """A session whose transactions are read-only, on a database of schema ``version`` or older."""
    conn = PgConnection(url, read_only=True)
    found = conn.version()
    if found == 0 or found > version:
        conn.close()
        raise sqlite3.DatabaseError("not an axmon database (run 'axmon sink --db URL' first)" if found == 0 else
                                    f"schema version {found}; this axmon knows up to {version}")
    return conn
