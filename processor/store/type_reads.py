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
from processor.store.sqltext import DAY_MS, HOUR_MS
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
                 with_sketch: bool) -> tuple[dict[int, Block], dict[int, Block]]:
    """Of ``days`` and ``hours`` (block starts), those the tier vouches for (see the module
    docstring), each as a block of its one row (or of none), by start; hours inside a day read
    whole are left out."""
    touched = sorted({*days, *(h - h % DAY_MS for h in hours)})
    accounted, vouched = _proven(tuples, "day", where, touched)
    day_blocks = _read(tuples, "type_days", "day_start", where, [d for d in days if d in vouched], DAY_MS,
                       with_sketch=with_sketch)
    hours = [h for h in hours if h - h % DAY_MS not in day_blocks]
    counted = [h for h in hours if h - h % DAY_MS not in accounted]
    proven = _proven(tuples, "hour", where, counted)[1]
    wanted = [h for h in hours if h - h % DAY_MS in accounted or h in proven]
    return day_blocks, _read(tuples, "type_hours", "hour_start", where, wanted, HOUR_MS, with_sketch=with_sketch)


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


_HOUR_WINDOWS = (
    "SELECT a.value, CASE WHEN (SELECT COALESCE(SUM(c.windows), 0) FROM metric_rollup_day_counts AS c "
    f"WHERE c.metric_type = ? AND c.day_start = a.value - a.value % {DAY_MS}) = (SELECT t.windows FROM type_days AS t "
    f"WHERE t.metric_type = ? AND t.tenant = '' AND t.day_start = a.value - a.value % {DAY_MS}) "
    "THEN COALESCE((SELECT t.windows FROM type_hours AS t WHERE t.metric_type = ? AND t.tenant = '' "
    "AND t.hour_start = a.value), 0) "
    "ELSE (SELECT COUNT(*) FROM metric_rollups AS m WHERE m.metric_type = ? AND m.window_start >= a.value "
    f"AND m.window_start < a.value + {HOUR_MS}) END, "
    "(SELECT COALESCE(SUM(w.windows), 0) FROM type_windows AS w WHERE w.metric_type = ? AND w.window_start >= a.value "
    f"AND w.window_start < a.value + {HOUR_MS}) FROM json_each(?) AS a"
)
"""Per hour (a JSON list of hour starts): its window rows of the metric, every series (from the
hour's type row in a day whose type row accounts for its windows, see :func:`_proven`; else
counted from the primary key), and the windows its type window rows merged."""


def typed_windows(tuples: Tuples, where: Filter, segments: Sequence[tuple[int, int]], start: int,
                  bucket_ms: int | None, *, with_sketch: bool) -> dict[int, Block]:
    """Of ``segments`` (the parts of ``[start, end)`` that no block covers), the stretches of
    windows that the per-metric-type window tier (schema 11, ``type_windows``) stands in for,
    each as a block of its type window rows (one summed row without ``with_sketch``: what a time
    series needs), by start. Only without a tenant or label filter (the tier is across tenants).

    A stretch lies inside one hour and one bucket whose windows the tier accounts for: the type
    window rows that start in the hour merged as many windows as the hour holds, over every
    series (in a day whose windows the type tier accounts for, see :func:`_proven`, the hour's
    ``type_hours`` row of every tenant counts them, since every window of such a day lies inside
    one of its hours; in another day, counted from the primary key). Each of its rows stands for
    all its window rows (``windows == final_windows``, a ``window_ms``: all final, one size), its
    window ends inside the stretch, and no other type window row starts inside it; a stretch is a
    run of such rows with no other row between them. So the stretch holds exactly the windows a
    window-by-window plan would read from its rows (a window starting outside it that overlaps it
    is read by the plan, which then sends the stretch back, as it does a block)."""
    if where.tenant_id is not None or where.labels or not segments:
        return {}
    hours = sorted({h for lo, hi in segments for h in range(lo - lo % HOUR_MS, hi, HOUR_MS)})
    found = tuples(_HOUR_WINDOWS, [*(where.metric_type,) * 5, orjson.dumps(hours).decode()])
    proven = {int(h) for h, held, merged in found if held == merged}
    pieces = _pieces(segments, proven, start, bucket_ms)
    if not pieces:
        return {}
    sketch = "t.sketch" if with_sketch else "NULL"
    rows = tuples(
        "WITH seg(lo, hi) AS (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?)) "
        "SELECT seg.lo, t.window_start, t.windows, t.final_windows, t.window_ms, t.count, t.sum, t.min, t.max, "
        f"{sketch} FROM seg CROSS JOIN type_windows AS t WHERE t.metric_type = ? AND t.window_start >= seg.lo "
        "AND t.window_start < seg.hi",
        [orjson.dumps([list(p) for p in pieces]).decode(), where.metric_type],
    )
    by_piece: dict[int, list[tuple[Any, ...]]] = {}
    for row in rows:
        by_piece.setdefault(int(row[0]), []).append(row)
    out: dict[int, Block] = {}
    for lo, hi in pieces:
        found = sorted(by_piece.get(lo, ()), key=lambda r: int(r[1]))
        stretch: list[tuple[Any, ...]] = []
        for i, row in enumerate(found):
            at, size = int(row[1]), row[4]
            after = int(found[i + 1][1]) if i + 1 < len(found) else hi
            if row[2] == row[3] and size is not None and size > 0 and at + size <= min(after, hi):
                stretch.append(row)
            else:
                _stretch(out, stretch, with_sketch=with_sketch)
                stretch = []
        _stretch(out, stretch, with_sketch=with_sketch)
    return out


def _pieces(segments: Sequence[tuple[int, int]], hours: set[int], start: int, bucket_ms: int | None) -> list[tuple[int, int]]:
    """``segments`` cut at hour and bucket boundaries, the pieces inside ``hours`` (proven)."""
    out: list[tuple[int, int]] = []
    for lo, hi in segments:
        cuts = {lo, hi, *range(lo - lo % HOUR_MS + HOUR_MS, hi, HOUR_MS)}
        if bucket_ms is not None:
            cuts.update(range(start + -(-(lo - start) // bucket_ms) * bucket_ms, hi, bucket_ms))
        edges = sorted(c for c in cuts if lo <= c <= hi)
        out += [(p, q) for p, q in zip(edges, edges[1:]) if p < q and p - p % HOUR_MS in hours]
    return out


def _stretch(out: dict[int, Block], rows: Sequence[tuple[Any, ...]], *, with_sketch: bool) -> None:
    """The block of a run of type window rows (``piece, window_start, windows, final_windows,
    window_ms, count, sum, min, max, sketch``), into ``out`` by its start."""
    if not rows:
        return
    first, last = int(rows[0][1]), int(rows[-1][1]) + rows[-1][4]
    windows = [(int(r[1]), int(r[1]) + r[4]) for r in rows]
    joined: list[tuple[int, int]] = []
    for lo, hi in windows:
        if joined and joined[-1][1] == lo:
            joined[-1] = (joined[-1][0], hi)
        else:
            joined.append((lo, hi))
    sizes = {r[4] for r in rows}
    size = sizes.pop() if len(sizes) == 1 else None
    if with_sketch:
        made = tuple(RollupRow(lo, hi, 1, r[5], math.nan if r[6] is None else r[6], r[7], r[8], r[9])
                     for (lo, hi), r in zip(windows, rows))
    else:
        lows = [r[7] for r in rows if r[7] is not None]
        highs = [r[8] for r in rows if r[8] is not None]
        total = 0.0
        for r in rows:
            total += math.nan if r[6] is None else r[6]
        made = (RollupRow(first, last, 1, sum(r[5] for r in rows), total, min(lows, default=None),
                          max(highs, default=None), None),)
    out[first] = Block(last - first, made, tuple(joined), size, True)
