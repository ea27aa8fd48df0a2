"""Retention: ``axmon cleanup`` deletes what is older than its retention, in one transaction."""

from __future__ import annotations

from dataclasses import dataclass

from processor.store.conn import Connection
from processor.store.daily import refresh_daily
from processor.store.executions import apply_stats_deltas, contribute, delete_executions
from processor.store.hourly import hour_of, refresh_hourly
from processor.store.pgconn import PgConnection
from processor.store.schema_execs import ACTIVE_CODES, STATUSES
from processor.store.type_tier import refresh_types
from processor.store.type_windows import rebuild_window_keys


@dataclass(frozen=True, slots=True)
class Retention:
    executions_ms: int = 30 * 86_400_000
    samples_ms: int = 90 * 86_400_000
    rollups_ms: int = 400 * 86_400_000


@dataclass(frozen=True, slots=True)
class CleanupReport:
    executions: int
    steps: int
    samples: int
    rollups: int
    dead_letters: int
    logs: int = 0
    """Log records older than the samples' retention (log records are kept like raw samples)."""


def cleanup(conn: Connection, now_ms: int, retention: Retention = Retention()) -> CleanupReport:
    """Delete what is older than its retention, in one transaction. Finished executions go by
    ``started_at`` (running ones stay), with their steps; the per-tenant counters lose what the
    deleted executions contributed. Raw samples go by ``timestamp``, rollups and dead letters by
    their end / timestamp; the hourly rows of the hours that lost windows are recomputed from
    what is left (or deleted), the daily rows of their days from those, and the per-metric-type rows
(hours, days and windows) of what changed."""
    executions_before = now_ms - retention.executions_ms
    report: dict[str, int] = {}
    conn.execute("BEGIN IMMEDIATE")
    try:
        if isinstance(conn, PgConnection):  # sinks sharing the database clean up one at a time
            conn.lock("axmon cleanup")
        doomed = conn.execute(
            "SELECT e.seq, t.name, e.status, e.duration FROM executions AS e JOIN names AS t ON t.id = e.tenant_ref "
            f"WHERE e.started_at < ? AND e.status NOT IN ({ACTIVE_CODES})",
            (executions_before,),
        ).fetchall()
        deltas: dict[str, list[int]] = {}
        for row in doomed:
            contribute(deltas, row[1], STATUSES[row[2]], row[3], -1)
        report["steps"], report["executions"] = delete_executions(conn, [row[0] for row in doomed])
        apply_stats_deltas(conn, deltas)
        report["samples"] = conn.execute(
            "DELETE FROM samples WHERE timestamp < ?", (now_ms - retention.samples_ms,)
        ).rowcount
        rollups_before = now_ms - retention.rollups_ms
        doomed_windows = conn.execute(
            "SELECT series, window_start, metric_type FROM metric_rollups WHERE window_end < ?", (rollups_before,)
        ).fetchall()
        touched = {(series, hour_of(start)) for series, start, _ in doomed_windows}
        report["rollups"] = conn.execute("DELETE FROM rollup_windows WHERE window_end < ?", (rollups_before,)).rowcount
        changes = refresh_hourly(conn, touched)  # a tier row never claims a deleted window
        refresh_daily(conn, changes)
        refresh_types(conn, changes)
        rebuild_window_keys(conn, sorted({(metric_type, start) for _, start, metric_type in doomed_windows}))
        report["dead_letters"] = conn.execute(
            "DELETE FROM dead_letters WHERE timestamp < ?", (now_ms - retention.samples_ms,)
        ).rowcount
        report["logs"] = conn.execute("DELETE FROM logs WHERE timestamp < ?", (now_ms - retention.samples_ms,)).rowcount
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return CleanupReport(**report)

