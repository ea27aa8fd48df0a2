"""Which blocks of a metric range (whole hours, whole UTC days) the per-metric-type tier may stand
in for (schema 10, see :mod:`processor.store.type_tier`): a query with no label filter reads one
row per block (of its tenant, or across tenants) instead of one per series.

A block is read from its type row only when it provably stands for exactly the window rows
stored, all final, all of one size that divides the block (the proof of
:mod:`processor.store.tier_reads`, made once per block for the row read: of the tenant filtered
on, or across tenants):

* **days**: the window rows of the metric (of the tenant's series) that start in the day, counted
  by the triggers (``metric_rollup_day_counts``), add up to the ``windows`` of the day's row of
  that scope, which equals its ``final_windows``, with a ``window_ms``. A type row's ``windows`` adds
  its daily rows', each of which counts only windows inside its hours and never more than its
  series has, so the equality says that every series with windows in the day has a daily row
  that counts all of them; ``final_windows == windows`` says that every one of those rows is
  complete (its hours all final), and ``window_ms`` that they share one size;
* **hours**: the type row of the hour is complete (``windows == final_windows``) and sized, and
  its windows are accounted for: by the day's count alone when it equals the day's ``windows``
  (whether or not the day is complete: each series' daily row then counts all its windows of
  the day, so each of its hourly rows all those of its hour), else by the window rows of the
  metric (of the tenant) that start in the hour, counted from the primary key.

The row read is the one proven, the tenant's (``tenant_id`` given) or the one across tenants; it
merged the same complete finer rows the per-series tiers would read (a tenant without windows in a vouched
block has no row: its block is empty), and its ``coverage`` or-s their windows, given as runs so
that the planner can check that no other window overlaps them (a window that no series has is
read raw, as before). A tenant filter of ``''`` and any label filter are not read from this tier.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import orjson

from processor.store.range_plan import runs
from processor.store.sqltext import DAY_MS, HOUR_MS, SEGMENTS_CTE
from processor.store.tier_reads import Block, Filter, RollupRow, Tuples

_PROOF = (
    "SELECT a.value, ({counted}), "
    "(SELECT t.windows FROM {table} AS t WHERE t.metric_type = ? AND t.tenant = ? AND t.{start} = a.value), "
    "(SELECT t.final_windows FROM {table} AS t WHERE t.metric_type = ? AND t.tenant = ? AND t.{start} = a.value), "
    "(SELECT t.window_ms FROM {table} AS t WHERE t.metric_type = ? AND t.tenant = ? AND t.{start} = a.value) "
    "FROM json_each(?) AS a"
)
_COUNTED = {
    ("day", False): "SELECT COALESCE(SUM(c.windows), 0) FROM metric_rollup_day_counts AS c WHERE c.metric_type = ? "
    "AND c.day_start = a.value",
    ("day", True): "SELECT COALESCE(SUM(c.windows), 0) FROM series AS s CROSS JOIN metric_rollup_day_counts AS c "
    "WHERE s.metric_type = ? AND s.tenant_id = ? AND c.metric_type = s.metric_type AND c.day_start = a.value "
    "AND c.series = s.key",
    ("hour", False): "SELECT COUNT(*) FROM metric_rollups AS m WHERE m.metric_type = ? AND m.window_start >= a.value "
    f"AND m.window_start < a.value + {HOUR_MS}",
    ("hour", True): "SELECT COUNT(*) FROM metric_rollups AS m WHERE m.metric_type = ? AND m.tenant_id = ? "
    f"AND m.window_start >= a.value AND m.window_start < a.value + {HOUR_MS}",
}
"""The window rows of the metric (of one tenant: ``True``) that start in a day (as the triggers
counted them) or an hour (counted from the primary key)."""
_PROOFS = {
    (level, tenant): _PROOF.format(counted=counted, table=f"type_{level}s", start=f"{level}_start")
    for (level, tenant), counted in _COUNTED.items()
}


def typed(where: Filter) -> bool:
    """Whether the per-metric-type tier can answer ``where``: no label filter, and any tenant but
    ``''`` (the tier keeps the series of an empty tenant id only across tenants)."""
    return not where.labels and where.tenant_id != ""


def typed_blocks(tuples: Tuples, where: Filter, days: Sequence[int], hours: Sequence[int], *,
                 with_sketch: bool, buckets: tuple[int, int] | None = None) -> tuple[dict[int, Block], dict[int, Block]]:
    """Of ``days`` and ``hours`` (block starts), those the tier vouches for (see the module
    docstring), each as a block of its one row (or of none), by start; hours inside a day read
    whole are left out. With ``buckets`` (a time series' start and bucket length; no sketches),
    each stretch of vouched-for consecutive hours inside one bucket is first summed in SQL
    (:func:`summed_stretches`): a block keyed by its first hour, spanning the stretch."""
    touched = sorted({*days, *(h - h % DAY_MS for h in hours)})
    accounted, vouched = _proven(tuples, "day", where, touched)
    day_blocks = _read(tuples, "type_days", "day_start", where, [d for d in days if d in vouched], DAY_MS,
                       with_sketch=with_sketch)
    hours = [h for h in hours if h - h % DAY_MS not in day_blocks]
    counted = [h for h in hours if h - h % DAY_MS not in accounted]
    proven = _proven(tuples, "hour", where, counted)[1]
    wanted = [h for h in hours if h - h % DAY_MS in accounted or h in proven]
    summed: dict[int, Block] = {}
    if buckets is not None and not with_sketch:
        summed = summed_stretches(tuples, where, stretches(wanted, *buckets))
        inside = {h for b, block in summed.items() for h in range(b, b + block.length, HOUR_MS)}
        wanted = [h for h in wanted if h not in inside]
    return day_blocks, {**summed, **_read(tuples, "type_hours", "hour_start", where, wanted, HOUR_MS,
                                          with_sketch=with_sketch)}


def stretches(hours: Sequence[int], start: int, bucket_ms: int) -> list[tuple[int, int]]:
    """``hours`` (ascending starts) as the stretches ``[lo, hi)`` of two or more consecutive ones
    inside one bucket ``[start + k bucket_ms, start + (k + 1) bucket_ms)``. Pure."""
    out: list[tuple[int, int]] = []
    at = 0
    while at < len(hours):
        lo = hours[at]
        end = at + 1
        while (end < len(hours) and hours[end] == hours[end - 1] + HOUR_MS
               and (hours[end] - start) // bucket_ms == (lo - start) // bucket_ms):
            end += 1
        if end - at > 1:
            out.append((lo, hours[end - 1] + HOUR_MS))
        at = end
    return out


_STRETCH_SUMS = (
    SEGMENTS_CTE + "SELECT seg.lo, COUNT(*), SUM(CASE WHEN t.windows = t.final_windows THEN 1 ELSE 0 END), COUNT(t.window_ms), MIN(t.window_ms), "
    "MAX(t.window_ms), MIN(t.coverage), MAX(t.coverage), SUM(t.count), COUNT(t.sum), SUM(t.sum), MIN(t.min), "
    "MAX(t.max) FROM seg CROSS JOIN type_hours AS t "
    "WHERE t.metric_type = ? AND t.tenant = ? AND t.hour_start >= seg.lo AND t.hour_start < seg.hi GROUP BY seg.lo"
)


def summed_stretches(tuples: Tuples, where: Filter, spans: Sequence[tuple[int, int]]) -> dict[int, Block]:
    """Of ``spans`` (stretches of vouched-for hours, :func:`stretches`), those whose every hour
    has its type row, complete, of one window size for the whole stretch, every window of the
    hour there (full coverage), each as one block of their counts and sums (what a time series
    needs): the rows :func:`_read` would give hour by hour, with the same count, total and
    windows (one run, the stretch), summed in SQL. A stretch that is not so (an hour without
    windows, or with some missing, of another size, not complete) is left out, for its hours to
    be read one by one."""
    if not spans:
        return {}
    rows = tuples(_STRETCH_SUMS, [orjson.dumps([list(s) for s in spans]).decode(), where.metric_type,
                                  where.tenant_id or ""])
    ends = dict(spans)
    out: dict[int, Block] = {}
    for lo, n, complete, sized, low_ms, high_ms, low_cov, high_cov, count, totals, total, least, most in rows:
        lo = int(lo)
        hi = ends[lo]
        if not n == complete == sized == (hi - lo) // HOUR_MS or low_ms != high_ms or not low_ms or HOUR_MS % low_ms:
            continue
        if not low_cov == high_cov == format((1 << (HOUR_MS // low_ms)) - 1, "x"):
            continue
        total = math.nan if totals < n or total is None else total  # a NULL sum: not a number
        out[lo] = Block(hi - lo, (RollupRow(lo, hi, 1, int(count), total, least, most, None),), ((lo, hi),), low_ms)
    return out


def _proven(tuples: Tuples, level: str, where: Filter, blocks: Sequence[int]) -> tuple[set[int], set[int]]:
    """Of ``blocks``, those whose window rows (of the tenant, or of every series) the type row of
    the same scope accounts for (their count is its ``windows``), and of those the ones whose
    windows are all final, of one size (vouched for)."""
    if not blocks:
        return set(), set()
    tenant = where.tenant_id or ""
    counting = [where.metric_type, *([tenant] if tenant else [])]
    found = tuples(_PROOFS[(level, bool(tenant))],
                   [*counting, *(where.metric_type, tenant) * 3, orjson.dumps(list(blocks)).decode()])
    accounted = {int(row[0]) for row in found if row[1] == (row[2] or 0)}
    vouched = {int(b) for b, _, windows, final_windows, window_ms in found
               if b in accounted and windows == final_windows and (windows is None or window_ms is not None)}
    return accounted, vouched


def _read(tuples: Tuples, table: str, start: str, where: Filter, blocks: Sequence[int], length: int, *,
          with_sketch: bool) -> dict[int, Block]:
    """The vouched-for ``blocks`` as blocks of their type row of ``where``'s tenant (or across
    tenants); a block whose row is not complete, or of no one size, is left out."""
    if not blocks:
        return {}
    sketch = "t.sketch" if with_sketch else "NULL"
    rows = tuples(
        f"SELECT t.{start}, t.windows, t.final_windows, t.window_ms, t.coverage, t.count, t.sum, t.min, t.max, "
        f"{sketch} FROM json_each(?) AS a CROSS JOIN {table} AS t "
        f"WHERE t.metric_type = ? AND t.tenant = ? AND t.{start} = a.value",
        [orjson.dumps(list(blocks)).decode(), where.metric_type, where.tenant_id or ""],
    )
    found: dict[int, tuple[Any, ...]] = {int(r[0]): r for r in rows}
    out: dict[int, Block] = {}
    for b in blocks:
        row = found.get(b)
        if row is None:
            out[b] = Block(length, (), ())
            continue
        windows, final_windows, size = row[1], row[2], row[3]
        if size is None or windows != final_windows:
            continue
        total = math.nan if row[6] is None else row[6]
        out[b] = Block(
            length, (RollupRow(b, b + length, 1, row[5], total, row[7], row[8], row[9]),),
            runs(b, size, int(row[4], 16), length) if row[4] else (), size,
        )
    return out

