"""The query API: the original WorkflowMonitor and MetricsCollector queries over the sink's
SQLite database, on a read-only connection.

Every row comes back as a plain ``dict`` keyed by column name. Every value is bound as a SQL
parameter. A call given a ``tenant_id`` only ever reads that tenant's rows; ``None`` means all
tenants.

Metric queries read two tables that hold the same samples: ``performance_metrics`` (raw) and
``metric_rollups`` (one row per series and tumbling window, with a mergeable sketch). A long
range would be slow from raw samples alone, so a range ``[start, end)`` is split into

* **rollup windows**: window intervals ``[window_start, window_end)`` that lie wholly inside the
  range and whose every matching rollup row is final (``final = 1``): they are read from
  ``metric_rollups`` and their raw samples are skipped;
* **raw segments**: the rest of the range (the cut windows at both edges, windows still open,
  windows with no rollup rows): read from ``performance_metrics``.

A window interval in which some matching series is final and another is not is read wholly from
raw samples, so the two sources never overlap: nothing is missed or counted twice. count, sum,
min, max and avg are exact either way (sum up to floating-point rounding). Percentiles are
exact (nearest rank) when only raw samples were used; when rollups were used they come from the
merged sketches and are within a relative 1% of the true nearest-rank value
(:data:`processor.folds.sketch.DEFAULT_RELATIVE_ACCURACY`; values within 1e-9 of zero count as zero),
and ``exact`` is ``False``.

A final row equals its window's raw samples once the sink has caught up with the worker. Until
then a window that took a sample after its final was published (a derived window reopened by a
late derived sample, see :class:`processor.folds.metrics_core.MetricsCore`, or an idle window published final
by the wall clock) may have its raw sample stored before the worker's new rollup row: the query
misses that sample until the sink has the new row, which replaces the final one.

Window intervals of different sizes (after the worker's ``--window-ms`` changed) that overlap
each other are read from raw samples; a window that starts before ``start`` is an edge window
and is never read from rollups.

**The hourly tier.** Over days, even the rollup windows are many (a month of 60 s windows is
43,200 per series), so ``metric_rollups_hourly`` holds each series' windows of an hour merged
into one row (kept by the sink, see :func:`processor.store.sinkdb.refresh_hourly`). An hour that lies
wholly inside the range (and, for a time series, inside one bucket) is read from its hourly rows
instead of its windows when they provably stand for exactly the windows stored now: every window
row of the metric that starts in the hour is accounted for by an hourly row (the counts agree,
over all series, from covering indexes), and every matching hourly row merged all of its
series' windows of the hour (counted now through the primary key), all final, all of one size
that divides the hour (the same for every matching series). Such an hour's windows are then
exactly the windows the plan above would have covered: the plan is made with them (joined into
runs), the raw segments are the same (a window that no series has is still read raw), and an
hour whose windows another window overlaps goes back to its windows. Any other hour is planned
window by window, as above. The results are those of the windows (the sketches merge exactly;
sums may differ in the last bits).
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from processor.errors import ConfigError
from processor.folds.aggregate import QUANTILES, Aggregate
from processor.folds.sketch import merge_json
from processor.store.db import (
    EXECUTION_COLUMNS,
    HOUR_MS,
    STEP_COLUMNS,
    DatabaseError,
    open_read_only,
)

Row = dict[str, Any]
Interval = tuple[int, int]
"""A half-open time interval ``[lo, hi)`` in epoch ms."""


_EXECUTIONS = f"SELECT {', '.join(EXECUTION_COLUMNS)} FROM workflow_executions_monitor"
_STEPS = f"SELECT {', '.join(STEP_COLUMNS)} FROM workflow_step_executions"
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
_SEGMENTS = (
    "WITH seg(lo, hi) AS (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') "
    "FROM json_each(?)) "
)
"""The raw segments of a plan, bound as one JSON parameter ``[[lo, hi], ...]``; joined first
(``CROSS JOIN``) so each segment is one index range scan."""
_HOUR_TOTALS = (
    "SELECT a.value, "
    "(SELECT COUNT(*) FROM metric_rollups AS m WHERE m.metric_type = ? AND m.window_start >= a.value "
    f"AND m.window_start < a.value + {HOUR_MS}), "
    "(SELECT COALESCE(SUM(h.windows), 0) FROM metric_rollups_hourly AS h WHERE h.metric_type = ? "
    "AND h.hour_start = a.value) "
    "FROM json_each(?) AS a"
)
"""Per hour (a JSON list of hour starts): the window rows of the metric that start in it, and
the windows its hourly rows merged, over every series (both counted from covering indexes)."""

HOURLY_TIER = True
"""Whether :class:`Monitor` reads ``metric_rollups_hourly`` by default."""


class Monitor:
    """Read-only queries over an axmon database. Use as a context manager, or call
    :meth:`close`. Raises :class:`processor.store.db.DatabaseError` when the database is missing or
    not an axmon database, and :class:`processor.errors.ConfigError` for bad arguments."""

    def __init__(self, db_path: Path, *, hourly: bool | None = None) -> None:
        """``hourly``: whether metric queries may read ``metric_rollups_hourly`` (default
        :data:`HOURLY_TIER`; never on a database older than the table)."""
        self.path = Path(db_path)
        self._conn = open_read_only(self.path)
        wanted = HOURLY_TIER if hourly is None else hourly
        self._hourly = wanted and bool(self._tuples(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'metric_rollups_hourly'"))

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Monitor:
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
            raise DatabaseError(f"{self.path}: {exc}") from exc

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return [dict(row) for row in self._query(sql, params)]

    def _tuples(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._query(sql, params, as_rows=False)

    # -- executions (the original WorkflowMonitor) ----------------------------------------------

    def get_active_executions(self, tenant_id: str | None = None) -> list[Row]:
        """Executions whose status is ``pending`` or ``running``, newest ``started_at`` first
        (then id descending)."""
        # Without statistics (no ANALYZE) SQLite prefers the tenant index, which scans every
        # execution of the tenant; the partial index holds only the active ones.
        sql = f"{_EXECUTIONS} INDEXED BY idx_executions_active WHERE status IN ('pending', 'running')"
        params: list[Any] = []
        if tenant_id is not None:
            sql += " AND tenant_id = ?"
            params.append(tenant_id)
        return [_execution(r) for r in self._rows(sql + " ORDER BY started_at DESC, id DESC", params)]

    def get_execution(self, execution_id: str) -> Row | None:
        """One execution by id, or ``None``; ``metadata`` is parsed from its JSON."""
        rows = self._rows(f"{_EXECUTIONS} WHERE id = ?", (execution_id,))
        return _execution(rows[0]) if rows else None

    def find_execution_ids(self, prefix: str, limit: int = 2) -> list[str]:
        """The ids of the executions starting with ``prefix``, in order (at most ``limit``);
        one range scan of the primary key."""
        _check_limit(limit)
        sql = "SELECT id FROM workflow_executions_monitor WHERE id >= ?"
        params: list[Any] = [prefix]
        if (above := _prefix_end(prefix)) is not None:
            sql, params = sql + " AND id < ?", [prefix, above]
        rows = self._tuples(f"{sql} AND substr(id, 1, ?) = ? ORDER BY id LIMIT ?", (*params, len(prefix), prefix, limit))
        return [str(r[0]) for r in rows]

    def get_recent_executions(self, limit: int = 100, tenant_id: str | None = None) -> list[Row]:
        """The ``limit`` executions with the newest ``started_at`` (ties: id descending), in
        that order, whatever their status."""
        _check_limit(limit)
        params: list[Any]
        if tenant_id is None:
            sql, params = f"{_EXECUTIONS} ORDER BY started_at DESC, id DESC LIMIT ?", [limit]
        else:
            sql = f"{_EXECUTIONS} WHERE tenant_id = ? ORDER BY started_at DESC, id DESC LIMIT ?"
            params = [tenant_id, limit]
        return [_execution(r) for r in self._rows(sql, params)]

    def get_step_executions(self, execution_id: str) -> list[Row]:
        """The steps of an execution (one row per step id; retries update the row), ordered by
        ``started_at``, then id."""
        return self._rows(f"{_STEPS} WHERE execution_id = ? ORDER BY started_at, id", (execution_id,))

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

    # -- metrics (the original MetricsCollector) ------------------------------------------------

    def get_aggregation(
        self,
        metric_type: str,
        start: int,
        end: int,
        tenant_id: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Row | None:
        """The original MetricAggregation of the samples with ``start <= timestamp < end``
        (half-open), or ``None`` when there are none.

        ``labels`` keeps the samples whose labels contain every given pair. Keys:
        ``metric_type, start, end, count, sum, avg, min, max, p50, p95, p99`` (nearest rank: the
        value at index ``ceil(n p) - 1`` of the sorted values), ``exact`` (the percentiles are
        exact: only raw samples were read; else they are within a relative 1%), and
        ``from_rollups`` / ``from_raw``: the rollup rows (series x window, hourly rows included)
        and raw samples that were read, ``from_hourly``: how many of those rollup rows were
        hourly. See the module docstring for how the range is split between them.
        """
        _check_range(start, end)
        where = _Filter.of(metric_type, tenant_id, labels)
        plan = self._metric_plan(where, start, end, None, with_sketch=True)
        values = self._raw_values(where, plan.raw)
        used = [*plan.hourly, *plan.minute]
        if not used:
            return _exact_summary(metric_type, start, end, values)
        merged = _merge_rollups(used).merge(Aggregate.of(values))
        return {
            "metric_type": metric_type, "start": start, "end": end, **merged.summary(),
            "exact": False, "from_rollups": len(used), "from_hourly": len(plan.hourly), "from_raw": len(values),
        }

    def get_time_series(
        self,
        metric_type: str,
        start: int,
        end: int,
        interval_ms: int = 60_000,
        labels: Mapping[str, str] | None = None,
        tenant_id: str | None = None,
    ) -> Row:
        """The average per bucket of the samples with ``start <= timestamp < end``.

        Bucket ``k`` is ``[start + k interval_ms, start + (k + 1) interval_ms)`` (the last one
        may be cut by ``end``). ``data_points`` holds only the buckets that have samples, in
        time order: ``{timestamp: bucket start, value: avg, count}``. Rollup windows are used
        when they lie wholly inside one bucket (align ``start`` and ``interval_ms`` to the window
        size to get them all), hourly rows when their hour does; everything else is read from
        raw samples, aggregated in SQL.
        """
        _check_range(start, end)
        if isinstance(interval_ms, bool) or not isinstance(interval_ms, int) or interval_ms <= 0:
            raise ConfigError(f"the interval must be a positive number of ms, not {interval_ms!r}")
        where = _Filter.of(metric_type, tenant_id, labels)
        plan = self._metric_plan(where, start, end, interval_ms, with_sketch=False)
        buckets: dict[int, list[float]] = {}
        for r in (*plan.hourly, *plan.minute):
            _bump(buckets, (r.window_start - start) // interval_ms, r.count, r.sum)
        for k, count, total in self._raw_buckets(where, plan.raw, start, interval_ms):
            _bump(buckets, k, count, total)
        points = [
            {"timestamp": start + k * interval_ms, "value": total / count, "count": int(count)}
            for k, (count, total) in sorted(buckets.items())
            if count
        ]
        return {
            "metric_type": metric_type, "start": start, "end": end, "interval_ms": interval_ms,
            "data_points": points,
        }

    def get_metric_count(self, metric_type: str | None = None, tenant_id: str | None = None) -> int:
        """The number of raw samples stored (of a type, of a tenant, or all)."""
        conditions: list[str] = []
        params: list[str] = []
        if tenant_id is not None:
            conditions.append("tenant_id = ?")
            params.append(tenant_id)
        if metric_type is not None:
            conditions.append("metric_type = ?")
            params.append(metric_type)
        sql = "SELECT COUNT(*) FROM performance_metrics"
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        return int(self._tuples(sql, params)[0][0])

    def get_metric_unit(self, metric_type: str) -> str | None:
        """The unit of the newest raw sample of ``metric_type`` (else of its newest rollup
        window), or ``None`` when there is neither."""
        for sql in (
            "SELECT unit FROM performance_metrics WHERE metric_type = ? ORDER BY timestamp DESC LIMIT 1",
            "SELECT unit FROM metric_rollups WHERE metric_type = ? ORDER BY window_start DESC LIMIT 1",
        ):
            rows = self._tuples(sql, (metric_type,))
            if rows:
                return str(rows[0][0])
        return None

    def _metric_plan(
        self, where: _Filter, start: int, end: int, bucket_ms: int | None, *, with_sketch: bool
    ) -> _MetricPlan:
        """Which hourly rows, window rows and raw segments make up ``[start, end)``: the hours
        :meth:`_tiered_hours` vouches for stand in for their windows; the rest of the range is
        planned window by window (:func:`plan_range`), with the hours' windows in the plan too,
        so that an hour whose windows another window overlaps is read window by window again."""
        hours = self._tiered_hours(where, start, end, bucket_ms, with_sketch=with_sketch)
        while True:
            segments = _complement(sorted((h, h + HOUR_MS) for h in hours), start, end)
            rollups = self._rollups(where, segments, with_sketch=with_sketch)
            windows = [(r.window_start, r.window_end, bool(r.final)) for r in rollups]
            windows += [(lo, hi, True) for hour in hours.values() for lo, hi in hour.runs]
            plan = plan_range(windows, start, end, bucket_ms)
            spoiled = [h for h, hour in hours.items() if any(run not in plan.covered for run in hour.runs)]
            if not spoiled:
                break
            for h in spoiled:
                del hours[h]
        used = [r for r in rollups if (r.window_start, r.window_end) in plan.covered]
        return _MetricPlan(tuple(r for hour in hours.values() for r in hour.rows), tuple(used), plan.raw)

    def _tiered_hours(
        self, where: _Filter, start: int, end: int, bucket_ms: int | None, *, with_sketch: bool
    ) -> dict[int, _Hour]:
        """The hours (by start) inside ``[start, end)`` (and inside one bucket) whose matching
        window rows may be replaced by their hourly rows: every window row of the metric that
        starts in the hour is accounted for by an hourly row (all series, so no matching series
        lacks one), and every matching hourly row merged all of its series' window rows in the
        hour (counted now), all final, all of one size, the same size for every matching series."""
        if not self._hourly:
            return {}
        first = -(-start // HOUR_MS) * HOUR_MS
        candidates = [
            h for h in range(first, end - HOUR_MS + 1, HOUR_MS)
            if bucket_ms is None or (h - start) // bucket_ms == (h + HOUR_MS - 1 - start) // bucket_ms
        ]
        if not candidates:
            return {}
        totals = self._tuples(_HOUR_TOTALS, [where.metric_type, where.metric_type, orjson.dumps(candidates).decode()])
        accounted = [int(h) for h, windows, merged in totals if windows == merged]
        if not accounted:
            return {}
        sketch = "h.sketch" if with_sketch else "NULL"
        sql = (
            "SELECT h.hour_start, h.windows, h.final_windows, h.window_ms, h.coverage, h.count, h.sum, h.min, h.max, "
            f"{sketch}, CASE WHEN h.windows = h.final_windows THEN (SELECT COUNT(*) FROM metric_rollups AS m "
            "WHERE m.series = h.series AND m.window_start >= h.hour_start AND m.window_start < h.hour_end) END "
            "FROM json_each(?) AS a CROSS JOIN metric_rollups_hourly AS h "
            f"WHERE h.metric_type = ? AND h.hour_start = a.value{where.sql_for('h')}"
        )
        rows = self._tuples(sql, [orjson.dumps(accounted).decode(), where.metric_type, *where.params])
        members: dict[int, list[tuple[Any, ...]]] = {h: [] for h in accounted}
        refused: set[int] = set()
        for row in rows:
            hour, windows, final_windows, window_ms, stored = row[0], row[1], row[2], row[3], row[10]
            if window_ms is None or not windows == final_windows == stored:
                refused.add(hour)
            members[hour].append(row)
        out: dict[int, _Hour] = {}
        for hour, found in members.items():
            sizes = {row[3] for row in found}
            if hour in refused or len(sizes) > 1:
                continue
            mask = 0
            for row in found:
                mask |= int(row[4], 16)
            out[hour] = _Hour(
                tuple(_Rollup(hour, hour + HOUR_MS, 1, *row[5:10]) for row in found),
                _runs(hour, sizes.pop(), mask) if found else (),
            )
        return out

    def _rollups(self, where: _Filter, segments: Sequence[Interval], *, with_sketch: bool) -> list[_Rollup]:
        """Every matching rollup row that starts in one of ``segments``, final or not (the plan
        needs the open ones to know which windows it cannot take from rollups)."""
        if not segments:
            return []
        sketch = "r.sketch" if with_sketch else "NULL"
        sql = (
            f"{_SEGMENTS}SELECT r.window_start, r.window_end, r.final, r.count, r.sum, r.min, r.max, {sketch} "
            "FROM seg CROSS JOIN metric_rollups AS r "
            f"WHERE r.metric_type = ? AND r.window_start >= seg.lo AND r.window_start < seg.hi{where.sql_for('r')}"
        )
        params = [_segments_json(segments), where.metric_type, *where.params]
        return [_Rollup(*row) for row in self._tuples(sql, params)]

    def _raw_values(self, where: _Filter, segments: Sequence[Interval]) -> list[float]:
        if not segments:
            return []
        sql = (
            f"{_SEGMENTS}SELECT p.value FROM seg CROSS JOIN performance_metrics AS p "
            f"WHERE p.metric_type = ? AND p.timestamp >= seg.lo AND p.timestamp < seg.hi{where.sql_for('p')}"
        )
        params = [_segments_json(segments), where.metric_type, *where.params]
        return [row[0] for row in self._tuples(sql, params)]

    def _raw_buckets(
        self, where: _Filter, segments: Sequence[Interval], start: int, interval_ms: int
    ) -> list[tuple[int, int, float]]:
        """``(bucket, count, sum)`` of the raw samples in ``segments``, grouped in SQL."""
        if not segments:
            return []
        sql = (
            f"{_SEGMENTS}SELECT (p.timestamp - ?) / ? AS k, COUNT(*), SUM(p.value) "
            "FROM seg CROSS JOIN performance_metrics AS p "
            f"WHERE p.metric_type = ? AND p.timestamp >= seg.lo AND p.timestamp < seg.hi{where.sql_for('p')} "
            "GROUP BY k"
        )
        params = [_segments_json(segments), start, interval_ms, where.metric_type, *where.params]
        # SQLite's SUM of +inf and -inf is NULL: the bucket's sum is then not a number
        return [(int(k), int(c), math.nan if s is None else float(s)) for k, c, s in self._tuples(sql, params)]

    # -- operations -----------------------------------------------------------------------------

    def get_dead_letters(self, limit: int = 100, reason: str | None = None) -> list[Row]:
        """The newest ``limit`` dead letters by ``timestamp`` (unknown times last; ties: topic
        and partition ascending, offset descending), optionally of one ``reason``. ``key`` and
        ``value`` are the original bytes (or ``None``)."""
        _check_limit(limit)
        order = ' ORDER BY timestamp DESC, topic, partition, "offset" DESC LIMIT ?'
        if reason is None:
            return self._rows(_DEAD_LETTERS + order, (limit,))
        return self._rows(f"{_DEAD_LETTERS} WHERE reason = ?{order}", (reason, limit))

    def get_alerts(self, *, active: bool = False, tenant_id: str | None = None, limit: int = 100) -> list[Row]:
        """Alerts, most recently changed first: every one, or only those ``active`` (pending,
        firing or acknowledged), optionally of one tenant. ``labels`` is a dict."""
        _check_limit(limit)
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
        _check_limit(limit)
        rows = self._tuples("SELECT id FROM alerts WHERE substr(id, 1, ?) = ? ORDER BY id LIMIT ?", (len(prefix), prefix, limit))
        return [str(r[0]) for r in rows]

    def counts(self) -> dict[str, int]:
        """Rows per table, by table name (SQLite's own tables left out)."""
        names = self._tuples(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
            "ORDER BY name"
        )
        return {name: int(self._tuples(f"SELECT COUNT(*) FROM {_quote(name)}")[0][0]) for (name,) in names}


# -- the plan: which parts of a range come from rollups ------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    covered: frozenset[Interval]
    """Window intervals read from ``metric_rollups`` (every matching row in them is final)."""
    raw: tuple[Interval, ...]
    """The rest of the range, in order, adjacent pieces merged: read from raw samples."""


def plan_range(
    windows: Iterable[tuple[int, int, bool]], start: int, end: int, bucket_ms: int | None = None
) -> Plan:
    """Split ``[start, end)`` between rollups and raw samples. Pure.

    ``windows`` are ``(window_start, window_end, final)`` of the matching rollup rows. A window
    interval is covered when it lies inside ``[start, end)``, every row with that interval is
    final, it overlaps no other interval, and (with ``bucket_ms``) it lies inside one bucket
    ``[start + k bucket_ms, start + (k + 1) bucket_ms)``. The raw segments are the complement.
    """
    final: dict[Interval, bool] = {}
    for lo, hi, is_final in windows:
        final[(lo, hi)] = final.get((lo, hi), True) and bool(is_final)
    overlapping = _overlapping(sorted(final))
    covered = frozenset(
        iv for iv, ok in final.items()
        if ok and iv not in overlapping and start <= iv[0] < iv[1] <= end
        and (bucket_ms is None or (iv[0] - start) // bucket_ms == (iv[1] - 1 - start) // bucket_ms)
    )
    return Plan(covered, _complement(sorted(covered), start, end))


def _overlapping(intervals: Sequence[Interval]) -> set[Interval]:
    """The intervals (sorted, distinct) that overlap at least one other."""
    out: set[Interval] = set()
    reach: int | None = None
    for i, (lo, hi) in enumerate(intervals):
        if reach is not None and lo < reach:
            out.add((lo, hi))
        if i + 1 < len(intervals) and intervals[i + 1][0] < hi:
            out.add((lo, hi))
        reach = hi if reach is None else max(reach, hi)
    return out


def _complement(covered: Sequence[Interval], start: int, end: int) -> tuple[Interval, ...]:
    """``[start, end)`` minus the sorted, disjoint ``covered`` intervals."""
    out: list[Interval] = []
    at = start
    for lo, hi in covered:
        if lo > at:
            out.append((at, lo))
        at = max(at, hi)
    if at < end:
        out.append((at, end))
    return tuple(out)


def _segments_json(segments: Sequence[Interval]) -> str:
    return orjson.dumps([list(s) for s in segments]).decode()


# -- filters and rows ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Filter:
    """The tenant and label conditions shared by raw samples and rollup rows (both tables have
    ``tenant_id`` and a ``labels`` JSON object). A label pair matches when the object has that
    key with that string value."""

    metric_type: str
    tenant_id: str | None
    labels: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, metric_type: str, tenant_id: str | None, labels: Mapping[str, str] | None) -> _Filter:
        if not isinstance(metric_type, str) or not metric_type:
            raise ConfigError(f"the metric type must be a non-empty string, not {metric_type!r}")
        pairs = list((labels or {}).items())
        for key, value in pairs:
            if not isinstance(key, str) or not isinstance(value, str) or not key:
                raise ConfigError(f"a label filter is a non-empty string key and a string value, not {key!r}={value!r}")
        return cls(metric_type, tenant_id, tuple(sorted(pairs)))

    def sql_for(self, table: str) -> str:
        """`` AND ...`` conditions on ``table``'s columns (empty when there are none)."""
        parts = []
        if self.tenant_id is not None:
            parts.append(f" AND {table}.tenant_id = ?")
        for key, _ in self.labels:
            if _plain_label(key):
                parts.append(f" AND json_extract({table}.labels, ?) = ?")
            else:
                parts.append(
                    f" AND EXISTS (SELECT 1 FROM json_each({table}.labels) AS l WHERE l.key = ? AND l.value = ?)"
                )
        return "".join(parts)

    @property
    def params(self) -> list[Any]:
        out: list[Any] = [] if self.tenant_id is None else [self.tenant_id]
        for key, value in self.labels:
            out += (f'$."{key}"' if _plain_label(key) else key, value)
        return out


def _plain_label(key: str) -> bool:
    """Whether ``key`` can be named in a JSON path (``$."key"``), which SQLite reads without
    escapes; other keys are matched through ``json_each`` (about 1.5x slower)."""
    return all(c not in '"\\' and c >= " " for c in key)


@dataclass(frozen=True, slots=True)
class _Rollup:
    window_start: int
    window_end: int
    final: int
    count: int
    sum: float
    min: float | None
    max: float | None
    sketch: str | None


def _merge_rollups(rows: Iterable[_Rollup]) -> Aggregate:
    """One aggregate of many rollup rows (window or hourly); the sketches are merged in their
    JSON form (:func:`processor.folds.sketch.merge_json`)."""
    count, total = 0, 0.0
    low: float | None = None
    high: float | None = None
    sketches = []
    for row in rows:
        count += row.count
        total += row.sum
        low = row.min if low is None or (row.min is not None and row.min < low) else low
        high = row.max if high is None or (row.max is not None and row.max > high) else high
        sketches.append(row.sketch or "{}")
    try:
        sketch = merge_json(map(orjson.loads, sketches))
    except ValueError as exc:
        raise DatabaseError(f"rollup {exc}") from exc
    if sketch is None:
        return Aggregate()
    return Aggregate(count, total, low, high, sketch)


@dataclass(frozen=True, slots=True)
class _Hour:
    """An hour read from its hourly rows."""

    rows: tuple[_Rollup, ...]
    """The matching hourly rows, as rollup rows spanning the hour."""
    runs: tuple[Interval, ...]
    """The windows they merged (of every matching series), adjacent ones joined."""


@dataclass(frozen=True, slots=True)
class _MetricPlan:
    hourly: tuple[_Rollup, ...]
    minute: tuple[_Rollup, ...]
    raw: tuple[Interval, ...]


def _runs(hour: int, window_ms: int, mask: int) -> tuple[Interval, ...]:
    """The windows of ``mask`` (bit i: the window at ``hour + i window_ms``) as intervals,
    adjacent ones joined."""
    if mask == (1 << (HOUR_MS // window_ms)) - 1:
        return ((hour, hour + HOUR_MS),)
    out: list[Interval] = []
    i = 0
    while mask:
        if mask & 1:
            lo = i
            while mask & 1:
                mask >>= 1
                i += 1
            out.append((hour + lo * window_ms, hour + i * window_ms))
        else:
            skip = (mask & -mask).bit_length() - 1
            mask >>= skip
            i += skip
    return tuple(out)


def _exact_summary(metric_type: str, start: int, end: int, values: list[float]) -> Row | None:
    """The aggregation of raw samples only: exact nearest-rank percentiles."""
    if not values:
        return None
    total = 0.0
    for v in values:
        total += v
    ordered = sorted(values)
    out: Row = {
        "metric_type": metric_type, "start": start, "end": end, "count": len(values), "sum": total,
        "avg": total / len(values), "min": ordered[0], "max": ordered[-1],
    }
    for name, q in QUANTILES:
        out[name] = nearest_rank(ordered, q)
    return {**out, "exact": True, "from_rollups": 0, "from_hourly": 0, "from_raw": len(values)}


def nearest_rank(ordered: Sequence[float], q: float) -> float:
    """The original design's percentile: the value at index ``ceil(n q) - 1`` (at least 0) of
    the sorted values."""
    return ordered[max(0, math.ceil(len(ordered) * q) - 1)]


def _bump(buckets: dict[int, list[float]], k: int, count: int, total: float) -> None:
    entry = buckets.setdefault(k, [0, 0.0])
    entry[0] += count
    entry[1] += total


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


def _prefix_end(prefix: str) -> str | None:
    """The least string above every string that starts with ``prefix`` (SQLite compares text
    as UTF-8 bytes, which orders like code points); ``None`` when there is none."""
    for cut in range(len(prefix) - 1, -1, -1):
        point = ord(prefix[cut]) + 1
        point += 0x800 if 0xD800 <= point <= 0xDFFF else 0  # no surrogates in UTF-8
        if point <= 0x10FFFF:
            return prefix[:cut] + chr(point)
    return None


def _check_range(start: int, end: int) -> None:
    for name, value in (("start", start), ("end", end)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be epoch milliseconds (an integer), not {value!r}")
    if start >= end:
        raise ConfigError(f"the range is empty: start {start} is not before end {end}")


def _check_limit(limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"the limit must be a whole number of at least 1, not {limit!r}")


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'

