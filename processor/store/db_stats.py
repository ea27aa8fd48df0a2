"""What a Prometheus scrape of ``axmon serve`` reads off the sink's database: table sizes, the
time of the sink's last write, and executions (count, tokens, cost) per tenant and status."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from processor.store.db import open_read_only
from processor.store.schema_execs import STATUSES
from processor.urls import DbLocation

COUNTED_TABLES = (
    "workflow_executions_monitor", "workflow_step_executions", "performance_metrics", "metric_rollups",
    "metric_rollups_hourly", "metric_rollups_daily", "metric_rollup_day_counts", "metric_counts", "workflow_stats",
    "dead_letters", "alerts", "alert_history",
)
"""The tables whose rows are exported (those a database has: an older schema lacks some)."""
COMPACT_OF = {"workflow_executions_monitor": "executions", "workflow_step_executions": "steps"}
"""The views of schema 9 that hold one row per row of a compact table, counted there."""


@dataclass(frozen=True, slots=True)
class TenantExecutions:
    tenant: str
    status: str
    executions: int
    tokens: int
    cost: float


@dataclass(frozen=True, slots=True)
class DbStats:
    rows: dict[str, int]
    """Table -> rows."""
    last_write_at_ms: int | None
    """When the sink last wrote a batch (``None``: never)."""
    executions: tuple[TenantExecutions, ...]


def read_db_stats(path: DbLocation) -> DbStats:
    """One read of the database (a full count of each table: callers cache it)."""
    conn = open_read_only(path)
    try:
        present = {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
        compact = "executions" in present  # schema 9: count the tables, not their views' joins
        rows = {t: int(conn.execute(f'SELECT count(*) FROM "{COMPACT_OF.get(t, t) if compact else t}"').fetchone()[0])
                for t in COUNTED_TABLES if t in present}
        try:
            written = conn.execute("SELECT last_write_at FROM sink_status WHERE id = 1").fetchone()
        except sqlite3.OperationalError:  # an older database with no sink_status yet
            written = None
        if compact:
            per_tenant = [(t, STATUSES[s], *rest) for t, s, *rest in conn.execute(
                "SELECT t.name, e.status, count(*), coalesce(sum(e.tokens_used), 0), coalesce(sum(e.cost), 0.0) "
                "FROM executions AS e JOIN names AS t ON t.id = e.tenant_ref GROUP BY t.name, e.status"
            ).fetchall()]
        else:
            per_tenant = conn.execute(
                "SELECT tenant_id, status, count(*), coalesce(sum(tokens_used), 0), coalesce(sum(cost), 0.0) "
                "FROM workflow_executions_monitor GROUP BY tenant_id, status"
            ).fetchall()
    finally:
        conn.close()
    return DbStats(rows, None if written is None else int(written[0]),
                   tuple(TenantExecutions(str(t), str(s), int(n), int(k), float(c)) for t, s, n, k, c in per_tenant))
