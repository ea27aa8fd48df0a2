"""Table-by-table, row-by-row comparison of two axmon databases (minus the sink's bookkeeping).

Used to prove that live processing and a replay produce the same database, and that a sink
killed mid-stream ends where an uninterrupted one does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from processor.store.conn import Connection
from processor.store.db import SINK_TABLES, open_read_only
from processor.store.schema import LAYOUT_TABLES
from processor.urls import DbLocation


@dataclass(frozen=True, slots=True)
class TableDiff:
    table: str
    only_left: tuple[tuple[Any, ...], ...]
    only_right: tuple[tuple[Any, ...], ...]
    left_rows: int
    right_rows: int

    def describe(self, limit: int = 5) -> str:
        lines = [f"{self.table}: {self.left_rows} vs {self.right_rows} rows, "
                 f"{len(self.only_left)} only left, {len(self.only_right)} only right"]
        lines += [f"  < {row}" for row in self.only_left[:limit]]
        lines += [f"  > {row}" for row in self.only_right[:limit]]
        return "\n".join(lines)


def tables(conn: Connection) -> list[str]:
    """The tables and views compared: the compact metric tables through their views (their
    series ids are each database's own)."""
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name")]
    return [n for n in names if n not in SINK_TABLES and n not in LAYOUT_TABLES and n != "schema_version"
            and not n.startswith("sqlite_")]


WALL_CLOCK_ROWS = {
    "alerts": "WHERE kind != 'stale'",
    "alert_history": "WHERE alert_id NOT IN (SELECT id FROM alerts WHERE kind = 'stale')",
}
"""Rows judged on the wall clock (stale-execution alerts), which a replay does not reproduce."""


def rows(conn: Connection, table: str) -> list[tuple[Any, ...]]:
    """The table's rows, sorted; on PostgreSQL without ``logs.rowid`` (SQLite's hidden row id
    made a column), so that a SQLite and a PostgreSQL database compare."""
    where = WALL_CLOCK_ROWS.get(table, "")
    names = [d[0] for d in conn.execute(f'SELECT * FROM "{table}" LIMIT 0').description or ()]
    columns = ", ".join(f'"{n}"' for n in names if n != "rowid")
    return sorted((tuple(r) for r in conn.execute(f'SELECT {columns} FROM "{table}" {where}')), key=repr)


def compare(left: DbLocation, right: DbLocation) -> list[TableDiff]:
    """The tables that differ ([] when the databases hold the same rows)."""
    a, b = open_read_only(left), open_read_only(right)
    try:
        names = sorted(set(tables(a)) | set(tables(b)))
        diffs = []
        for name in names:
            ra = rows(a, name) if name in tables(a) else []
            rb = rows(b, name) if name in tables(b) else []
            if ra != rb:
                sa, sb = set(ra), set(rb)
                diffs.append(TableDiff(name, tuple(sorted(sa - sb, key=repr)), tuple(sorted(sb - sa, key=repr)), len(ra), len(rb)))
        return diffs
    finally:
        a.close()
        b.close()
