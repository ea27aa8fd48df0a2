"""The per-metric-type tier (schema 10): ``type_hours`` and ``type_days``, kept by the sink in its
transaction right after the hourly and daily tiers they are made of (see
:mod:`processor.store.type_reads` for when a query may read them).

A row of ``type_hours`` (``type_days``) is a pure function of the ``metric_rollups_hourly``
(``metric_rollups_daily``) rows of its metric type and hour (day): of all of them for the row of
``tenant = ''``, of those whose ``tenant_id`` is the row's ``tenant`` otherwise (series without a
tenant, or with an empty one, are only in the ``''`` row): :func:`type_row`. The finer tiers being
pure functions of the window rows, so is this one: writing a batch again, or replaying the topics
in other batches, gives the same rows. After the finer tiers are refreshed the sink brings the
type rows of every hourly row that changed up to date (:func:`refresh_types`): when the hourly
rows that changed were not complete before and are not now (what most batches of a live sink
do), by adding the difference of their ``windows`` (to the hour's type rows, and, as the daily
rows moved by as much, to the day's); otherwise by recomputing the row from the finer rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from processor.folds.sketch_codec import encode, merge_encoded
from processor.store.conn import Connection
from processor.store.daily import DAILY_COLUMNS, day_of
from processor.store.hourly import HOURLY_COLUMNS, HourlyChange, summed
from processor.store.sqltext import upsert_sql

TYPE_COLUMNS = ("windows", "final_windows", "window_ms", "coverage", "count", "sum", "min", "max", "sketch")
"""The columns of a type row after its key (``metric_type, tenant, <start>``), in table order."""
_LEVELS = {
    "type_hours": ("hour_start", "metric_rollups_hourly", HOURLY_COLUMNS),
    "type_days": ("day_start", "metric_rollups_daily", DAILY_COLUMNS),
}
"""A type table -> (its start column, the finer tier's view, that view's columns)."""
_WINDOWS = 7
_TENANT, _TYPE = 3, 4

Key = tuple[str, str, int]
"""``(metric_type, tenant, block start)``; tenant ``''``: every series of the type."""


def type_row(rows: Sequence[Sequence[Any]]) -> tuple[Any, ...] | None:
    """The type row (:data:`TYPE_COLUMNS` order) of finer tier rows (hourly or daily rows of one
    block, in the views' column order: ``windows`` at 7, then ``final_windows``, ``window_ms``,
    ``coverage``, ``count``, ``sum``, ``min``, ``max``, ``sketch``); ``None`` when there are none,
    or when their sketches cannot be merged (different accuracies: the block is read finer).

    ``windows`` adds the rows' windows; the rest describes the **complete** rows (``windows ==
    final_windows``): ``final_windows`` (their windows), ``count``, ``sum`` (added in series key
    order), ``min``, ``max``, merged ``sketch``, ``window_ms`` (their common size, ``None`` when
    they differ or one has none) and ``coverage`` (their masks or-ed, ``''`` without a
    ``window_ms``). So ``final_windows == windows`` exactly when every row is complete."""
    if not rows:
        return None
    ordered = sorted(rows, key=lambda r: str(r[0]))
    complete = [r for r in ordered if r[7] == r[8]]
    try:
        merged = merge_encoded(r[15] for r in complete)
    except ValueError:
        return None
    count, total, low, high = summed(complete, 0, 0.0, None, None, at=11)
    sizes = {r[9] for r in complete}
    size = sizes.pop() if len(sizes) == 1 else None
    mask = 0
    if size is not None:
        for r in complete:
            mask |= int(r[10], 16) if r[10] else 0
    return (
        sum(r[7] for r in ordered), sum(r[7] for r in complete), size, format(mask, "x") if size is not None else "",
        count, total, low, high, b"" if merged is None else encode(merged),
    )


def scopes(tenant_id: str | None) -> tuple[str, ...]:
    """The ``tenant`` keys of the type rows a series of ``tenant_id`` is merged into."""
    return ("", tenant_id) if tenant_id else ("",)


def refresh_types(conn: Connection, changes: Mapping[tuple[str, int], HourlyChange]) -> None:
    """Bring the type rows of every hourly row of ``changes`` (and of its day) up to date with the
    hourly and daily rows stored now, in the caller's transaction (the daily rows are refreshed
    first, see :func:`processor.store.daily.refresh_daily`)."""
    hours: dict[Key, list[HourlyChange]] = {}
    days: dict[Key, list[HourlyChange]] = {}
    for (_, hour), change in changes.items():
        row = change[1] if change[1] is not None else change[0]
        if row is None:  # no hourly row before or after: nothing to merge
            continue
        for tenant in scopes(row[_TENANT]):
            hours.setdefault((row[_TYPE], tenant, hour), []).append(change)
            days.setdefault((row[_TYPE], tenant, day_of(hour)), []).append(change)
    _refresh(conn, "type_hours", hours)
    _refresh(conn, "type_days", days)


def _refresh(conn: Connection, table: str, keys: Mapping[Key, list[HourlyChange]]) -> None:
    if not keys:
        return
    stored = _stored(conn, table, sorted(keys))
    moved: list[tuple[Any, ...]] = []
    full: list[Key] = []
    for key, key_changes in sorted(keys.items()):
        old = stored.get(key)
        delta = _windows_moved(key_changes)
        if old is None or delta is None:
            full.append(key)
        elif delta:
            moved.append((*key, old[0] + delta, *old[1:]))
    rebuild_keys(conn, table, full, moved)


def _stored(conn: Connection, table: str, keys: Sequence[Key]) -> dict[Key, tuple[Any, ...]]:
    start = _LEVELS[table][0]
    out: dict[Key, tuple[Any, ...]] = {}
    sql = f"SELECT {', '.join(TYPE_COLUMNS)} FROM {table} WHERE metric_type = ? AND tenant = ? AND {start} = ?"
    for key in keys:
        found = conn.execute(sql, key).fetchone()
        if found is not None:
            out[key] = tuple(found)
    return out


def rebuild_keys(conn: Connection, table: str, keys: Iterable[Key], rows: list[tuple[Any, ...]] | None = None) -> None:
    """Recompute the type row of each key of ``keys`` from the finer tier's rows stored (and write
    ``rows``, full rows of ``table``, too); a key whose finer rows are gone is deleted."""
    start, finer, columns = _LEVELS[table]
    upserts = [] if rows is None else rows
    drop: list[Key] = []
    picked = ", ".join(columns)
    for metric_type, tenant, at in keys:
        sql = f"SELECT {picked} FROM {finer} WHERE metric_type = ? AND {start} = ?"
        params: list[Any] = [metric_type, at]
        if tenant:
            sql += " AND tenant_id = ?"
            params.append(tenant)
        row = type_row(conn.execute(sql, params).fetchall())
        if row is None:
            drop.append((metric_type, tenant, at))
        else:
            upserts.append((metric_type, tenant, at, *row))
    _write(conn, table, upserts, drop)


def _write(conn: Connection, table: str, upserts: Sequence[tuple[Any, ...]], drop: Sequence[Key]) -> None:
    start = _LEVELS[table][0]
    if drop:
        conn.executemany(f"DELETE FROM {table} WHERE metric_type = ? AND tenant = ? AND {start} = ?", drop)
    if upserts:
        conn.executemany(upsert_sql(table, ("metric_type", "tenant", start, *TYPE_COLUMNS),
                                    f"metric_type, tenant, {start}"), upserts)


def rebuild_types(conn: Connection) -> None:
    """Every type row from the hourly and daily rows stored (the migration to schema 10, and
    :mod:`bench.dbgen`), in the caller's transaction: one pass over each finer tier in (type,
    block) order."""
    for table, (start, finer, columns) in _LEVELS.items():
        conn.execute(f"DELETE FROM {table}")
        group: list[tuple[Any, ...]] = []
        at: tuple[Any, Any] | None = None
        batch: list[tuple[Any, ...]] = []
        for row in conn.execute(f"SELECT {', '.join(columns)} FROM {finer} ORDER BY metric_type, {start}"):
            key = (row[_TYPE], row[1])
            if key != at:
                batch += _group_rows(at, group)
                group, at = [], key
            group.append(tuple(row))
            if len(batch) >= 5_000:
                _write(conn, table, batch, ())
                batch = []
        batch += _group_rows(at, group)
        _write(conn, table, batch, ())


def _group_rows(at: tuple[Any, Any] | None, group: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The type rows of one (type, block)'s finer rows: the one across tenants, then each tenant's."""
    if at is None or not group:
        return []
    metric_type, block = at
    by_tenant: dict[str, list[tuple[Any, ...]]] = {"": list(group)}
    for row in group:
        if row[_TENANT]:
            by_tenant.setdefault(row[_TENANT], []).append(row)
    out = []
    for tenant, rows in sorted(by_tenant.items()):
        made = type_row(rows)
        if made is not None:
            out.append((metric_type, tenant, block, *made))
    return out


def _windows_moved(changes: Iterable[HourlyChange]) -> int | None:
    """How much the hours' ``windows`` moved in total, when the hours were not complete before
    and are not now (then only the type rows' ``windows`` move, by as much; the daily rows of
    their days too); ``None`` otherwise."""
    moved = 0
    for before, after in changes:
        if before is None or after is None or before[7] == before[8] or after[7] == after[8]:
            return None
        moved += after[_WINDOWS] - before[_WINDOWS]
    return moved
