"""A read-only connection to an axmon database and the argument checks every query shares."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

from processor.errors import ConfigError
from processor.store.db import (
    DatabaseError,
    open_read_only,
)
from processor.urls import DbLocation, db_location, display_url

Row = dict[str, Any]


class Reader:
    """A read-only connection to an axmon database: raises :class:`processor.store.db.DatabaseError`
    when the database is missing or not an axmon database. Use as a context manager, or call
    :meth:`close`."""

    def __init__(self, db_path: DbLocation) -> None:
        self.path = db_location(db_path)
        self._conn = open_read_only(self.path)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _query(self, sql: str, params: Sequence[Any] = (), *, as_rows: bool = True) -> list[Any]:
        """All rows of one statement (``sqlite3.Row``, or plain tuples unless ``as_rows``);
        SQLite's errors (a locked, corrupt or foreign file) become :class:`DatabaseError`."""
        try:
            cursor = self._conn.cursor()
            if not as_rows:
                cursor.row_factory = None
            return cursor.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise DatabaseError(f"{display_url(str(self.path))}: {exc}") from exc

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return [dict(row) for row in self._query(sql, params)]

    def _tuples(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._query(sql, params, as_rows=False)


def prefix_end(prefix: str) -> str | None:
    """The least string above every string that starts with ``prefix`` (SQLite compares text
    as UTF-8 bytes, which orders like code points); ``None`` when there is none."""
    for cut in range(len(prefix) - 1, -1, -1):
        point = ord(prefix[cut]) + 1
        point += 0x800 if 0xD800 <= point <= 0xDFFF else 0  # no surrogates in UTF-8
        if point <= 0x10FFFF:
            return prefix[:cut] + chr(point)
    return None


def check_range(start: int, end: int) -> None:
    for name, value in (("start", start), ("end", end)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be epoch milliseconds (an integer), not {value!r}")
    if start >= end:
        raise ConfigError(f"the range is empty: start {start} is not before end {end}")


def check_limit(limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"the limit must be a whole number of at least 1, not {limit!r}")


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'

