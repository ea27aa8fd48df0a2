"""Queries a browsing client needs beyond the original API: executions filtered and paged by a
cursor, alerts filtered by state and severity, the metric types and label values present, and
token and cost totals per tenant and workflow. Same contract as :class:`processor.store.queries.Monitor`
(read-only, every value bound, ``tenant_id`` keeps to that tenant's rows)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from processor.store.queries import (
    _ALERTS,
    Monitor,
    _alert_row,
)
from processor.store.reader import Row, check_limit

EXECUTION_STATUSES = ("pending", "running", "completed", "failed", "cancelled")
ALERT_STATUSES = ("pending", "firing", "acknowledged", "resolved")
SEVERITIES = ("info", "warning", "error", "critical")


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page of executions ended: the last row's ``started_at`` and ``id`` (the order
    is ``started_at`` descending, then ``id`` descending, a total order)."""

    started_at: int
    id: str

    def encode(self) -> str:
        return f"{self.started_at}:{self.id}"

    @classmethod
    def decode(cls, text: str) -> Cursor:
        head, sep, tail = text.partition(":")
        if not sep or not head.lstrip("-").isdigit() or not tail:
            raise ValueError(f"not a cursor: {text!r}")
        return cls(int(head), tail)


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[Row]
    next_cursor: str | None


class Browser(Monitor):
    def __enter__(self) -> Browser:
        return self

    def list_executions(
        self,
        *,
        tenant_id: str | None = None,
        status: str | None = None,
        workflow_id: str | None = None,
        start: int | None = None,
        end: int | None = None,
        after: Cursor | None = None,
        limit: int = 50,
    ) -> Page:
        """Executions with ``start <= started_at < end``, newest first (ties: id descending);
        ``after`` continues a previous page. ``next_cursor`` is ``None`` on the last page."""
        check_limit(limit)
        reads = self._reads
        where, params = _equal((reads.tenant, tenant_id), (reads.status, None if status is None else reads.status_value(status)),
                               (reads.workflow, workflow_id))
        if start is not None:
            where.append("e.started_at >= ?")
            params.append(start)
        if end is not None:
            where.append("e.started_at < ?")
            params.append(end)
        if after is not None:
            where.append(f"(e.started_at < ? OR (e.started_at = ? AND {self._id('e')} < ?))")
            params += [after.started_at, after.started_at, after.id]
        sql = self._executions() + (" WHERE " + " AND ".join(where) if where else "")
        order = f"ORDER BY e.started_at DESC, {self._id('e')} DESC LIMIT ?"
        rows = self._execution_rows(f"{sql} {order}", (*params, limit + 1))
        more = len(rows) > limit
        rows = rows[:limit]
        last = rows[-1] if more else None
        return Page(rows, Cursor(int(last["started_at"]), str(last["id"])).encode() if last else None)

    def list_alerts(
        self, *, tenant_id: str | None = None, status: str | None = None, severity: str | None = None, limit: int = 100
    ) -> list[Row]:
        """Alerts most recently changed first, optionally of one tenant, status and severity."""
        check_limit(limit)
        where, params = _equal(("tenant_id = ?", tenant_id), ("status = ?", status), ("severity = ?", severity))
        sql = _ALERTS + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY updated_at DESC, id LIMIT ?"
        return [_alert_row(r) for r in self._rows(sql, (*params, limit))]

    def metric_types(self, tenant_id: str | None = None) -> list[str]:
        """The metric types with raw samples or rollup rows (of a tenant), sorted."""
        found: set[str] = set()
        for table in ("performance_metrics", "metric_rollups"):
            sql = f"SELECT DISTINCT metric_type FROM {table}"
            params: Sequence[Any] = ()
            if tenant_id is not None:
                sql, params = sql + " WHERE tenant_id = ?", (tenant_id,)
            found.update(str(r[0]) for r in self._tuples(sql, params))
        return sorted(found)

    def label_values(self, metric_type: str, tenant_id: str | None = None) -> dict[str, list[str]]:
        """Per label name, the values present on ``metric_type``'s rollup series (of a tenant)."""
        sql = "SELECT DISTINCT j.key, j.value FROM metric_rollups AS r, json_each(r.labels) AS j WHERE r.metric_type = ?"
        params: list[Any] = [metric_type]
        if tenant_id is not None:
            sql += " AND r.tenant_id = ?"
            params.append(tenant_id)
        out: dict[str, set[str]] = {}
        for key, value in self._tuples(sql, params):
            out.setdefault(str(key), set()).add(str(value))
        return {k: sorted(v) for k, v in sorted(out.items())}

    def quota_usage(self, start: int, end: int, tenant_id: str | None = None) -> list[Row]:
        """Tokens and cost of the executions started in ``[start, end)``, per tenant and
        workflow (by tenant, then workflow)."""
        sums = "COUNT(*) AS executions, COALESCE(SUM(e.tokens_used), 0) AS tokens_used, COALESCE(SUM(e.cost), 0.0) AS cost"
        where = "e.started_at >= ? AND e.started_at < ?" + ("" if tenant_id is None else f" AND {self._reads.tenant}")
        params: list[Any] = [start, end] + ([] if tenant_id is None else [tenant_id])
        if not self._reads.compact:
            return self._rows(f"SELECT e.tenant_id, e.workflow_id, {sums} FROM workflow_executions_monitor AS e WHERE {where} "
                              "GROUP BY e.tenant_id, e.workflow_id ORDER BY e.tenant_id, e.workflow_id", params)
        return self._rows(  # grouped by the names' ids, then named: no join per execution
            "SELECT t.name AS tenant_id, w.name AS workflow_id, g.executions, g.tokens_used, g.cost FROM "
            f"(SELECT e.tenant_ref, e.workflow_ref, {sums} FROM executions AS e WHERE {where} "
            "GROUP BY e.tenant_ref, e.workflow_ref) AS g JOIN names AS t ON t.id = g.tenant_ref "
            "JOIN names AS w ON w.id = g.workflow_ref ORDER BY t.name, w.name", params)

    def usage_buckets(self, start: int, end: int, interval_ms: int, tenant_id: str | None = None) -> list[Row]:
        """Executions, tokens and cost of the executions started in ``[start, end)``, per bucket
        ``[start + k interval_ms, ...)`` that has any, in time order (``timestamp``: the bucket's
        start)."""
        sql = (
            "SELECT (e.started_at - ?) / ? AS k, COUNT(*) AS executions, COALESCE(SUM(e.tokens_used), 0) AS tokens_used, "
            f"COALESCE(SUM(e.cost), 0.0) AS cost FROM {self._reads.table} AS e WHERE e.started_at >= ? AND e.started_at < ?"
        )
        params: list[Any] = [start, interval_ms, start, end]
        if tenant_id is not None:
            sql += f" AND {self._reads.tenant}"
            params.append(tenant_id)
        rows = self._rows(sql + " GROUP BY k ORDER BY k", params)
        return [{"timestamp": start + int(r.pop("k")) * interval_ms, **r} for r in rows]


def _equal(*filters: tuple[str, Any]) -> tuple[list[str], list[Any]]:
    """Conditions (each binding one parameter) and their parameters, for the filters given (not ``None``)."""
    where = [condition for condition, value in filters if value is not None]
    return where, [value for _, value in filters if value is not None]
