"""The hourly tier: ``metric_rollups_hourly``, kept by the sink in its transaction (see
:mod:`processor.store.metric_queries` for when a query may read it)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from processor.folds.sketch_codec import encode, merge_encoded
from processor.store.conn import Connection
from processor.store.series import write_tier_rows
from processor.store.sqltext import HOUR_MS

#
# A row of metric_rollups_hourly is a pure function of the metric_rollups rows of its series that
# start in its hour (hourly_row). The sink keeps it so after every write: by recomputing it from
# the window rows stored (the general way), or, when a batch only adds windows, updates open ones
# or makes open ones final after the newest final one (how the worker publishes, and how a replay
# or a sink catching up writes), by advancing the stored row (_advanced), which gives the same
# row: counts, extremes and sketch buckets add exactly, and the sum adds the final windows' sums
# in time order either way.


MAX_HOURLY_WINDOWS = 3_600
"""Windows of an hour that the ``coverage`` mask may describe (windows of a second or more):
the hours of smaller windows are not tiered."""
HOURLY_COLUMNS = (
    "series", "hour_start", "hour_end", "tenant_id", "metric_type", "labels", "unit", "windows", "final_windows",
    "window_ms", "coverage", "count", "sum", "min", "max", "sketch",
)
"""``metric_rollups_hourly``'s columns, in table order (and :func:`hourly_row`'s)."""
_WINDOW_COLUMNS = ("window_start", "window_end", "tenant_id", "metric_type", "labels", "unit", "count", "sum", "min",
                   "max", "sketch", "final")
"""A window row as :func:`hourly_row` takes it."""
_HOUR_WINDOWS = (
    f"SELECT {', '.join(_WINDOW_COLUMNS)} FROM metric_rollups WHERE series = ? AND window_start >= ? "
    "AND window_start < ? ORDER BY window_start"
)
_CHUNK = 500

Window = tuple[Any, ...]
"""``(window_start, window_end, tenant_id, metric_type, labels, unit, count, sum, min, max,
sketch, final)``"""


def hour_of(at: int) -> int:
    """The start of the hour holding ``at`` (epoch ms, floored)."""
    return at - at % HOUR_MS


def by_key(conn: Connection, table: str, columns: Sequence[str], second: str,
            keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], tuple[Any, ...]]:
    """The rows of ``table`` whose ``(series, second)`` is one of ``keys`` (those that exist),
    as tuples of ``columns``: one primary-key lookup each, a statement per chunk."""
    out: dict[tuple[str, int], tuple[Any, ...]] = {}
    picked = ", ".join(f"t.{c}" for c in columns)
    for at in range(0, len(keys), _CHUNK):
        chunk = keys[at:at + _CHUNK]
        found = conn.execute(
            f"SELECT k.key, {picked} FROM json_each(?) AS k CROSS JOIN {table} AS t "
            f"WHERE t.series = json_extract(k.value, '$[0]') AND t.{second} = json_extract(k.value, '$[1]')",
            (orjson.dumps(chunk).decode(),),
        )
        for row in found:
            out[chunk[row[0]]] = tuple(row[1:])
    return out


def stored_windows(conn: Connection, rows: Sequence[Sequence[Any]]) -> dict[tuple[str, int], Window]:
    """The stored version of each window row about to be written (those that exist)."""
    return by_key(conn, "metric_rollups", _WINDOW_COLUMNS, "window_start", sorted({(r[0], r[1]) for r in rows}))


@dataclass(frozen=True, slots=True)
class Written:
    """What a batch changed: per (series, hour), the windows starting in it whose row differs
    from before, as ``(before or None, now)``, in time order."""

    changed: dict[tuple[str, int], list[tuple[Window | None, Window]]]

    @classmethod
    def of(cls, rows: Sequence[Sequence[Any]], stored: Mapping[tuple[str, int], Window]) -> Written:
        last = {(row[0], row[1]): row for row in rows}  # as the upsert leaves them
        changed: dict[tuple[str, int], list[tuple[Window | None, Window]]] = {}
        for (series, start), row in sorted(last.items()):
            before = stored.get((series, start))
            now = tuple(row[1:])
            if before is not None:  # the upsert keeps the stored tenant, metric type and labels
                now = (*now[:2], *before[2:5], *now[5:])
            if before != now:
                changed.setdefault((series, hour_of(start)), []).append((before, now))
        return cls(changed)


HourlyChange = tuple[tuple[Any, ...] | None, tuple[Any, ...] | None]
"""An hourly row before and after a refresh (``None``: there was none, there is none now)."""


def refresh_hourly(
    conn: Connection, keys: Iterable[tuple[str, int]], *, written: Written | None = None
) -> dict[tuple[str, int], HourlyChange]:
    """Bring the ``metric_rollups_hourly`` row of each ``(series, hour_start)`` of ``keys``,
    and of each hour whose windows ``written`` changed, up to date with the ``metric_rollups``
    rows stored now: :func:`hourly_row` of them (deleted when there is none). A pure function of
    the window rows, so writing a batch again, or replaying it, gives the same row. The hours of
    ``keys`` are recomputed from their windows; the others are advanced from their stored row
    when :func:`_advanced` can, and recomputed otherwise. Returns the rows that changed, by key,
    as ``(before, after)``, for the day tier (:func:`processor.store.daily.refresh_daily`)."""
    full = set(keys)
    upserts: list[tuple[Any, ...]] = []
    changes: dict[tuple[str, int], HourlyChange] = {}
    stored: dict[tuple[str, int], tuple[Any, ...]] = {}
    if written is not None:
        changed = {k: v for k, v in written.changed.items() if k not in full}
        stored = by_key(conn, "metric_rollups_hourly", HOURLY_COLUMNS, "hour_start", sorted(changed))
        for key, windows in changed.items():
            old = stored.get(key)
            row = None if old is None else _advanced(old, windows)
            if row is None:
                full.add(key)
            elif row != old:
                upserts.append(row)
                changes[key] = (old, row)
    stored.update(by_key(conn, "metric_rollups_hourly", HOURLY_COLUMNS, "hour_start",
                          sorted(k for k in full if k not in stored)))
    drop = []
    for series, hour in sorted(full):
        row = hourly_row(series, hour, conn.execute(_HOUR_WINDOWS, (series, hour, hour + HOUR_MS)).fetchall())
        old = stored.get((series, hour))
        if row is None:
            drop.append((series, hour))
        else:
            upserts.append(row)
        if row != old:
            changes[(series, hour)] = (old, row)
    write_tier_rows(conn, "rollup_hours", "hour_start", upserts, drop)
    return changes


def _inside(hour: int, window: Sequence[Any]) -> bool:
    return bool(hour <= window[0] and window[1] <= hour + HOUR_MS)


def _tiered_size(hour: int, window: Sequence[Any]) -> bool:
    """Whether the window's size divides the hour (into at most :data:`MAX_HOURLY_WINDOWS`)
    and it is aligned to it: the windows of one such size never overlap."""
    size = window[1] - window[0]
    return bool(size >= HOUR_MS // MAX_HOURLY_WINDOWS and HOUR_MS % size == 0 and (window[0] - hour) % size == 0)


def hourly_row(series: str, hour: int, windows: Sequence[Sequence[Any]]) -> tuple[Any, ...] | None:
    """The ``metric_rollups_hourly`` row (in :data:`HOURLY_COLUMNS` order) of ``series`` and the
    hour starting at ``hour``, from its window rows (:data:`Window`) in ``window_start`` order;
    ``None`` when none lies inside the hour.

    ``windows`` counts the windows inside the hour, ``final_windows`` the final ones; the rest
    describes the final ones (only an hour whose windows are all final is ever read): their
    ``count``, ``sum`` (their sums added in time order), ``min``, ``max``, merged ``sketch``
    (:mod:`processor.folds.sketch_codec` bytes, ``b""`` when there are none), ``window_ms`` (their common size when it divides the hour,
    else ``None``), ``coverage`` (the hex bit mask of their positions, ``''`` without a
    ``window_ms``) and ``unit`` (the newest one's; ``''`` when there are none). ``None`` also
    when their sketches cannot be merged (different accuracies): such an hour is read from its
    windows."""
    end = hour + HOUR_MS
    inside = [w for w in windows if hour <= w[0] and w[1] <= end]
    if not inside:
        return None
    finals = [w for w in inside if w[11]]
    try:
        merged = merge_encoded(w[10] for w in finals)
    except ValueError:
        return None
    count, total, low, high = summed(finals, 0, 0.0, None, None)
    sizes = {w[1] - w[0] for w in finals}
    size = sizes.pop() if len(sizes) == 1 and all(_tiered_size(hour, w) for w in finals) else None
    mask = 0
    if size is not None:
        for w in finals:
            mask |= 1 << ((w[0] - hour) // size)
    newest = finals[-1] if finals else inside[-1]
    return (
        series, hour, end, newest[2], newest[3], newest[4], newest[5] if finals else "", len(inside), len(finals),
        size, format(mask, "x") if size is not None else "", count, total, low, high,
        b"" if merged is None else encode(merged),
    )


def summed(rows: Iterable[Sequence[Any]], count: int, total: float, low: float | None,
           high: float | None, *, at: int = 6) -> tuple[int, float, float | None, float | None]:
    """``count``, ``total``, ``low`` and ``high`` with ``rows``' count, sum, min and max added
    (columns ``at`` to ``at + 3``: 6 in a window row, 11 in an hourly row; a row's min and max
    are ``None`` when it holds no sample)."""
    c, t, lo, hi = at, at + 1, at + 2, at + 3
    for r in rows:
        count += r[c]
        total += r[t]
        if r[lo] is not None and (low is None or r[lo] < low):
            low = r[lo]
        if r[hi] is not None and (high is None or r[hi] > high):
            high = r[hi]
    return count, total, low, high


def _advanced(old: tuple[Any, ...], changes: Sequence[tuple[Window | None, Window]]) -> tuple[Any, ...] | None:
    """The hourly row ``old`` after ``changes`` to its windows (``(before or None, now)``, in
    time order), exactly as :func:`hourly_row` computes it from all of them; ``None`` when that
    cannot be certain this way (a final window changed, a window resized, a window made final
    before the newest final one, different sizes or accuracies): then the hour is recomputed."""
    series, hour, end = old[:3]
    windows, finals, size, coverage, count, total, low, high, sketch = old[7:]
    if finals and size is None:
        return None
    mask = int(coverage, 16) if coverage else 0
    newest = hour + (mask.bit_length() - 1) * size if finals else None
    added: list[Window] = []
    for before, now in changes:
        if before is not None and (before[11] or before[1] != now[1]):
            return None
        if not _inside(hour, now):
            continue  # crosses the hour's end, now as before: not the hour's
        windows += before is None
        if now[11]:
            if (newest is not None and now[0] <= newest) or not _tiered_size(hour, now):
                return None
            if size is None:
                size = now[1] - now[0]
            elif now[1] - now[0] != size:
                return None
            newest = now[0]
            added.append(now)
    if not added:
        return (*old[:7], windows, *old[8:])
    try:
        merged = merge_encoded([*([sketch] if finals else []), *(w[10] for w in added)])
    except ValueError:
        return None
    assert merged is not None and size is not None
    count, total, low, high = summed(added, count, total, low, high)
    for w in added:
        mask |= 1 << ((w[0] - hour) // size)
    last = added[-1]
    return (
        series, hour, end, last[2], last[3], last[4], last[5], windows, finals + len(added), size,
        format(mask, "x"), count, total, low, high, encode(merged),
    )
