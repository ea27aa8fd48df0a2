"""The original MetricsCollector queries (:class:`MetricQueries`, part of
:class:`processor.store.queries.Monitor`) and how they plan a range.

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
into one row (kept by the sink, see :func:`processor.store.hourly.refresh_hourly`). An hour that lies
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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from processor.errors import ConfigError
from processor.folds.aggregate import QUANTILES, Aggregate
from processor.folds.sketch import merge_json
from processor.store.db import (
    HOUR_MS,
    DatabaseError,
)
from processor.store.range_plan import Interval, complement, plan_range, runs
from processor.store.reader import Reader, Row, check_range

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


class MetricQueries(Reader):
    """The original MetricsCollector queries over the metric tables."""

    def __init__(self, db_path: Path, *, hourly: bool | None = None) -> None:
        """``hourly``: whether metric queries may read ``metric_rollups_hourly`` (default
        :data:`HOURLY_TIER`; never on a database older than the table)."""
        super().__init__(db_path)
        wanted = HOURLY_TIER if hourly is None else hourly
        self._hourly = wanted and bool(self._tuples(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'metric_rollups_hourly'"))

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
        check_range(start, end)
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
        check_range(start, end)
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
            segments = complement(sorted((h, h + HOUR_MS) for h in hours), start, end)
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
                runs(hour, sizes.pop(), mask) if found else (),
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


