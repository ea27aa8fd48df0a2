"""The SQLite database: schema, migrations and connections. The sink writes it; the query API
reads it (read-only).

The tables of the original design keep their columns, so existing readers keep working:
``workflow_executions_monitor``, ``workflow_step_executions`` and ``performance_metrics``.
axmon adds ``metric_rollups`` (a window per series), ``metric_rollups_hourly`` (the windows of
a series that lie inside one hour, merged: a coarser tier for long queries, kept by the sink in
the same transaction as the windows), ``metric_rollups_daily`` (the hourly rows of a series in one
UTC day, merged, kept the same way), the trigger-kept counts ``metric_rollup_day_counts`` (window
rows per day and series) and ``metric_counts`` (raw samples per type and tenant), ``workflow_stats`` (per-tenant counters kept by the sink
in the same transaction as the execution rows), ``dead_letters`` and the sink's own
``sink_offsets``. ``PRAGMA user_version`` holds the schema version; opening a
database for writing migrates it.

Since schema 8 the metric tables are views over a compact layout (``series``, ``samples``,
``rollup_windows``, ``rollup_hours``, ``rollup_days``: :mod:`processor.store.schema_layout`,
written through :mod:`processor.store.series`). Since schema 9 the execution tables are views over
``names``, ``executions`` and ``steps`` (:mod:`processor.store.schema_execs`, written through
:mod:`processor.store.executions`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import orjson

from processor.errors import AxmonError, ConfigError
from processor.folds.sketch_codec import encode_json
from processor.store.conn import Connection
from processor.store.daily import rebuild_daily
from processor.store.pgconn import open_pg_for_writing, open_pg_read_only
from processor.store.schema import EXECUTION_COLUMNS as EXECUTION_COLUMNS
from processor.store.schema import LOG_COLUMNS as LOG_COLUMNS
from processor.store.schema import MIGRATIONS as MIGRATIONS
from processor.store.schema import SCHEMA_VERSION as SCHEMA_VERSION
from processor.store.schema import SINK_DERIVED_TIMES as SINK_DERIVED_TIMES
from processor.store.schema import SINK_STATUS as SINK_STATUS
from processor.store.schema import SINK_TABLES as SINK_TABLES
from processor.store.schema import STEP_COLUMNS as STEP_COLUMNS
from processor.store.schema import split_statements
from processor.store.schema_execs import EXECS_VERSION
from processor.store.schema_types import TYPE_TIER_VERSION, TYPE_WINDOWS_VERSION
from processor.store.series import event_id, series_key_of
from processor.store.sqltext import DAY_MS as DAY_MS  # re-exported: the schema's periods
from processor.store.sqltext import HOUR_MS as HOUR_MS
from processor.store.sqltext import upsert_sql as upsert_sql
from processor.store.type_tier import rebuild_types
from processor.store.type_windows import rebuild_type_windows
from processor.urls import DbLocation, display_url


class DatabaseError(AxmonError):
    """The database is missing, unreadable, or newer than this axmon."""


def _configure(conn: sqlite3.Connection) -> sqlite3.Connection:
    conn.row_factory = sqlite3.Row
    return conn


def open_for_writing(path: DbLocation) -> Connection:
    """Open (creating if needed) and migrate; WAL mode, ``synchronous=NORMAL``. Transactions
    are explicit (``BEGIN`` ... ``COMMIT``). A PostgreSQL URL opens that database instead
    (:mod:`processor.store.pgconn`), its schema created or brought up to date."""
    if isinstance(path, str):
        return _open_pg(path, for_writing=True)
    if path.parent and not path.parent.exists():
        raise ConfigError(f"cannot create {path}: the folder {path.parent} does not exist")
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA busy_timeout = 30000")
        migrate(conn)
        conn.execute(SINK_STATUS)
        conn.execute(SINK_DERIVED_TIMES)
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(f"{path}: {exc}") from exc
    return _configure(conn)


def open_read_only(path: DbLocation) -> Connection:
    """A read-only connection; a missing database is an error, not a new empty file."""
    if isinstance(path, str):
        return _open_pg(path, for_writing=False)
    if not path.exists():
        raise DatabaseError(f"no database at {path} (run 'axmon sink --db {path}' first, or pass --db)")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30.0)
        conn.execute("PRAGMA query_only = ON")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(f"{path}: {exc}") from exc
    if version == 0:
        raise DatabaseError(f"{path} is not an axmon database")
    if version > SCHEMA_VERSION:
        raise DatabaseError(f"{path} has schema version {version}; this axmon knows up to {SCHEMA_VERSION}")
    return _configure(conn)


def _open_pg(url: str, *, for_writing: bool) -> Connection:
    try:
        if for_writing:
            return open_pg_for_writing(url, MIGRATIONS, SCHEMA_VERSION, (SINK_STATUS, SINK_DERIVED_TIMES))
        return open_pg_read_only(url, SCHEMA_VERSION)
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(f"{display_url(url)}: {exc}") from exc


def migrate(conn: sqlite3.Connection, up_to: int = SCHEMA_VERSION) -> int:
    """Bring the schema to ``up_to`` (default and at most :data:`SCHEMA_VERSION`; tests stop
    earlier), one transaction per step."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise DatabaseError(f"schema version {version} is newer than this axmon ({SCHEMA_VERSION})")
    for target in range(version + 1, min(up_to, SCHEMA_VERSION) + 1):
        if target >= 6:
            conn.create_function("axmon_sketch_bytes", 1, _sketch_bytes, deterministic=True)
        if target == 8:
            conn.create_function("axmon_series_key", 3, series_key_of, deterministic=True)
        if target in (8, EXECS_VERSION):
            conn.create_function("axmon_event_id", 1, event_id, deterministic=True)
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in split_statements(MIGRATIONS[target]):
                conn.execute(statement)
            if target == 6:  # the daily rows are built in this code's form: from bytes, as bytes
                conn.execute("UPDATE metric_rollups_hourly SET sketch = axmon_sketch_bytes(sketch)")
                rebuild_daily(conn, legacy=True)
            if target == TYPE_TIER_VERSION:  # the per-metric-type tier, from the hourly and daily rows
                rebuild_types(conn)
            if target == TYPE_WINDOWS_VERSION:  # the per-metric-type window tier, from the window rows
                rebuild_type_windows(conn)
            conn.execute(f"PRAGMA user_version = {target}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return max(version, min(up_to, SCHEMA_VERSION))


def _sketch_bytes(stored: str | bytes) -> bytes:
    """A stored sketch in its JSON form as its bytes (bytes are left as they are)."""
    if isinstance(stored, bytes):
        return stored
    try:
        data = orjson.loads(stored)
        return b"" if not data else encode_json(data)
    except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError) as exc:
        raise DatabaseError(f"a stored rollup sketch is not a sketch: {stored[:80]!r} ({exc})") from exc


def transaction(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], None]) -> None:
    """Run ``work`` in one ``BEGIN IMMEDIATE`` transaction: all of it or none of it."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        work(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
