"""The query API: the original WorkflowMonitor and MetricsCollector queries over the sink's
SQLite database, on a read-only connection.

Every row comes back as a plain ``dict`` keyed by column name. Every value is bound as a SQL
parameter. A call given a ``tenant_id`` only ever reads that tenant's rows; ``None`` means all
tenants.

The metric queries and the plan of a range between rollups and raw samples:
:mod:`processor.store.metric_queries`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from processor.store.db import EXECUTION_COLUMNS, LOG_COLUMNS, STEP_COLUMNS
from processor.store.execution_reads import COMPACT, LEGACY
from processor.store.executions import stored_id
from processor.store.metric_queries import MetricQueries
from processor.store.pgconn import PgConnection
from processor.store.reader import Row, check_limit, prefix_end, quote
from processor.store.schema_execs import NAMED_EXECUTION_COLUMNS, NAMED_STEP_COLUMNS, STATUSES, id_of, id_text
from processor.urls import DbLocation

_ALERTS = (
    "SELECT id, rule, kind, severity, status, tenant_id, metric_type, labels, series, execution_id, value, threshold, "
    "partition, pending_at, fired_at, acknowledged_at, acknowledged_by, resolved_at, updated_at FROM alerts"
)


def _alert_row(row: Row) -> Row:
    return {**row, "labels": orjson.loads(row["labels"]) if row.get("labels") else {}}


_DEAD_LETTERS = 'SELECT topic, partition, "offset", reason, detail, timestamp, key, value FROM dead_letters'
_STATS = (
    "SELECT COALESCE(SUM(total), 0), COALESCE(SUM(pending), 0), COALESCE(SUM(running), 0), "
    "COALESCE(SUM(completed), 0), COALESCE(SUM(failed), 0), COALESCE(SUM(cancelled), 0), "
    "COALESCE(SUM(duration_sum), 0), COALESCE(SUM(duration_count), 0) FROM workflow_stats"
)
class Monitor(MetricQueries):
    """Read-only queries over an axmon database: the original WorkflowMonitor and
    MetricsCollector. Use as a context manager, or call :meth:`close`. Raises
    :class:`processor.store.db.DatabaseError` when the database is missing or not an axmon
    database, and :class:`processor.errors.ConfigError` for bad arguments."""

    def __init__(self, db_path: DbLocation, *, hourly: bool | None = None, daily: bool | None = None,
                 types: bool | None = None, windows: bool | None = None) -> None:
        super().__init__(db_path, hourly=hourly, daily=daily, types=types, windows=windows)
        compact = bool(self._tuples("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'executions'"))
        self._reads = COMPACT if compact else LEGACY
        """The execution tables' SQL: schema 9's compact tables, or those before (a database not
        yet migrated, read as it is)."""
        self._name_cache: dict[int | None, str] = {}
        """``names`` id -> text, as read (a name's id never changes)."""

    # -- executions (the original WorkflowMonitor) ----------------------------------------------

    def get_active_executions(self, tenant_id: str | None = None) -> list[Row]:
        """Executions whose status is ``pending`` or ``running``, newest ``started_at`` first
        (then id descending)."""
        # Without statistics (no ANALYZE) SQLite prefers the tenant index, which scans every
        # execution of the tenant; the partial index holds only the active ones.
        sql = f"{self._executions(self._reads.active_hint)} WHERE {self._reads.active}"
        params: list[Any] = []
        if tenant_id is not None:
            sql += f" AND {self._reads.tenant}"
            params.append(tenant_id)
        return self._execution_rows(f"{sql} ORDER BY e.started_at DESC, {self._id('e')} DESC", params)

    def get_execution(self, execution_id: str) -> Row | None:
        """One execution by id, or ``None``; ``metadata`` is parsed from its JSON."""
        rows = self._execution_rows(f"{self._executions()} WHERE e.id = ?", (self._stored(execution_id),))
        return rows[0] if rows else None

    def find_execution_ids(self, prefix: str, limit: int = 2) -> list[str]:
        """The ids of the executions starting with ``prefix``, in order (at most ``limit``);
        range scans of the id index (SQLite: one of the ids stored as text, one of those stored
        as a UUID's bytes)."""
        check_limit(limit)
        sql = f"SELECT id FROM {self._reads.table} WHERE id >= ?"
        params: list[Any] = [prefix]
        if (above := prefix_end(prefix)) is not None:
            sql, params = sql + " AND id < ?", [prefix, above]
        found = [str(r[0]) for r in self._tuples(f"{sql} AND substr(id, 1, ?) = ? ORDER BY id LIMIT ?",
                                                 (*params, len(prefix), prefix, limit))]
        if self._reads.compact and not self._pg and (span := uuid_prefix_span(prefix)) is not None:
            rows = self._tuples(f"SELECT {self._id('e')} FROM executions AS e WHERE e.id BETWEEN ? AND ? "
                                "ORDER BY e.id LIMIT ?", (*span, limit))
            found += [str(r[0]) for r in rows if str(r[0]).startswith(prefix)]
        return sorted(found)[:limit]

    def get_recent_executions(self, limit: int = 100, tenant_id: str | None = None) -> list[Row]:
        """The ``limit`` executions with the newest ``started_at`` (ties: id descending), in
        that order, whatever their status."""
        check_limit(limit)
        order = f"ORDER BY e.started_at DESC, {self._id('e')} DESC LIMIT ?"
        params: list[Any]
        if tenant_id is None:
            sql, params = f"{self._executions()} {order}", [limit]
        else:
            sql, params = f"{self._executions()} WHERE {self._reads.tenant} {order}", [tenant_id, limit]
        return self._execution_rows(sql, params)

    def get_step_executions(self, execution_id: str) -> list[Row]:
        """The steps of an execution (one row per step id; retries update the row), ordered by
        ``started_at``, then id."""
        return self._step_rows(f"{self._reads.steps} WHERE {self._reads.step_of} ORDER BY s.started_at, {self._id('s')}",
                               (self._stored(execution_id),))

    def get_finished_executions(
        self, *, since_ms: int | None = None, after: tuple[int, str] | None = None,
        tenant_id: str | None = None, limit: int = 500,
    ) -> list[Row]:
        """Executions that have ended (completed, failed or cancelled), oldest ``completed_at``
        first (ties: id): those that ended at or after ``since_ms``, and after the
        ``(completed_at, id)`` cursor ``after`` when paging. At most ``limit``."""
        check_limit(limit)
        where = ["e.completed_at IS NOT NULL", self._reads.finished]
        params: list[Any] = []
        if since_ms is not None:
            where.append("e.completed_at >= ?")
            params.append(since_ms)
        if after is not None:
            where.append(f"(e.completed_at > ? OR (e.completed_at = ? AND {self._id('e')} > ?))")
            params += [after[0], after[0], after[1]]
        if tenant_id is not None:
            where.append(self._reads.tenant)
            params.append(tenant_id)
        sql = (f"{self._executions(self._reads.completed_hint)} WHERE {' AND '.join(where)} "
               f"ORDER BY e.completed_at, {self._id('e')} LIMIT ?")
        return self._execution_rows(sql, (*params, limit))

    def get_steps_of(self, execution_ids: list[str]) -> dict[str, list[Row]]:
        """The steps of each execution named (as :meth:`get_step_executions` orders them), by
        execution id; an execution without steps has an empty list."""
        out: dict[str, list[Row]] = {e: [] for e in execution_ids}
        for start in range(0, len(execution_ids), 500):
            chunk = execution_ids[start:start + 500]
            where = self._reads.steps_in.format(",".join("?" * len(chunk)))
            sql = (f"{self._reads.steps} WHERE {where} "
                   f"ORDER BY {self._reads.step_group}, s.started_at, {self._id('s')}")
            for row in self._step_rows(sql, [self._stored(e) for e in chunk]):
                out[row["execution_id"]].append(row)
        return out

    @property
    def _pg(self) -> bool:
        return isinstance(self._conn, PgConnection)

    def _stored(self, id_: str) -> str | bytes:
        """An id as the execution tables store it."""
        return stored_id(self._conn)(id_) if self._reads.compact else id_

    def _id(self, alias: str) -> str:
        """SQL: the text of the stored id of ``alias`` (``e`` or ``s``)."""
        return id_text(f"{alias}.id", pg=self._pg or not self._reads.compact)

    def _executions(self, hint: str = "") -> str:
        """The executions as stored, ``AS e`` (``hint``: an ``INDEXED BY`` clause), for
        :meth:`_execution_rows`."""
        sql = self._reads.executions
        return sql.replace(" AS e", f" AS e {hint}") if hint else sql

    def _execution_rows(self, sql: str, params: Sequence[Any]) -> list[Row]:
        """The rows of ``sql`` (of :meth:`_executions`) as ``workflow_executions_monitor``
        rows, ``metadata`` parsed."""
        rows = self._tuples(sql, params)
        if not self._reads.compact:
            return [_execution(dict(zip(EXECUTION_COLUMNS, r))) for r in rows]
        names = self._names({r[i] for r in rows for i in NAMED_EXECUTION_COLUMNS})
        out = []
        for r in rows:
            row = dict(zip(EXECUTION_COLUMNS, r))
            row["id"] = id_of(r[0])
            for i in NAMED_EXECUTION_COLUMNS:
                row[EXECUTION_COLUMNS[i]] = names.get(r[i])
            row["status"] = STATUSES[r[5]]
            out.append(_execution(row))
        return out

    def _step_rows(self, sql: str, params: Sequence[Any]) -> list[Row]:
        """The rows of ``sql`` (of the steps' ``SELECT``) as ``workflow_step_executions`` rows."""
        rows = self._tuples(sql, params)
        if not self._reads.compact:
            return [dict(zip(STEP_COLUMNS, r)) for r in rows]
        names = self._names({r[i] for r in rows for i in NAMED_STEP_COLUMNS})
        out = []
        for r in rows:
            row = dict(zip(STEP_COLUMNS, r))
            row["id"], row["execution_id"] = id_of(r[0]), id_of(r[1])
            for i in NAMED_STEP_COLUMNS:
                row[STEP_COLUMNS[i]] = names[r[i]]
            row["status"] = STATUSES[r[4]]
            out.append(row)
        return out

    def _names(self, refs: set[int | None]) -> dict[int | None, str]:
        """The texts of these ``names`` ids (a name's id never changes: they are cached)."""
        cache = self._name_cache
        missing = sorted(r for r in refs if r is not None and r not in cache)
        for at in range(0, len(missing), 500):
            chunk = missing[at:at + 500]
            cache.update(self._tuples(f"SELECT id, name FROM names WHERE id IN ({', '.join('?' for _ in chunk)})", chunk))
        return cache

    @property
    def has_logs(self) -> bool:
        """Whether the database has the ``logs`` table (schema 5 on; a read-only connection
        never migrates an older database)."""
        return bool(self._tuples("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'logs'"))

    def get_logs(
        self, *, execution_id: str | None = None, min_severity: int | None = None, since_ms: int | None = None,
        until_ms: int | None = None, grep: str | None = None, tenant_id: str | None = None,
        after_seq: int | None = None, limit: int = 100,
    ) -> list[Row]:
        """The original LogQuery: log records, by level (``min_severity``: an OpenTelemetry
        severity number, e.g. 13 for warn and above), time range (``since_ms`` <= timestamp <
        ``until_ms``), execution, tenant and text (``grep``: case-insensitive substring of the
        message). The newest ``limit`` by time (ties: id), returned oldest first; with
        ``after_seq``, instead the first ``limit`` stored after that ``seq`` (storage order,
        for following). Each row has ``seq`` (its storage order) and ``attributes`` parsed."""
        check_limit(limit)
        where, params = [], []
        for clause, value in (("execution_id = ?", execution_id), ("severity_number >= ?", min_severity),
                              ("timestamp >= ?", since_ms), ("timestamp < ?", until_ms), ("tenant_id = ?", tenant_id),
                              ("rowid > ?", after_seq)):
            if value is not None:
                where.append(clause)
                params.append(value)
        if grep:
            where.append("instr(lower(message), lower(?)) > 0")
            params.append(grep)
        sql = f"SELECT rowid AS seq, {', '.join(LOG_COLUMNS)} FROM logs" + (" WHERE " + " AND ".join(where) if where else "")
        if after_seq is not None:
            rows = self._rows(sql + " ORDER BY rowid LIMIT ?", (*params, limit))
        else:
            rows = self._rows(sql + " ORDER BY timestamp DESC, id DESC LIMIT ?", (*params, limit))[::-1]
        return [{**r, "attributes": orjson.loads(r["attributes"])} for r in rows]

    def last_log_seq(self) -> int:
        """The ``seq`` of the last log record stored (0 when none)."""
        return int(self._tuples("SELECT COALESCE(MAX(rowid), 0) FROM logs")[0][0])

    def get_workflow_stats(self, tenant_id: str | None = None) -> Row:
        """The original WorkflowStats from the per-tenant counters: ``total, pending, running,
        completed, failed, cancelled`` (summed over tenants when ``tenant_id`` is ``None``),
        ``avg_duration`` (ms, over executions with a duration; 0 when none) and
        ``success_rate`` (completed / total in %, rounded to 2 places; 0 when total is 0)."""
        if tenant_id is None:
            (row,) = self._tuples(_STATS)
        else:
            (row,) = self._tuples(f"{_STATS} WHERE tenant_id = ?", (tenant_id,))
        return _stats(row)

    def get_tenant_stats(self) -> list[Row]:
        """:meth:`get_workflow_stats` of every tenant with counters, by ``tenant_id``; each row
        also has its ``tenant_id``."""
        rows = self._tuples(
            "SELECT tenant_id, total, pending, running, completed, failed, cancelled, duration_sum, "
            "duration_count FROM workflow_stats ORDER BY tenant_id"
        )
        return [{"tenant_id": r[0], **_stats(r[1:])} for r in rows]

    # -- operations -----------------------------------------------------------------------------

    def get_dead_letters(self, limit: int = 100, reason: str | None = None) -> list[Row]:
        """The newest ``limit`` dead letters by ``timestamp`` (unknown times last; ties: topic
        and partition ascending, offset descending), optionally of one ``reason``. ``key`` and
        ``value`` are the original bytes (or ``None``)."""
        check_limit(limit)
        order = ' ORDER BY timestamp DESC, topic, partition, "offset" DESC LIMIT ?'
        if reason is None:
            return self._rows(_DEAD_LETTERS + order, (limit,))
        return self._rows(f"{_DEAD_LETTERS} WHERE reason = ?{order}", (reason, limit))

    def get_alerts(self, *, active: bool = False, tenant_id: str | None = None, limit: int = 100) -> list[Row]:
        """Alerts, most recently changed first: every one, or only those ``active`` (pending,
        firing or acknowledged), optionally of one tenant. ``labels`` is a dict."""
        check_limit(limit)
        where, params = [], []
        if active:
            where.append("status_rank < 3")
        if tenant_id is not None:
            where.append("tenant_id = ?")
            params.append(tenant_id)
        sql = _ALERTS + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY updated_at DESC, id LIMIT ?"
        return [_alert_row(r) for r in self._rows(sql, (*params, limit))]

    def get_alert(self, alert_id: str) -> Row | None:
        """One alert with its ``history``: the statuses it reached and when, in order."""
        rows = self._rows(f"{_ALERTS} WHERE id = ?", (alert_id,))
        if not rows:
            return None
        history = self._rows("SELECT status, at FROM alert_history WHERE alert_id = ? ORDER BY at, status", (alert_id,))
        return {**_alert_row(rows[0]), "history": history}

    def find_alert_ids(self, prefix: str, limit: int = 2) -> list[str]:
        """The ids of the alerts starting with ``prefix`` (at most ``limit``)."""
        check_limit(limit)
        rows = self._tuples("SELECT id FROM alerts WHERE substr(id, 1, ?) = ? ORDER BY id LIMIT ?", (len(prefix), prefix, limit))
        return [str(r[0]) for r in rows]

    def counts(self) -> dict[str, int]:
        """Rows per table and view, by name (SQLite's own tables left out)."""
        names = self._tuples(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
            "ORDER BY name"
        )
        return {name: int(self._tuples(f"SELECT COUNT(*) FROM {quote(name)}")[0][0]) for (name,) in names}



def _stats(row: tuple[Any, ...]) -> Row:
    """``(total, pending, running, completed, failed, cancelled, duration_sum, duration_count)``
    as the original WorkflowStats."""
    total, pending, running, completed, failed, cancelled, duration_sum, duration_count = (int(v) for v in row)
    return {
        "total": total, "pending": pending, "running": running, "completed": completed,
        "failed": failed, "cancelled": cancelled,
        "avg_duration": duration_sum / duration_count if duration_count else 0,
        "success_rate": round(completed / total * 100, 2) if total else 0,
    }


def _execution(row: Row) -> Row:
    """An execution row with ``metadata`` parsed (left as text if it is not valid JSON)."""
    raw = row.get("metadata")
    if isinstance(raw, str):
        try:
            row["metadata"] = orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return row


def uuid_prefix_span(prefix: str) -> tuple[bytes, bytes] | None:
    """The least and greatest 16 bytes of the UUIDs whose canonical text starts with ``prefix``
    (``None``: no UUID's text does)."""
    if not prefix or len(prefix) > 36:
        return None
    for at, c in enumerate(prefix):
        if (c != "-") if at in (8, 13, 18, 23) else (c not in "0123456789abcdef"):
            return None
    digits = prefix.replace("-", "")
    return bytes.fromhex(digits.ljust(32, "0")), bytes.fromhex(digits.ljust(32, "f"))
