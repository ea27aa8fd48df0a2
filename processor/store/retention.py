"""Retention: ``axmon cleanup`` deletes what is older than its retention, in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from processor.store.conn import Connection
from processor.store.daily import refresh_daily
from processor.store.hourly import hour_of, refresh_hourly
from processor.store.pgconn import PgConnection
from processor.store.sinkdb import apply_stats_deltas, contribute
from processor.store.type_tier import refresh_types


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
    what is left (or deleted), and the daily rows of their days from those."""
    executions_before = now_ms - retention.executions_ms
    report: dict[str, int] = {}
    conn.execute("BEGIN IMMEDIATE")
    try:
        if isinstance(conn, PgConnection):  # sinks sharing the database clean up one at a time
            conn.lock("axmon cleanup")
        doomed = conn.execute(
            "SELECT id, tenant_id, status, duration FROM workflow_executions_monitor "
            "WHERE started_at < ? AND status NOT IN ('pending', 'running')",
            (executions_before,),
        ).fetchall()
        deltas: dict[str, list[int]] = {}
        for row in doomed:
            contribute(deltas, row[1], row[2], row[3], -1)
        ids = [(row[0],) for row in doomed]
        report["steps"] = _deleted(conn, "DELETE FROM workflow_step_executions WHERE execution_id = ?", ids)
        report["executions"] = _deleted(conn, "DELETE FROM workflow_executions_monitor WHERE id = ?", ids)
        apply_stats_deltas(conn, deltas)
        report["samples"] = conn.execute(
            "DELETE FROM samples WHERE timestamp < ?", (now_ms - retention.samples_ms,)
        ).rowcount
        rollups_before = now_ms - retention.rollups_ms
        touched = {
            (series, hour_of(start))
            for series, start in conn.execute(
                "SELECT series, window_start FROM metric_rollups WHERE window_end < ?", (rollups_before,)
            )
        }
        report["rollups"] = conn.execute("DELETE FROM rollup_windows WHERE window_end < ?", (rollups_before,)).rowcount
        changes = refresh_hourly(conn, touched)  # a tier row never claims a deleted window
        refresh_daily(conn, changes)
        refresh_types(conn, changes)
        report["dead_letters"] = conn.execute(
            "DELETE FROM dead_letters WHERE timestamp < ?", (now_ms - retention.samples_ms,)
        ).rowcount
        report["logs"] = conn.execute("DELETE FROM logs WHERE timestamp < ?", (now_ms - retention.samples_ms,)).rowcount
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return CleanupReport(**report)


def _deleted(conn: Connection, sql: str, params: list[tuple[Any, ...]]) -> int:
    before = conn.total_changes
    conn.executemany(sql, params)
    return conn.total_changes - before
