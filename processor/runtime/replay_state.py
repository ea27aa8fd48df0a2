"""The tables the cores keep their state in during a replay: memory for what the folds are
working on, a scratch SQLite file for what only a late record would read again.

A core's table holds two kinds of entries. Those the next records work on: open executions,
open windows, late and partition records. And those kept for a stretch of stream time after
the folds are done with them, in case a late record comes for them: a finished execution
within its horizon and its eviction marker after (with its whole fold state, for
``evicted_keep_ms``), a closed window's marker (a derived window whole, for
``derived_keep_ms``). The second kind is what grows with the history, up to hours of stream
time; a :class:`SpillStore` keeps it on disk (``cold`` says which entries are of it), so the
replay's memory holds the first kind only.

It is a :class:`~processor.folds.records.Store` like a dict: the cores fold over it exactly as
over one (the same entries; ``items`` yields the ones in memory first, and no core depends on
that order), only slower for a read of a spilled entry, which is decoded from its JSON (the bytes
:class:`~processor.folds.guard.StagedStore` made for its size check, so spilling costs no
encoding). Keys starting with ``"\\x00"`` (late and partition records) are never spilled. The
store knows which keys it spilled, so a miss (every record looks for its late record; a new
window or execution is looked up before it is made) costs no disk read.

The file is scratch: written without a journal or syncs, in transactions committed by
:meth:`SpillFile.commit` (replay calls it at each sink flush), and deleted when replay ends.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

CACHE_KIB = 16 * 1024
"""The scratch file's page cache (all tables together)."""


def lifecycle_cold(entry: dict[str, Any]) -> bool:
    """A lifecycle entry only a late event reads again: a finished execution (``ts``, within its
    horizon) or an eviction marker."""
    return "evicted" in entry or entry.get("ts") is not None


def metrics_cold(entry: dict[str, Any]) -> bool:
    """A metrics entry only a late sample (or a redelivery) reads again: a closed window's marker."""
    return "closed" in entry


class SpillFile:
    """The scratch SQLite file behind a replay's :class:`SpillStore` s."""

    def __init__(self, path: Path) -> None:
        self.path = path
        for leftover in self.files():
            leftover.unlink(missing_ok=True)
        self.conn = sqlite3.connect(path, isolation_level=None)
        for pragma in ("journal_mode = OFF", "synchronous = OFF", "locking_mode = EXCLUSIVE", "temp_store = MEMORY",
                       f"cache_size = -{CACHE_KIB}"):
            self.conn.execute(f"PRAGMA {pragma}")
        self.conn.execute("BEGIN")
        self._tables = 0

    def files(self) -> list[Path]:
        return [self.path, self.path.with_name(self.path.name + "-journal")]

    def store(self, cold: Callable[[dict[str, Any]], bool]) -> SpillStore:
        """A new, empty table in this file."""
        self._tables += 1
        return SpillStore(self.conn, f"t{self._tables}", cold)

    def commit(self) -> None:
        """End the current transaction (so the cache may drop its pages) and begin the next."""
        self.conn.execute("COMMIT")
        self.conn.execute("BEGIN")

    def close(self) -> None:
        """Close and delete the file."""
        self.conn.close()
        for path in self.files():
            path.unlink(missing_ok=True)


class SpillStore:
    """See the module docstring. Entries are never mutated in place (the cores assign new ones),
    so a hot entry is kept as the very object stored, and the cores' identity-keyed caches hit."""

    def __init__(self, conn: sqlite3.Connection, table: str, cold: Callable[[dict[str, Any]], bool]) -> None:
        self._conn = conn
        self._cold = cold
        self._hot: dict[str, Any] = {}
        self._on_disk: set[str] = set()
        """The keys of the spilled entries: a key not in it costs no disk read (a new window or
        execution is looked up before it is made). As many as the entries on disk, which the
        cores' deadline heaps hold a ``(due, key)`` item of anyway."""
        conn.execute(f"CREATE TABLE {table} (k TEXT PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID")
        self._select = f"SELECT v FROM {table} WHERE k = ?"
        self._update = f"UPDATE {table} SET v = ? WHERE k = ?"
        self._insert = f"INSERT INTO {table} (k, v) VALUES (?, ?)"
        self._delete = f"DELETE FROM {table} WHERE k = ?"
        self._scan = f"SELECT k, v FROM {table}"

    def get(self, key: str) -> Any:
        value = self._hot.get(key)
        if value is not None or key not in self._on_disk:
            return value
        row = self._conn.execute(self._select, (key,)).fetchone()
        return None if row is None else orjson.loads(row[0])

    def __setitem__(self, key: str, value: Any) -> None:
        self.set_encoded(key, orjson.dumps(value), value)

    def set_encoded(self, key: str, raw: bytes, value: Any = None) -> None:
        """Store ``value`` (``raw``: its JSON); the way :class:`~processor.folds.guard.StagedStore` commits."""
        if value is None:
            value = orjson.loads(raw)
        on_disk = self._on_disk
        if self._cold(value) and not key.startswith("\x00"):
            self._hot.pop(key, None)
            if key in on_disk:
                self._conn.execute(self._update, (raw, key))
            else:
                self._conn.execute(self._insert, (key, raw))
                on_disk.add(key)
            return
        if key in on_disk:  # a key is in memory or on disk, never both
            self._drop_spilled(key)
        self._hot[key] = value

    def __delitem__(self, key: str) -> None:
        if self._hot.pop(key, None) is not None:
            return
        if key not in self._on_disk:
            raise KeyError(key)
        self._drop_spilled(key)

    def _drop_spilled(self, key: str) -> None:
        self._conn.execute(self._delete, (key,))
        self._on_disk.discard(key)

    def items(self) -> Iterator[tuple[str, Any]]:
        """Every entry: the hot ones, then the spilled ones (decoded)."""
        yield from list(self._hot.items())
        if self._on_disk:
            for key, raw in self._conn.execute(self._scan):  # no caller writes while it iterates
                yield key, orjson.loads(raw)

    def __len__(self) -> int:
        return len(self._hot) + len(self._on_disk)

    @property
    def spilled(self) -> int:
        """Entries on disk now."""
        return len(self._on_disk)

    @property
    def hot(self) -> int:
        """Entries in memory now."""
        return len(self._hot)
