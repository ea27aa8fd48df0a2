"""Which windows of a metric range the per-metric-type window tier (schema 11, ``type_windows``,
see :mod:`processor.store.type_windows`) may stand in for: a query with no tenant or label filter
reads one row per window start instead of one per series, in the parts of the range that no hour
or day block covers (the hours cut by the range's ends or by buckets' edges).

**The proof** (the discipline of :mod:`processor.store.type_reads`: the rows of the scope account
for every window row stored, all final, of one size). A window is read from the tier only inside
an hour whose windows the tier accounts for: the type window rows that start in the hour merged
as many windows as the hour holds, over every series. The hour's windows are counted by its
``type_hours`` row across tenants in a day whose ``type_days`` row accounts for the day's windows
(the trigger-kept counts agree: every window of such a day lies inside one of its hours, and each
series' hourly rows count all of its windows there), and from the primary key in any other day.
Inside such an hour a type window row stands for all its window rows when ``windows ==
final_windows`` (all final) and it has a ``window_ms`` (one size); it is read when its windows end
inside the stretch read (one hour, one bucket, the range) and no other type window row starts
before they end. A **stretch** is a run of such rows with no other row between them, read as a
block of their rows (an aggregation merges their sketches) or, for a time series, of their sums
(in SQL when the stretch is a whole piece of windows of one size, aligned, with no gap; row by row
otherwise). So a stretch holds exactly the windows a window-by-window plan would read from their
rows: a window that starts outside it and overlaps it is read by the plan, which then sends the
stretch back, as it does a block.

**Known windows.** A row that would stand for its windows but for their end, past a bucket's edge
or the range's end (never past its hour's end), with no other row starting before that end, is a
block of no rows whose windows are ``known``: no plan covers them, so they are read raw, and the
plan knows them without reading their rows, to refuse any window that overlaps them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import orjson

from processor.store.sqltext import DAY_MS, HOUR_MS
from processor.store.tier_reads import Block, Filter, RollupRow, Tuples

Piece = tuple[int, int]
"""A stretch of the range inside one hour and one bucket: ``[lo, hi)``."""

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
"""Per hour (a JSON list of hour starts): its window rows of the metric, every series (see the
module docstring), and the windows its type window rows merged."""
_SEG = "WITH seg(lo, hi) AS MATERIALIZED (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?)) "
_ROWS = (
    _SEG + "SELECT seg.lo, t.window_start, t.windows, t.final_windows, t.window_ms, t.count, t.sum, t.min, t.max, "
    "{sketch} FROM seg CROSS JOIN type_windows AS t WHERE t.metric_type = ? AND t.window_start >= seg.lo "
    "AND t.window_start < seg.hi ORDER BY seg.lo, t.window_start"
)
_INSIDE = "t.window_start + t.window_ms <= seg.hi"
_SUMMED = (
    _SEG + "SELECT seg.lo, COUNT(*), SUM(CASE WHEN t.windows = t.final_windows THEN 1 ELSE 0 END), COUNT(t.window_ms), "
    "MIN(t.window_ms), MAX(t.window_ms), MAX(t.window_start % t.window_ms), MIN(t.window_start), "
    f"SUM(CASE WHEN {_INSIDE} THEN 1 ELSE 0 END), MAX(CASE WHEN {_INSIDE} THEN t.window_start + t.window_ms END), "
    f"SUM(CASE WHEN {_INSIDE} THEN t.count END), SUM(CASE WHEN {_INSIDE} THEN t.sum END), "
    f"SUM(CASE WHEN {_INSIDE} AND t.sum IS NULL THEN 1 ELSE 0 END), MIN(CASE WHEN {_INSIDE} THEN t.min END), "
    f"MAX(CASE WHEN {_INSIDE} THEN t.max END), MAX(CASE WHEN NOT ({_INSIDE}) THEN t.window_start END) "
    "FROM seg CROSS JOIN type_windows AS t WHERE t.metric_type = ? AND t.window_start >= seg.lo "
    "AND t.window_start < seg.hi GROUP BY seg.lo"
)
"""Per piece, its type window rows summed: how many, how many whole (all final), sized, their
least and greatest size, their greatest offset from their size's grid, the first start; of those
whose windows end inside the piece: how many, the last end, count, sum (and how many sums are not
a number), min, max; and the start of the last row whose windows do not."""


def typed_windows(tuples: Tuples, where: Filter, segments: Sequence[Piece], start: int, end: int,
                  bucket_ms: int | None, *, with_sketch: bool) -> dict[int, Block]:
    """Of ``segments`` (the parts of ``[start, end)`` that no block covers), the stretches of
    windows that the tier stands in for and its known windows (see the module docstring), as
    blocks by start. Only without a tenant or label filter (the tier is across tenants)."""
    if where.tenant_id is not None or where.labels or not segments:
        return {}
    hours = sorted({h for lo, hi in segments for h in range(lo - lo % HOUR_MS, hi, HOUR_MS)})
    found = tuples(_HOUR_WINDOWS, [*(where.metric_type,) * 5, orjson.dumps(hours).decode()])
    proven = {int(h) for h, held, merged in found if held == merged}
    pieces = _pieces(segments, proven, start, bucket_ms)
    if not pieces:
        return {}
    out: dict[int, Block] = {}
    first: dict[int, int] = {}
    """Piece start -> the first type window row's start in it."""
    rowwise = pieces
    if not with_sketch:
        summed = {int(r[0]): r for r in tuples(_SUMMED, [_pieces_json(pieces), where.metric_type])}
        first = {lo: int(r[7]) for lo, r in summed.items()}
        rowwise = [p for p in pieces if p[0] in summed and not _summed(out, p, summed[p[0]], first, start, end, bucket_ms)]
    if not rowwise:
        return out
    by_piece: dict[int, list[tuple[Any, ...]]] = {}
    rows = tuples(_ROWS.format(sketch="t.sketch" if with_sketch else "NULL"), [_pieces_json(rowwise), where.metric_type])
    for row in rows:
        by_piece.setdefault(int(row[0]), []).append(row)
        first.setdefault(int(row[0]), int(row[1]))
    for piece in rowwise:
        _rowwise(out, piece, by_piece.get(piece[0], []), first, start, end, bucket_ms, with_sketch=with_sketch)
    return out


def _summed(out: dict[int, Block], piece: Piece, row: Sequence[Any], first: dict[int, int], start: int, end: int,
            bucket_ms: int | None) -> bool:
    """The piece as one block of its summed rows (and its known window), when its rows are all
    whole, of one size, on that size's grid, with no gap and at most the last one ending past the
    piece; ``False`` (nothing added) otherwise: the piece is read row by row."""
    lo, hi = piece
    n, whole, sized, least, most, off_grid, _, inside, last_end, count, total, nans, low, high, crossing = row[1:]
    if not (n == whole == sized and least == most and off_grid == 0 and nans == 0 and n - inside <= 1):
        return False
    size, begin = int(least), int(row[7])
    if inside and (last_end - begin) != inside * size:
        return False  # a gap: read row by row (a gap's raw samples are read raw)
    if inside:
        total = math.nan if total is None else total
        out[begin] = Block(last_end - begin, (RollupRow(begin, last_end, 1, count, total, low, high, None),),
                           ((begin, last_end),), size, True)
    if crossing is not None:
        _known(out, int(crossing), size, piece, first, start, end, bucket_ms)
    return True


def _rowwise(out: dict[int, Block], piece: Piece, found: Sequence[tuple[Any, ...]], first: dict[int, int], start: int,
             end: int, bucket_ms: int | None, *, with_sketch: bool) -> None:
    """The stretches (and known window) of one piece from its type window rows (``piece,
    window_start, windows, final_windows, window_ms, count, sum, min, max, sketch``, in order)."""
    lo, hi = piece
    stretch: list[tuple[Any, ...]] = []
    for i, row in enumerate(found):
        at, size = int(row[1]), row[4]
        after = int(found[i + 1][1]) if i + 1 < len(found) else hi
        whole = row[2] == row[3] and size is not None and size > 0
        if whole and at + size <= min(after, hi):
            stretch.append(row)
            continue
        _stretch(out, stretch, with_sketch=with_sketch)
        stretch = []
        if whole and after == hi:
            _known(out, at, int(size), piece, first, start, end, bucket_ms)
    _stretch(out, stretch, with_sketch=with_sketch)


def _known(out: dict[int, Block], at: int, size: int, piece: Piece, first: dict[int, int], start: int, end: int,
           bucket_ms: int | None) -> None:
    """The last row of ``piece`` (whole, its windows ending past the piece) as a block of known
    windows, when the piece ends at a bucket's edge or the range's end, the windows end inside
    their hour, and the next piece's first row (the same hour's) starts at their end or later."""
    lo, hi = piece
    edge = hi == end or (bucket_ms is not None and (hi - start) % bucket_ms == 0)
    after = first.get(hi)
    if edge and at + size <= at - at % HOUR_MS + HOUR_MS and (after is None or after >= at + size):
        out[at] = Block(size, (), (), size, True, ((at, at + size),))


def _pieces_json(pieces: Sequence[Piece]) -> str:
    return orjson.dumps([list(p) for p in pieces]).decode()


def _pieces(segments: Sequence[Piece], hours: set[int], start: int, bucket_ms: int | None) -> list[Piece]:
    """``segments`` cut at hour and bucket boundaries, the pieces inside ``hours`` (proven)."""
    out: list[Piece] = []
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
    begin, last = int(rows[0][1]), int(rows[-1][1]) + rows[-1][4]
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
        made = (RollupRow(begin, last, 1, sum(r[5] for r in rows), total, min(lows, default=None),
                          max(highs, default=None), None),)
    out[begin] = Block(last - begin, made, tuple(joined), size, True)
