"""Which blocks of a metric range (whole hours, whole UTC days) the coarse tiers may stand in for,
and the filters and rows the metric queries share (see :mod:`processor.store.metric_queries`).

A block is read from its tier rows only when they provably stand for exactly the window rows
stored, all final, all of one size that divides the block (the same for every matching series):

* **hours** (``metric_rollups_hourly``): every window row of the metric that starts in the hour
  is accounted for by an hourly row (the counts agree, over all series, from covering indexes),
  and every matching hourly row merged all of its series' windows of the hour (counted now
  through the primary key), all final;
* **days** (``metric_rollups_daily``): the same, with the window rows per day and series counted
  by triggers on ``metric_rollups`` (``metric_rollup_day_counts``, kept in the transaction of
  every write or delete of a window row, whoever makes it): the counts of every series of the
  metric add up to the daily rows' ``windows``, and every matching daily row's ``windows`` and
  ``final_windows`` equal its series' count. A daily row's ``windows`` adds its hourly rows',
  which count the windows inside their hour, so a day holding a window that crosses an hour is
  never read from the tier (as such an hour is not).

The block's windows are then exactly the windows a window-by-window plan would cover, given as
runs (adjacent windows joined) so that the planner can check that no other window overlaps them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from processor.errors import ConfigError
from processor.store.db import DAY_MS, HOUR_MS
from processor.store.range_plan import Interval, runs
from processor.store.sqltext import SEGMENTS_CTE

Tuples = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]
"""Runs one read statement: all its rows as tuples."""

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
_DAY_TOTALS = (
    "SELECT a.value, "
    "(SELECT COALESCE(SUM(c.windows), 0) FROM metric_rollup_day_counts AS c WHERE c.metric_type = ? "
    "AND c.day_start = a.value), "
    "(SELECT COALESCE(SUM(d.windows), 0) FROM metric_rollups_daily AS d WHERE d.metric_type = ? "
    "AND d.day_start = a.value) "
    "FROM json_each(?) AS a"
)
"""Per day: the window rows of the metric that start in it (as the triggers counted them), and
the windows its daily rows merged, over every series."""


@dataclass(frozen=True, slots=True)
class Filter:
    """The tenant and label conditions shared by raw samples and rollup rows (all the tables
    have ``tenant_id`` and a ``labels`` JSON object). A label pair matches when the object has
    that key with that string value."""

    metric_type: str
    tenant_id: str | None
    labels: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, metric_type: str, tenant_id: str | None, labels: Mapping[str, str] | None) -> Filter:
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
class RollupRow:
    """A rollup row read for a query: a window, or an hourly or daily row spanning its block."""

    window_start: int
    window_end: int
    final: int
    count: int
    sum: float
    min: float | None
    max: float | None
    sketch: bytes | None


@dataclass(frozen=True, slots=True)
class Block:
    """An hour or a day read from its tier rows, or a span of windows of a vouched-for day read
    from its window rows."""

    length: int
    """``HOUR_MS`` or ``DAY_MS`` (a span: its length)."""
    rows: tuple[RollupRow, ...]
    """The matching tier rows, as rollup rows spanning the block (a span: its window rows, or
    their sums in one row)."""
    runs: tuple[Interval, ...]
    """The windows they merged (of every matching series), adjacent ones joined."""
    window_ms: int | None = None
    """The one size of those windows (``None`` when there are none)."""
    span: bool = False
    """Whether the rows are window rows (:func:`spans_of_days`)."""
    known: tuple[Interval, ...] = ()
    """Windows it stands for that no plan covers (they cross a bucket's edge or the range's end,
    see :func:`processor.store.type_window_reads.typed_windows`): in the plan, so that no window that
    overlaps them is covered, and read raw, with no rows."""


def candidates(start: int, end: int, length: int, bucket_ms: int | None, skip_days: Collection[int] = ()) -> list[int]:
    """The starts of the blocks of ``length`` (a day, or an hour) inside ``[start, end)`` (and
    inside one bucket), leaving out those inside one of the days starting at ``skip_days``.
    Bucket by bucket: a block never crosses a bucket's edge, so no block is looked at twice."""
    first = -(-start // length) * length
    if bucket_ms is None:
        out = list(range(first, end - length + 1, length))
    elif bucket_ms < length:
        return []  # no block fits inside one bucket
    else:
        out = []
        at = start + (first - start) // bucket_ms * bucket_ms  # the bucket holding ``first``
        while at <= end - length:
            lo = max(first, -(-at // length) * length)
            out.extend(range(lo, min(end, at + bucket_ms) - length + 1, length))
            at += bucket_ms
    return [b for b in out if b - b % DAY_MS not in skip_days] if skip_days else out


def tiered_hours(tuples: Tuples, where: Filter, hours: Sequence[int], *, with_sketch: bool) -> dict[int, Block]:
    """Of ``hours``, those whose matching window rows may be replaced by their hourly rows (see
    the module docstring), by start."""
    if not hours:
        return {}
    totals = tuples(_HOUR_TOTALS, [where.metric_type, where.metric_type, orjson.dumps(list(hours)).decode()])
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
    rows = tuples(sql, [orjson.dumps(accounted).decode(), where.metric_type, *where.params])
    return _blocks(accounted, rows, HOUR_MS)


def tiered_days(tuples: Tuples, where: Filter, days: Sequence[int], *, with_sketch: bool) -> dict[int, Block]:
    """Of ``days``, those whose matching window rows may be replaced by their daily rows (see the
    module docstring), by start."""
    if not days:
        return {}
    totals = tuples(_DAY_TOTALS, [where.metric_type, where.metric_type, orjson.dumps(list(days)).decode()])
    accounted = [int(d) for d, windows, merged in totals if windows == merged]
    if not accounted:
        return {}
    sketch = "d.sketch" if with_sketch else "NULL"
    sql = (
        "SELECT d.day_start, d.windows, d.final_windows, d.window_ms, d.coverage, d.count, d.sum, d.min, d.max, "
        f"{sketch}, (SELECT c.windows FROM metric_rollup_day_counts AS c WHERE c.metric_type = d.metric_type "
        "AND c.day_start = d.day_start AND c.series = d.series) "
        "FROM json_each(?) AS a CROSS JOIN metric_rollups_daily AS d "
        f"WHERE d.metric_type = ? AND d.day_start = a.value{where.sql_for('d')}"
    )
    rows = tuples(sql, [orjson.dumps(accounted).decode(), where.metric_type, *where.params])
    return _blocks(accounted, rows, DAY_MS)


def hours_of_days(tuples: Tuples, where: Filter, days: Mapping[int, Block], hours: Sequence[int], *,
                  with_sketch: bool) -> dict[int, Block]:
    """Of ``hours``, those inside one of ``days`` (blocks that :func:`tiered_days` vouched for,
    whether or not the whole day is in the range) read from their hourly rows, by start.

    A vouched-for day's proof covers its hours: its matching daily rows merged all their series'
    windows of the day, all final (a daily row's ``windows`` adds its hourly rows', which count the
    windows inside their hour, so every window of the series starting in the day lies inside one
    of its hours and is counted there), and the window counts of every series of the metric add up
    to the daily rows' ``windows``. So each matching hourly row of such a day merged exactly its
    series' windows of the hour, all final, of the day's one size: the hour needs no counting
    again. Its windows are the day's runs cut to the hour. A row that says otherwise (not
    complete, another size) leaves its hour to :func:`tiered_hours`. With ``with_sketch`` the
    rows come one per series; without, one per hour summed in SQL (a series needs only counts and
    sums)."""
    inside = [h for h in hours if h - h % DAY_MS in days]
    if not inside:
        return {}
    picked = "h.hour_start, h.windows = h.final_windows, h.window_ms, h.window_ms, h.count, h.sum, h.min, h.max, h.sketch"
    if not with_sketch:
        picked = ("h.hour_start, MIN(CASE WHEN h.windows = h.final_windows THEN 1 ELSE 0 END), MIN(h.window_ms), MAX(h.window_ms), SUM(h.count), "
                  "SUM(h.sum), MIN(h.min), MAX(h.max), NULL")
    rows = tuples(
        f"SELECT {picked} FROM json_each(?) AS a CROSS JOIN metric_rollups_hourly AS h "
        f"WHERE h.metric_type = ? AND h.hour_start = a.value{where.sql_for('h')}"
        + ("" if with_sketch else " GROUP BY h.hour_start"),
        [orjson.dumps(inside).decode(), where.metric_type, *where.params],
    )
    found: dict[int, list[tuple[Any, ...]]] = {h: [] for h in inside}
    sizes: dict[int, set[Any]] = {h: set() for h in inside}
    refused: set[int] = set()
    for row in rows:
        hour = int(row[0])
        found[hour].append(row)
        sizes[hour].update(row[2:4])
        if not row[1] or row[2] is None:
            refused.add(hour)
    out: dict[int, Block] = {}
    for hour, members in found.items():
        if hour in refused or len(sizes[hour]) > 1:
            continue
        end = hour + HOUR_MS
        day_runs = days[hour - hour % DAY_MS].runs
        out[hour] = Block(
            HOUR_MS,
            tuple(RollupRow(hour, end, 1, r[4], math.nan if r[5] is None else r[5], r[6], r[7], r[8]) for r in members),
            tuple((max(lo, hour), min(hi, end)) for lo, hi in day_runs if lo < end and hi > hour),
        )
    return out


def span_pieces(days: Mapping[int, Block], segments: Sequence[Interval], start: int,
                bucket_ms: int | None) -> list[Interval]:
    """The spans of whole windows that :func:`spans_of_days` may read: ``segments`` cut to the
    vouched-for ``days`` that have windows, at hour and bucket boundaries, and shrunk to the
    day's window grid (windows of a tiered size are aligned to the hour)."""
    out: list[Interval] = []
    for lo, hi in segments:
        day = lo - lo % DAY_MS
        while day < hi:
            block = days.get(day)
            size = None if block is None else block.window_ms
            if size is not None:
                cuts = {max(lo, day), min(hi, day + DAY_MS)}
                a, b = min(cuts), max(cuts)
                cuts.update(range(a - a % HOUR_MS + HOUR_MS, b, HOUR_MS))
                if bucket_ms is not None:
                    first = start + -(-(a - start) // bucket_ms) * bucket_ms
                    cuts.update(range(first, b, bucket_ms))
                edges = sorted(cuts)
                for p, q in zip(edges, edges[1:]):
                    p2, q2 = day + -(-(p - day) // size) * size, day + (q - day) // size * size
                    if p2 < q2:
                        out.append((p2, q2))
            day += DAY_MS
    return out


def spans_of_days(tuples: Tuples, where: Filter, days: Mapping[int, Block], pieces: Sequence[Interval]) -> dict[int, Block]:
    """Of ``pieces`` (:func:`span_pieces`), those whose window rows are what the day's proof says
    (every matching one final, of the day's size, inside the piece), by start, each as one row of
    their counts and sums, summed in SQL (what a time series needs), instead of planning them
    window by window. The proof is :func:`hours_of_days`', for windows: every matching window of
    a vouched-for day is final, of the day's one size, and inside one of its hours."""
    if not pieces:
        return {}
    rows = tuples(
        SEGMENTS_CTE + "SELECT seg.lo, MIN(r.final), MIN(r.window_end - r.window_start), MAX(r.window_end - r.window_start), "
        "MAX(r.window_end), SUM(r.count), SUM(r.sum), MIN(r.min), MAX(r.max) FROM seg CROSS JOIN metric_rollups AS r "
        f"WHERE r.metric_type = ? AND r.window_start >= seg.lo AND r.window_start < seg.hi{where.sql_for('r')} "
        "GROUP BY seg.lo",
        [orjson.dumps([list(p) for p in pieces]).decode(), where.metric_type, *where.params],
    )
    ends = dict(pieces)
    found = {int(row[0]): row for row in rows}
    out: dict[int, Block] = {}
    for lo, hi in pieces:
        day = days[lo - lo % DAY_MS]
        spanned = tuple((max(a, lo), min(b, hi)) for a, b in day.runs if a < hi and b > lo)
        row = found.get(lo)
        if row is None:
            if not spanned:  # no matching window in the piece
                out[lo] = Block(hi - lo, (), (), day.window_ms, True)
            continue
        if not spanned or not row[1] or not row[2] == row[3] == day.window_ms or row[4] > ends[lo]:
            continue
        total = math.nan if row[6] is None else row[6]  # SQLite's SUM of +inf and -inf is NULL
        out[lo] = Block(hi - lo, (RollupRow(lo, hi, 1, row[5], total, row[7], row[8], None),), spanned, day.window_ms, True)
    return out


def _blocks(accounted: Sequence[int], rows: Sequence[tuple[Any, ...]], length: int) -> dict[int, Block]:
    """The blocks of ``accounted`` whose every matching tier row (``block_start, windows,
    final_windows, window_ms, coverage, count, sum, min, max, sketch, stored windows``) merged
    all of its series' windows in the block, all final, of the one size of every such row."""
    members: dict[int, list[tuple[Any, ...]]] = {b: [] for b in accounted}
    refused: set[int] = set()
    for row in rows:
        block, windows, final_windows, window_ms, stored = row[0], row[1], row[2], row[3], row[10]
        if window_ms is None or not windows == final_windows == stored:
            refused.add(block)
        members[block].append(row)
    out: dict[int, Block] = {}
    for block, found in members.items():
        sizes = {row[3] for row in found}
        if block in refused or len(sizes) > 1:
            continue
        mask = 0
        for row in found:
            mask |= int(row[4], 16)
        size = sizes.pop() if found else None
        out[block] = Block(
            length,
            tuple(RollupRow(block, block + length, 1, *row[5:10]) for row in found),
            runs(block, size, mask, length) if size is not None else (), size,
        )
    return out


def joined_hours(hours: Mapping[int, Block], start: int, bucket_ms: int) -> dict[int, Block]:
    """For a time series (sums only, no sketches): each stretch of consecutive hour blocks
    inside one bucket as one block, keyed by its first hour, whose one row sums their rows'
    counts and sums (the bucket gets the same count and total either way) and whose runs are
    theirs, adjacent ones joined. A month of day buckets so plans ~30 blocks instead of ~700.

    Only blocks of one window size (or none: an hour vouched empty) are joined. A window that
    overlaps a joined run spoils the whole stretch, which the plan then reads finer: the same
    answer, from finer rows (an hour block alone is spoiled by the same windows)."""
    out: dict[int, Block] = {}
    group: list[tuple[int, Block]] = []

    def flush() -> None:
        if len(group) == 1:
            out[group[0][0]] = group[0][1]
        elif group:
            first, last = group[0][0], group[-1][0] + group[-1][1].length
            rows = [r for _, block in group for r in block.rows]
            mins = [r.min for r in rows if r.min is not None]
            maxes = [r.max for r in rows if r.max is not None]
            row = RollupRow(first, last, 1, sum(r.count for r in rows), sum(r.sum for r in rows) if rows else 0.0,
                            min(mins) if mins else None, max(maxes) if maxes else None, None)
            joined: list[Interval] = []
            for _, block in group:
                for lo, hi in block.runs:
                    if joined and joined[-1][1] == lo:
                        joined[-1] = (joined[-1][0], hi)
                    else:
                        joined.append((lo, hi))
            out[first] = Block(last - first, (row,) if rows else (), tuple(joined), size)
        group.clear()

    size: int | None = None  # of the group's blocks that have one
    for h in sorted(hours):
        block = hours[h]
        if block.span or block.known or block.length != HOUR_MS:
            flush()
            out[h] = block
            continue
        if group and (h != group[-1][0] + HOUR_MS or (h - start) // bucket_ms != (group[-1][0] - start) // bucket_ms
                      or (block.window_ms is not None and size is not None and block.window_ms != size)):
            flush()
        if not group:
            size = None
        group.append((h, block))
        size = block.window_ms if size is None else size
    flush()
    return out
