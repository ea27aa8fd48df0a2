"""The day tier: ``metric_rollups_daily``, kept by the sink in its transaction, right after the
hourly tier it is made of (see :mod:`processor.store.metric_queries` for when a query may read it).

A row of ``metric_rollups_daily`` is a pure function of the ``metric_rollups_hourly`` rows of its
series in its UTC day (:func:`daily_row`), so, the hourly rows being a pure function of the
window rows, it is one of the window rows too: writing a batch again, or replaying the topics in
other batches, gives the same row. After a refresh of the hourly tier the sink brings the day of
every hourly row that changed up to date: when the hours that changed were not complete before
and are not now (windows opened, updated or made final while others of the hour are still
open: what most batches of a live sink do), by adding the difference of their ``windows`` (an
integer, so exactly what recomputing gives); otherwise by recomputing the day from its hourly
rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from processor.folds.sketch_codec import encode, merge_encoded
from processor.store.conn import Connection
from processor.store.hourly import HOURLY_COLUMNS, HourlyChange, by_key, summed
from processor.store.series import write_tier_rows
from processor.store.sqltext import DAY_MS, upsert_sql

DAILY_COLUMNS = (
    "series", "day_start", "day_end", "tenant_id", "metric_type", "labels", "unit", "windows", "final_windows",
    "window_ms", "coverage", "count", "sum", "min", "max", "sketch",
)
"""``metric_rollups_daily``'s columns, in table order (and :func:`daily_row`'s): those of
``metric_rollups_hourly`` with the day in place of the hour."""
_UPSERT_DAILY = upsert_sql("metric_rollups_daily", DAILY_COLUMNS, "series, day_start")
_DAY_HOURS = (
    f"SELECT {', '.join(HOURLY_COLUMNS)} FROM metric_rollups_hourly WHERE series = ? AND hour_start >= ? "
    "AND hour_start < ? ORDER BY hour_start"
)
_WINDOWS = HOURLY_COLUMNS.index("windows")


def day_of(at: int) -> int:
    """The start of the UTC day holding ``at`` (epoch ms, floored)."""
    return at - at % DAY_MS


def daily_row(series: str, day: int, hours: Sequence[Sequence[Any]]) -> tuple[Any, ...] | None:
    """The ``metric_rollups_daily`` row (in :data:`DAILY_COLUMNS` order) of ``series`` and the
    day starting at ``day``, from its hourly rows (in :data:`processor.store.hourly.HOURLY_COLUMNS`
    order) in ``hour_start`` order; ``None`` when there are none, or when the sketches of its
    hours cannot be merged (different accuracies: such a day is read hour by hour).

    ``windows`` adds the hours' windows; the rest describes the **complete** hours (those whose
    windows are all final: ``windows == final_windows``), as the hourly rows describe their final
    windows: ``final_windows`` (their windows), ``count``, ``sum`` (their sums added in time order),
    ``min``, ``max``, merged ``sketch`` (``b""`` when none), ``window_ms`` (their common size,
    ``None`` when they differ or one has none), ``coverage`` (the hex bit mask of their windows'
    positions in the day, ``''`` without a ``window_ms``) and ``unit`` (of the newest one, ``''``
    when there is none). So ``final_windows == windows`` exactly when every hour is complete
    (the only days ever read), and a day's row changes beyond ``windows`` only when an hour
    becomes complete or a complete hour changes: about once an hour per series while windows
    open and close in time order, as the worker publishes them."""
    if not hours:
        return None
    finals = [h for h in hours if h[8] and _complete(h)]
    try:
        merged = merge_encoded(h[15] for h in finals)
    except ValueError:
        return None
    count, total, low, high = summed(finals, 0, 0.0, None, None, at=11)
    sizes = {h[9] for h in finals}
    size = sizes.pop() if len(sizes) == 1 else None
    mask = 0
    if size is not None:
        for h in finals:
            mask |= int(h[10], 16) << ((h[1] - day) // size)
    newest = finals[-1] if finals else hours[-1]
    return (
        series, day, day + DAY_MS, newest[3], newest[4], newest[5], newest[6] if finals else "",
        sum(h[7] for h in hours), sum(h[8] for h in finals), size, format(mask, "x") if size is not None else "",
        count, total, low, high, b"" if merged is None else encode(merged),
    )


def refresh_daily(conn: Connection, changes: Mapping[tuple[str, int], HourlyChange]) -> None:
    """Bring the daily row of every day whose hourly rows ``changes`` names up to date with the
    hourly rows stored now (:func:`daily_row` of them; deleted when there is none)."""
    by_day: dict[tuple[str, int], list[HourlyChange]] = {}
    for (series, hour), change in changes.items():
        by_day.setdefault((series, day_of(hour)), []).append(change)
    if not by_day:
        return
    stored = by_key(conn, "metric_rollups_daily", DAILY_COLUMNS, "day_start", sorted(by_day))
    upserts: list[tuple[Any, ...]] = []
    full: list[tuple[str, int]] = []
    for key, day_changes in sorted(by_day.items()):
        old = stored.get(key)
        moved = _windows_moved(day_changes)
        if old is None or moved is None:
            full.append(key)
        elif moved:
            upserts.append((*old[:7], old[7] + moved, *old[8:]))
    rebuild_days(conn, full, upserts)


def rebuild_days(conn: Connection, keys: Iterable[tuple[str, int]],
                 upserts: list[tuple[Any, ...]] | None = None, *, legacy: bool = False) -> None:
    """Recompute the daily row of each ``(series, day_start)`` of ``keys`` from its hourly rows
    (and write ``upserts`` too); ``legacy``: into the table ``metric_rollups_daily`` of schemas 6
    and 7 (the migration to 6), else into ``rollup_days``."""
    rows = [] if upserts is None else upserts
    drop = []
    for series, day in keys:
        row = daily_row(series, day, conn.execute(_DAY_HOURS, (series, day, day + DAY_MS)).fetchall())
        if row is None:
            drop.append((series, day))
        else:
            rows.append(row)
    if not legacy:
        write_tier_rows(conn, "rollup_days", "day_start", rows, drop)
        return
    if drop:
        conn.executemany("DELETE FROM metric_rollups_daily WHERE series = ? AND day_start = ?", drop)
    if rows:
        conn.executemany(_UPSERT_DAILY, rows)


def rebuild_daily(conn: Connection, *, legacy: bool = False) -> None:
    """Every daily row from the hourly rows stored (the migration that adds the tier, ``legacy``:
    into the table of schemas 6 and 7), in the caller's transaction."""
    keys = conn.execute(
        f"SELECT DISTINCT series, hour_start - hour_start % {DAY_MS} FROM metric_rollups_hourly ORDER BY 1, 2"
    ).fetchall()
    rebuild_days(conn, [(str(series), int(day)) for series, day in keys], legacy=legacy)


def _complete(hour: Sequence[Any]) -> bool:
    """Whether every window of the hourly row is final."""
    return bool(hour[7] == hour[8])


def _windows_moved(changes: Iterable[HourlyChange]) -> int | None:
    """How much the hours' ``windows`` moved in total, when the hours were not complete before
    and are not now (then only the day's ``windows`` moves, by as much); ``None`` otherwise."""
    moved = 0
    for before, after in changes:
        if before is None or after is None or _complete(before) or _complete(after):
            return None
        moved += after[_WINDOWS] - before[_WINDOWS]
    return moved

