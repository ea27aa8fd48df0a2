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

**The day tier.** ``metric_rollups_daily`` merges a series' hourly rows of one UTC day (kept by
the sink right after them, see :mod:`processor.store.daily`), so a month is ~30 rows per series.
A day that lies wholly inside the range (and inside one bucket) is read from its daily rows when
they provably stand for exactly the windows stored, all final (the rule of the hours, with the
window rows per day and series counted by triggers: :mod:`processor.store.tier_reads`); its hours
are then not planned at all. Any other day is planned hour by hour as above, and a day whose
windows another window overlaps goes back to its hours.

**Days only partly in the range.** The proof of a day covers its hours and windows too (see
:func:`processor.store.tier_reads.hours_of_days`): the hours of a vouched-for day that lie in the
range (and in one bucket) are read from their hourly rows without counting their windows again,
and a time series sums the rest of such a day's whole windows in SQL, one row per stretch inside
one hour and bucket (:func:`processor.store.tier_reads.spans_of_days`). Their windows go into the
plan like a block's, so an overlapping window sends them back to the window-by-window plan.

**The per-metric-type tier** (schema 10). A query without label filters reads whole days and
hours first from ``type_days`` and ``type_hours``: one row per block for its tenant (or across
tenants) instead of one per series, where :func:`processor.store.type_reads.typed_blocks` proves
that the row stands for exactly the windows stored, all final; the other blocks go to the
per-series tiers above. Its blocks enter the plan like theirs (runs checked against overlapping
windows), and its rows merge the same complete finer rows, so the results are theirs. The days
it vouches for stand as the proofs of their hours and windows too (as the per-series day proof
does, for :func:`hours_of_days` and :func:`spans_of_days`): one row per day instead of one per series.

**The per-metric-type window tier** (schema 11). In what the blocks above leave of the range (the
hours cut by its ends or by buckets' edges), a query without a tenant or label filter reads
stretches of windows from ``type_windows``, one row per window start across every series, where
:func:`processor.store.type_window_reads.typed_windows` proves that the rows account for the
hour's windows and stand for all their window rows, final, of one size, ending inside the bucket;
the rest is planned window by window. Its stretches enter the plan like blocks (runs checked
against overlapping windows); a window that crosses a bucket's edge enters it as a known window,
read raw without reading its rows.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from processor.errors import ConfigError
from processor.folds.aggregate import QUANTILES, Aggregate
from processor.folds.sketch_codec import encode_json, merge_encoded
from processor.store.db import DAY_MS, HOUR_MS, DatabaseError
from processor.store.range_plan import Interval, complement, plan_range
from processor.store.reader import Reader, Row, check_range
from processor.store.sqltext import SEGMENTS_CTE
from processor.store.tier_reads import (
    Block,
    Filter,
    RollupRow,
    candidates,
    hours_of_days,
    joined_hours,
    span_pieces,
    spans_of_days,
    tiered_days,
    tiered_hours,
)
from processor.store.type_reads import typed, typed_blocks
from processor.store.type_window_reads import typed_windows
from processor.urls import DbLocation

HOURLY_TIER = True
"""Whether :class:`Monitor` reads ``metric_rollups_hourly`` by default."""
DAILY_TIER = True
"""Whether :class:`Monitor` reads ``metric_rollups_daily`` by default (only with the hourly tier)."""
TYPE_TIER = True
"""Whether :class:`Monitor` reads ``type_hours`` and ``type_days`` by default (only with the day tier)."""
TYPE_WINDOWS = True
"""Whether :class:`Monitor` reads ``type_windows`` by default (only with the per-metric-type tier)."""


class MetricQueries(Reader):
    """The original MetricsCollector queries over the metric tables."""

    def __init__(self, db_path: DbLocation, *, hourly: bool | None = None, daily: bool | None = None,
                 types: bool | None = None, windows: bool | None = None) -> None:
        """``hourly``: whether metric queries may read ``metric_rollups_hourly`` (default
        :data:`HOURLY_TIER`), ``daily``: ``metric_rollups_daily`` (default :data:`DAILY_TIER`,
        never without the hourly tier), ``types``: the per-metric-type tier (default
        :data:`TYPE_TIER`, never without the day tier), ``windows``: its window rows (default
        :data:`TYPE_WINDOWS`, never without it); none on a database older than the table."""
        super().__init__(db_path)
        tables = {str(r[0]) for r in self._tuples("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
        self._hourly = (HOURLY_TIER if hourly is None else hourly) and "metric_rollups_hourly" in tables
        self._daily = self._hourly and (DAILY_TIER if daily is None else daily) and "metric_rollups_daily" in tables
        self._counted = "metric_counts" in tables
        self._types = self._daily and (TYPE_TIER if types is None else types) and "type_days" in tables
        self._windows = self._types and (TYPE_WINDOWS if windows is None else windows) and "type_windows" in tables
        version = int(self._tuples("PRAGMA user_version")[0][0])
        self._json_sketches = version < 7
        """Whether the rollup sketches are stored in their JSON form (a database not yet migrated
        to schema 7, read as it is)."""
        self._layout = version >= 8
        """Whether the metric tables are in the compact layout (raw samples stored by series)."""

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
        ``from_rollups`` / ``from_raw``: the rollup rows (series x window, hourly and daily rows
        included) and raw samples that were read, ``from_hourly`` / ``from_daily``: how many of
        those rollup rows were hourly / daily. See the module docstring for how the range is
        split between them.
        """
        check_range(start, end)
        where = Filter.of(metric_type, tenant_id, labels)
        plan = self._metric_plan(where, start, end, None, with_sketch=True)
        used = [*plan.daily, *plan.hourly, *plan.minute]
        values = self._raw_values(where, plan.raw, used)
        if not used:
            return _exact_summary(metric_type, start, end, values)
        merged = _merge_rollups(used, json_sketches=self._json_sketches).merge(Aggregate.of(values))
        return {
            "metric_type": metric_type, "start": start, "end": end, **merged.summary(),
            "exact": False, "from_rollups": len(used), "from_hourly": len(plan.hourly), "from_daily": len(plan.daily),
            "from_raw": len(values),
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
        size to get them all), hourly rows when their hour does, daily rows when their UTC day
        does (align to days to get them); everything else is read from raw samples, aggregated
        in SQL.
        """
        check_range(start, end)
        if isinstance(interval_ms, bool) or not isinstance(interval_ms, int) or interval_ms <= 0:
            raise ConfigError(f"the interval must be a positive number of ms, not {interval_ms!r}")
        where = Filter.of(metric_type, tenant_id, labels)
        plan = self._metric_plan(where, start, end, interval_ms, with_sketch=False)
        buckets: dict[int, list[float]] = {}
        for r in (*plan.daily, *plan.hourly, *plan.minute):
            _bump(buckets, (r.window_start - start) // interval_ms, r.count, r.sum)
        for k, count, total in self._raw_buckets(where, plan.raw, start, interval_ms,
                                                 [*plan.daily, *plan.hourly, *plan.minute]):
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
        """The number of raw samples stored (of a type, of a tenant, or all): from the counts
        that triggers keep in ``metric_counts`` with every insert and delete of a raw sample (a
        scan of the samples on a database older than the table)."""
        table, tenant_column = ("metric_counts", "tenant") if self._counted and tenant_id != "" else (
            "performance_metrics", "tenant_id")
        conditions: list[str] = []
        params: list[str] = []
        if tenant_id is not None:
            conditions.append(f"{tenant_column} = ?")
            params.append(tenant_id)
        if metric_type is not None:
            conditions.append("metric_type = ?")
            params.append(metric_type)
        sql = f"SELECT {'COALESCE(SUM(samples), 0)' if table == 'metric_counts' else 'COUNT(*)'} FROM {table}"
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
        self, where: Filter, start: int, end: int, bucket_ms: int | None, *, with_sketch: bool
    ) -> _MetricPlan:
        """Which daily rows, hourly rows, window rows and raw segments make up ``[start, end)``:
        the days and hours that :func:`tiered_days` and :func:`tiered_hours` vouch for stand in
        for their windows (an hour only outside such a day); the rest of the range is planned
        window by window (:func:`plan_range`), with the blocks' windows in the plan too, so that
        a block whose windows another window overlaps is read finer again (a day hour by hour)."""
        days: dict[int, Block] = {}
        by_type = self._types and typed(where)
        typed_hours: dict[int, Block] = {}
        if self._daily:
            whole = candidates(start, end, DAY_MS, bucket_ms)
            if by_type:
                days, typed_hours = typed_blocks(self._tuples, where, whole, candidates(start, end, HOUR_MS, bucket_ms),
                                                 with_sketch=with_sketch,
                                                 buckets=(start, bucket_ms) if bucket_ms and not with_sketch else None)
            days.update(tiered_days(self._tuples, where, [d for d in whole if d not in days], with_sketch=with_sketch))
        while True:
            wanted = candidates(start, end, HOUR_MS, bucket_ms, days.keys()) if self._hourly else []
            hours = {h: typed_hours[h] for h in wanted if h in typed_hours} if by_type else {}
            summed = {h for b, block in hours.items() for h in range(b + HOUR_MS, b + block.length, HOUR_MS)}
            wanted = [h for h in wanted if h not in hours and h not in summed]  # (hours of a summed stretch)
            proven: dict[int, Block] = {}
            if self._daily and (wanted or not with_sketch):  # proofs for hours, or for a series' windows
                touched = [d for d in range(start - start % DAY_MS, end, DAY_MS) if d not in days]
                if by_type:  # one type row per day proves it as its series' rows would
                    proven = typed_blocks(self._tuples, where, touched, (), with_sketch=False)[0]
                else:
                    proven = tiered_days(self._tuples, where, touched, with_sketch=False)
                hours.update(hours_of_days(self._tuples, where, proven, wanted, with_sketch=with_sketch))
            if self._hourly:
                hours.update(tiered_hours(self._tuples, where, [h for h in wanted if h not in hours],
                                          with_sketch=with_sketch))
            blocks = {**days, **(joined_hours(hours, start, bucket_ms) if bucket_ms and not with_sketch else hours)}
            if self._windows and by_type:  # the stretches of windows one type window row per window stands in for
                rest = complement(sorted((b, b + block.length) for b, block in blocks.items()), start, end)
                blocks.update(typed_windows(self._tuples, where, rest, start, end, bucket_ms, with_sketch=with_sketch))
            if not with_sketch:  # a series sums the windows of vouched-for days in SQL (an aggregation
                # merges their sketches one by one either way: planned window by window, as before)
                rest = complement(sorted((b, b + block.length) for b, block in blocks.items()), start, end)
                blocks.update(spans_of_days(self._tuples, where, proven, span_pieces(proven, rest, start, bucket_ms)))
            while True:
                segments = complement(sorted((b, b + block.length) for b, block in blocks.items()), start, end)
                rollups = self._rollups(where, segments, with_sketch=with_sketch)
                windows = [(r.window_start, r.window_end, bool(r.final)) for r in rollups]
                windows += [(lo, hi, True) for block in blocks.values() for lo, hi in (*block.runs, *block.known)]
                plan = plan_range(windows, start, end, bucket_ms)
                spoiled = [b for b, block in blocks.items() if any(run not in plan.covered for run in block.runs)]
                for b in spoiled:
                    del blocks[b]
                if not spoiled or any(b in days for b in spoiled):
                    break
            if not spoiled:
                break
            for b in spoiled:
                days.pop(b, None)  # and plan its hours again
                if by_type:
                    typed_hours = {h: block for h, block in typed_hours.items() if h not in spoiled}
        used = [r for r in rollups if (r.window_start, r.window_end) in plan.covered]
        used += [r for block in blocks.values() if block.span for r in block.rows]
        return _MetricPlan(
            tuple(r for block in blocks.values() if not block.span and block.length == DAY_MS for r in block.rows),
            tuple(r for block in blocks.values() if not block.span and block.length != DAY_MS for r in block.rows),
            tuple(used), plan.raw,
        )

    def _rollups(self, where: Filter, segments: Sequence[Interval], *, with_sketch: bool) -> list[RollupRow]:
        """Every matching rollup row that starts in one of ``segments``, final or not (the plan
        needs the open ones to know which windows it cannot take from rollups)."""
        if not segments:
            return []
        sketch = "r.sketch" if with_sketch else "NULL"
        sql = (
            f"{SEGMENTS_CTE}SELECT r.window_start, r.window_end, r.final, r.count, r.sum, r.min, r.max, {sketch} "
            "FROM seg CROSS JOIN metric_rollups AS r "
            f"WHERE r.metric_type = ? AND r.window_start >= seg.lo AND r.window_start < seg.hi{where.sql_for('r')}"
        )
        params = [_segments_json(segments), where.metric_type, *where.params]
        return [RollupRow(*row) for row in self._tuples(sql, params)]

    def _raw_values(self, where: Filter, segments: Sequence[Interval], used: Sequence[RollupRow] = ()) -> list[float]:
        if not segments:
            return []
        probes = probed(segments, used, self._series_count(where) if len(segments) > 1 else 0)
        if len(probes) < len(segments):
            edges = edges_of(segments)
            return [v for t, v in self._raw_rows(where, probes) if bisect_right(edges, t) & 1]
        sql = (
            f"{SEGMENTS_CTE}SELECT p.value FROM seg CROSS JOIN performance_metrics AS p "
            f"WHERE p.metric_type = ? AND p.timestamp >= seg.lo AND p.timestamp < seg.hi{where.sql_for('p')}"
        )
        params = [_segments_json(segments), where.metric_type, *where.params]
        return [row[0] for row in self._tuples(sql, params)]

    def _series_count(self, where: Filter) -> int:
        """How many lookups one raw segment costs: the matching series (schema 8, where raw
        samples are stored by series and time); 0 before (they were indexed by type and time:
        segments are never joined, see :func:`probed`)."""
        if not self._layout:
            return 0
        return int(self._tuples(f"SELECT COUNT(*) FROM series AS s WHERE s.metric_type = ?{where.sql_for('s')}",
                                [where.metric_type, *where.params])[0][0])

    def _raw_rows(self, where: Filter, probes: Sequence[Interval]) -> list[tuple[int, float]]:
        """``(timestamp, value)`` of the raw samples in ``probes``."""
        sql = (
            f"{SEGMENTS_CTE}SELECT p.timestamp, p.value FROM seg CROSS JOIN performance_metrics AS p "
            f"WHERE p.metric_type = ? AND p.timestamp >= seg.lo AND p.timestamp < seg.hi{where.sql_for('p')}"
        )
        return [(int(t), v) for t, v in self._tuples(sql, [_segments_json(probes), where.metric_type, *where.params])]

    def _raw_buckets(
        self, where: Filter, segments: Sequence[Interval], start: int, interval_ms: int,
        used: Sequence[RollupRow] = (),
    ) -> list[tuple[int, int, float]]:
        """``(bucket, count, sum)`` of the raw samples in ``segments``, grouped in SQL (in Python
        when segments are read together, see :func:`probed`)."""
        if not segments:
            return []
        probes = probed(segments, used, self._series_count(where) if len(segments) > 1 else 0)
        if len(probes) < len(segments):
            buckets: dict[int, list[float]] = {}
            edges = edges_of(segments)
            for t, v in self._raw_rows(where, probes):
                if bisect_right(edges, t) & 1:
                    _bump(buckets, (t - start) // interval_ms, 1, v)
            return [(k, int(c), float(s)) for k, (c, s) in sorted(buckets.items())]
        sql = (
            f"{SEGMENTS_CTE}SELECT (p.timestamp - ?) / ? AS k, COUNT(*), SUM(p.value) "
            "FROM seg CROSS JOIN performance_metrics AS p "
            f"WHERE p.metric_type = ? AND p.timestamp >= seg.lo AND p.timestamp < seg.hi{where.sql_for('p')} "
            "GROUP BY k"
        )
        params = [_segments_json(segments), start, interval_ms, where.metric_type, *where.params]
        # SQLite's SUM of +inf and -inf is NULL: the bucket's sum is then not a number
        return [(int(k), int(c), math.nan if s is None else float(s)) for k, c, s in self._tuples(sql, params)]


def probed(segments: Sequence[Interval], used: Sequence[RollupRow], lookups: int) -> list[Interval]:
    """The stretches read to get the raw samples of ``segments``: adjacent segments joined when
    the rollup rows read between them (``used``) hold fewer samples than a segment costs index
    lookups (``lookups``: one per matching series; 0: never join). The
    raw samples are stored by series and time (schema 8), so each stretch costs a lookup per
    series: many short segments (sparse series, whose windows alternate with empty minutes) cost
    more than reading the few samples between them, which the caller leaves out again
    (:func:`edges_of`)."""
    if len(segments) < 2:
        return list(segments)
    starts = sorted((r.window_start, r.count) for r in used)
    keys = [s for s, _ in starts]
    prefix = [0]
    for _, count in starts:
        prefix.append(prefix[-1] + count)
    out = [list(segments[0])]
    for lo, hi in segments[1:]:
        gap = prefix[bisect_left(keys, lo)] - prefix[bisect_left(keys, out[-1][1])]
        if gap < lookups:
            out[-1][1] = hi
        else:
            out.append([lo, hi])
    return [(a, b) for a, b in out]


def edges_of(segments: Sequence[Interval]) -> list[int]:
    """The ends of the sorted, disjoint ``segments`` in one sorted list: a time ``t`` lies in one
    of them exactly when ``bisect_right(edges, t)`` is odd (one C call per raw row)."""
    return [at for segment in segments for at in segment]


def _segments_json(segments: Sequence[Interval]) -> str:
    return orjson.dumps([list(s) for s in segments]).decode()


def _merge_rollups(rows: Iterable[RollupRow], *, json_sketches: bool = False) -> Aggregate:
    """One aggregate of many rollup rows (window, hourly or daily); the sketches are merged in
    their stored form (:func:`processor.folds.sketch_codec.merge_encoded`), converted first when
    they are stored as JSON (``json_sketches``: a database older than schema 7)."""
    count, total = 0, 0.0
    low: float | None = None
    high: float | None = None
    sketches: list[Any] = []
    for row in rows:
        count += row.count
        total += row.sum
        low = row.min if low is None or (row.min is not None and row.min < low) else low
        high = row.max if high is None or (row.max is not None and row.max > high) else high
        sketches.append(row.sketch)
    if json_sketches:
        sketches = [encode_json(orjson.loads(s or "{}")) for s in sketches]
    try:
        sketch = merge_encoded(sketches)
    except ValueError as exc:
        raise DatabaseError(f"rollup {exc}") from exc
    if sketch is None:
        return Aggregate()
    return Aggregate(count, total, low, high, sketch)


@dataclass(frozen=True, slots=True)
class _MetricPlan:
    daily: tuple[RollupRow, ...]
    hourly: tuple[RollupRow, ...]
    minute: tuple[RollupRow, ...]
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
    return {**out, "exact": True, "from_rollups": 0, "from_hourly": 0, "from_daily": 0, "from_raw": len(values)}


def nearest_rank(ordered: Sequence[float], q: float) -> float:
    """The original design's percentile: the value at index ``ceil(n q) - 1`` (at least 0) of
    the sorted values."""
    return ordered[max(0, math.ceil(len(ordered) * q) - 1)]


def _bump(buckets: dict[int, list[float]], k: int, count: int, total: float) -> None:
    entry = buckets.setdefault(k, [0, 0.0])
    entry[0] += count
    entry[1] += total


