"""The per-metric-type window tier (schema 11): ``type_windows``, one row per metric type and
window start, kept by the sink in its transaction right after the window rows it is made of (see
:func:`processor.store.type_window_reads.typed_windows` for when a query may read it).

A row is a pure function of the ``metric_rollups`` rows of its metric type that start at its
``window_start``, of every series (:func:`window_type_row`), so writing a batch again, or replaying
the topics in other batches, gives the same rows. After the window rows are written the sink brings
the row of every (type, window start) whose window rows changed up to date
(:func:`refresh_type_windows`): when the changes only add or update open windows and the row
exists (what most batches of a live sink do while a window is open), by adding the new windows to
its ``windows``; otherwise by recomputing it from the window rows stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from processor.folds.sketch_codec import encode, merge_encoded
from processor.store.conn import Connection
from processor.store.hourly import Window, Written
from processor.store.sqltext import DAY_MS, upsert_sql

TYPE_WINDOW_COLUMNS = ("windows", "final_windows", "window_ms", "count", "sum", "min", "max", "sketch")
"""The columns of a ``type_windows`` row after its key (``metric_type, window_start``), in table order."""
_MEMBERS = (
    "SELECT series, window_end - window_start, final, count, sum, min, max, sketch FROM metric_rollups "
    "WHERE metric_type = ? AND window_start = ?"
)
"""The window rows a type window row merges (``Member`` order)."""

Key = tuple[str, int]
"""``(metric_type, window_start)``"""
Member = tuple[Any, ...]
"""A window row as :func:`window_type_row` takes it: ``(series, window_ms, final, count, sum, min, max, sketch)``."""


def window_type_row(members: Sequence[Member]) -> tuple[Any, ...] | None:
    """The type window row (:data:`TYPE_WINDOW_COLUMNS` order) of the window rows of one type and
    start (:data:`Member`); ``None`` when there are none, or when their sketches cannot be merged
    (different accuracies: the window is read per series).

    ``windows`` counts the rows, ``final_windows`` the final ones; the rest describes the final
    ones: ``window_ms`` (their common size, ``None`` when they differ or there are none), ``count``,
    ``sum`` (added in series key order), ``min``, ``max`` and the merged ``sketch`` (``b""`` when
    none). So the row stands for all its window rows exactly when ``windows == final_windows`` and
    ``window_ms`` is set."""
    if not members:
        return None
    finals = sorted((m for m in members if m[2]), key=lambda m: str(m[0]))
    try:
        merged = merge_encoded(m[7] for m in finals)
    except ValueError:
        return None
    count, total = 0, 0.0
    low: float | None = None
    high: float | None = None
    for m in finals:
        count += m[3]
        total += m[4]
        low = m[5] if low is None or (m[5] is not None and m[5] < low) else low
        high = m[6] if high is None or (m[6] is not None and m[6] > high) else high
    sizes = {m[1] for m in finals}
    return (len(members), len(finals), sizes.pop() if len(sizes) == 1 else None, count, total, low, high,
            b"" if merged is None else encode(merged))


def refresh_type_windows(conn: Connection, written: Written) -> None:
    """Bring the type window row of every (type, window start) whose window rows ``written``
    changed up to date with the window rows stored now, in the caller's transaction."""
    changes: dict[Key, list[tuple[Window | None, Window]]] = {}
    for windows in written.changed.values():
        for before, now in windows:
            changes.setdefault((now[3], now[0]), []).append((before, now))
    if not changes:
        return
    full: list[Key] = []
    moved: list[tuple[int, str, int]] = []
    stored = _stored_windows(conn, sorted(changes))
    for key, key_changes in sorted(changes.items()):
        opened = _opened(key_changes)
        if opened is None or key not in stored:
            full.append(key)
        elif opened:
            moved.append((stored[key] + opened, *key))
    if moved:
        conn.executemany("UPDATE type_windows SET windows = ? WHERE metric_type = ? AND window_start = ?", moved)
    rebuild_window_keys(conn, full)


def _opened(changes: Iterable[tuple[Window | None, Window]]) -> int | None:
    """How many windows ``changes`` add when they only add or update open windows (then only
    the row's ``windows`` moves, by as much); ``None`` otherwise."""
    added = 0
    for before, now in changes:
        if now[11] or (before is not None and (before[11] or before[1] != now[1])):
            return None
        added += before is None
    return added


def _stored_windows(conn: Connection, keys: Sequence[Key]) -> dict[Key, int]:
    out: dict[Key, int] = {}
    for key in keys:
        found = conn.execute("SELECT windows FROM type_windows WHERE metric_type = ? AND window_start = ?", key).fetchone()
        if found is not None:
            out[key] = int(found[0])
    return out


def rebuild_window_keys(conn: Connection, keys: Iterable[Key]) -> None:
    """Recompute the type window row of each key from the window rows stored (deleted when
    there are none), in the caller's transaction (retention, and the sink's general case)."""
    upserts: list[tuple[Any, ...]] = []
    drop: list[Key] = []
    for metric_type, at in keys:
        row = window_type_row(conn.execute(_MEMBERS, (metric_type, at)).fetchall())
        if row is None:
            drop.append((metric_type, at))
        else:
            upserts.append((metric_type, at, *row))
    _write(conn, upserts, drop)


def _write(conn: Connection, upserts: Sequence[tuple[Any, ...]], drop: Sequence[Key]) -> None:
    if drop:
        conn.executemany("DELETE FROM type_windows WHERE metric_type = ? AND window_start = ?", drop)
    if upserts:
        conn.executemany(upsert_sql("type_windows", ("metric_type", "window_start", *TYPE_WINDOW_COLUMNS),
                                    "metric_type, window_start"), upserts)


def rebuild_type_windows(conn: Connection) -> None:
    """Every type window row from the window rows stored (the migration to schema 11, and
    :mod:`bench.dbgen`), in the caller's transaction: one read per metric type and UTC day that
    has windows (as the triggers counted them), grouped by window start."""
    conn.execute("DELETE FROM type_windows")
    days = conn.execute("SELECT DISTINCT metric_type, day_start FROM metric_rollup_day_counts ORDER BY 1, 2").fetchall()
    batch: list[tuple[Any, ...]] = []
    for metric_type, day in days:
        groups: dict[int, list[Member]] = {}
        for row in conn.execute(
            "SELECT window_start, series, window_end - window_start, final, count, sum, min, max, sketch "
            "FROM metric_rollups WHERE metric_type = ? AND window_start >= ? AND window_start < ?",
            (metric_type, day, day + DAY_MS),
        ):
            groups.setdefault(int(row[0]), []).append(tuple(row[1:]))
        for at, members in sorted(groups.items()):
            made = window_type_row(members)
            if made is not None:
                batch.append((metric_type, at, *made))
        if len(batch) >= 5_000:
            _write(conn, batch, ())
            batch = []
    _write(conn, batch, ())
