"""A SQLite database copied into PostgreSQL in one transaction: how ``axmon replay --swap``
puts a rebuilt database in place when the live store is PostgreSQL.

Readers see the old rows or the new ones, never a mix (one transaction). The tables are emptied
with ``TRUNCATE`` and filled from the file; the counts that PostgreSQL's triggers keep
(``metric_rollup_day_counts``, ``metric_counts``) are not copied but counted again by those
triggers as the rows go in (the series first), ``logs.rowid`` is numbered afresh in the file's
order, the series keep their ids (new ones are numbered after them) and the samples' ids are
the ids of samples, executions and steps copied as text (SQLite keeps a UUID's as its bytes), the names and executions keep their ids too. The sink's
offsets come with the rows: a live sink, stopped first, resumes from them.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from processor.store.db import open_for_writing
from processor.store.pgconn import PgConnection
from processor.store.schema_execs import id_text

TRIGGER_KEPT = frozenset({"metric_rollup_day_counts", "metric_counts"})
TEXT_IDS = frozenset({"samples", "executions", "steps"})
"""The tables whose ``id`` SQLite keeps as a UUID's bytes and PostgreSQL as its text."""
_CHUNK = 2_000


def copy_into(source: Path, url: str) -> dict[str, int]:
    """Replace every table of the PostgreSQL database at ``url`` by the rows of the SQLite file
    ``source`` (same schema version); the rows copied per table."""
    lite = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    pg = open_for_writing(url)
    if not isinstance(pg, PgConnection):
        raise TypeError(f"{url} is not a PostgreSQL database")
    try:
        tables = sorted((r[0] for r in lite.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'")),
            key=lambda t: (t != "series", t))  # the series first: the triggers that count rows read them
        copied: dict[str, int] = {}
        with pg.raw.transaction():
            pg.raw.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables))  # type: ignore[call-overload]
            for table in tables:
                if table in TRIGGER_KEPT:
                    continue
                columns = [r[1] for r in lite.execute(f'PRAGMA table_info("{table}")')]
                names = ", ".join(f'"{c}"' for c in columns)
                insert = f'INSERT INTO "{table}"({names}) VALUES ({", ".join("%s" for _ in columns)})'
                picked = ", ".join(id_text("p.id") if table in TEXT_IDS and c == "id" else f'p."{c}"' for c in columns)
                keyed = lite.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
                order = "" if "WITHOUT ROWID" in keyed.upper() else " ORDER BY rowid"  # else in key order
                cursor = lite.execute(f'SELECT {picked} FROM "{table}" AS p{order}')
                copied[table] = 0
                while rows := cursor.fetchmany(_CHUNK):
                    with pg.raw.cursor() as out:
                        out.executemany(insert, rows)  # type: ignore[arg-type]
                    copied[table] += len(rows)
            for numbered, column in (("series", "id"), ("names", "id"), ("executions", "seq")):
                if numbered in tables:  # the ids copied: new rows are numbered after them
                    pg.raw.execute(f"SELECT setval(pg_get_serial_sequence('{numbered}', '{column}'), "  # type: ignore[call-overload]
                                   f"COALESCE(MAX({column}), 0) + 1, false) FROM {numbered}")
        return copied
    finally:
        pg.close()
        lite.close()
