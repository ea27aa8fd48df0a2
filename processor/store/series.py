"""The series of the compact metric layout (schema 8): each series stored once in ``series``, and
the raw samples and rollup windows keyed by its integer id (see
:mod:`processor.store.schema_layout`).

Writers name a series by its key (the metrics topic's key: JSON ``[tenant, metric_type, [[label,
value], ...]]``) and write the rows of the views' form (``performance_metrics``,
``metric_rollups``); :func:`register` gives the key its id (inserting the series when it is new)
and the functions here store those rows in the compact tables, in the caller's transaction. A
series' id depends on the order series were first stored, so the compact tables are compared
between databases through the views, never directly.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from processor.store.conn import Connection

_CHUNK = 500
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

SeriesEntry = tuple[str, str | None, str, str, str]
"""``(key, tenant_id, metric_type, labels JSON, unit)``: what a new series is stored with."""
Registered = Mapping[str, tuple[int, str]]
"""Series key -> ``(id, the series' unit)``."""

_INSERT_SERIES = ("INSERT INTO series(key, tenant_id, metric_type, labels, unit) VALUES (?, ?, ?, ?, ?) "
                  "ON CONFLICT(key) DO NOTHING")
_UPSERT_WINDOW = (
    "INSERT INTO rollup_windows(series_id, window_start, window_end, count, sum, min, max, sketch, final, unit) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(series_id, window_start) DO UPDATE SET "
    "window_end = excluded.window_end, count = excluded.count, sum = excluded.sum, min = excluded.min, "
    "max = excluded.max, sketch = excluded.sketch, final = excluded.final, unit = excluded.unit"
)


def series_key_of(tenant_id: str | None, metric_type: str, labels: str) -> str:
    """The key of the series of a ``performance_metrics`` row (``labels``: its JSON object), as
    :func:`processor.folds.windows.series_id` computes it from a sample."""
    pairs = sorted(orjson.loads(labels).items())
    return orjson.dumps([tenant_id or "", metric_type, [list(kv) for kv in pairs]]).decode()


def stored_series(conn: Connection, keys: Iterable[str]) -> dict[str, tuple[int, str]]:
    """The ids and units of the stored series among ``keys``."""
    wanted = sorted(set(keys))
    out: dict[str, tuple[int, str]] = {}
    for at in range(0, len(wanted), _CHUNK):
        chunk = wanted[at:at + _CHUNK]
        marks = ", ".join("?" for _ in chunk)
        for id_, key, unit in conn.execute(f"SELECT id, key, unit FROM series WHERE key IN ({marks})", chunk):
            out[str(key)] = (int(id_), str(unit))
    return out


def register(conn: Connection, entries: Iterable[SeriesEntry]) -> Registered:
    """The id and unit of every series of ``entries``, storing those that are new (in key order,
    so that sinks sharing a database take their locks in one order)."""
    new: dict[str, SeriesEntry] = {}
    for entry in entries:
        new.setdefault(entry[0], entry)
    found = stored_series(conn, new)
    missing = [new[k] for k in sorted(new) if k not in found]
    if missing:
        conn.executemany(_INSERT_SERIES, missing)
        found.update(stored_series(conn, (e[0] for e in missing)))
    return found


def own_unit(unit: str, series_unit: str) -> str | None:
    """What a row stores of its ``unit``: ``None`` when it is its series'."""
    return None if unit == series_unit else unit


def write_sample_rows(conn: Connection, rows: Sequence[Sequence[Any]]) -> None:
    """Raw samples given as ``performance_metrics`` rows (``id, timestamp, metric_type, value,
    unit, labels, tenant_id``), insert-or-ignore: a sample stored before (the same event: its id,
    series and time) is stored once."""
    keyed = [(series_key_of(r[6], r[2], r[5]), r) for r in rows]
    write_keyed_samples(conn, keyed)


def write_keyed_samples(conn: Connection, keyed: Sequence[tuple[str, Sequence[Any]]]) -> None:
    """:func:`write_sample_rows` of rows whose series keys are known: ``(key, row)``."""
    if not keyed:
        return
    ids = register(conn, ((key, r[6], r[2], r[5], r[4]) for key, r in keyed))
    stored = event_id if isinstance(conn, sqlite3.Connection) else str
    conn.executemany(
        "INSERT OR IGNORE INTO samples(series_id, timestamp, id, value, unit) VALUES (?, ?, ?, ?, ?)",
        [(ids[key][0], r[1], stored(r[0]), r[3], own_unit(r[4], ids[key][1])) for key, r in keyed],
    )


def event_id(text: str) -> str | bytes:
    """A sample's event id as SQLite stores it: the 16 bytes of a UUID's canonical (lowercase)
    text, else the text (read back as text by the ``performance_metrics`` view)."""
    if len(text) == 36 and _UUID.fullmatch(text):
        return bytes.fromhex(text.replace("-", ""))
    return text


def write_window_rows(conn: Connection, rows: Sequence[Sequence[Any]]) -> None:
    """Upsert rollup windows given as ``metric_rollups`` rows (``series, window_start, window_end,
    tenant_id, metric_type, labels, unit, count, sum, min, max, sketch, final``): a stored window
    of the series keeps its series and takes the rest."""
    if not rows:
        return
    ids = register(conn, ((r[0], r[3], r[4], r[5], r[6]) for r in rows))
    conn.executemany(_UPSERT_WINDOW, [
        (ids[r[0]][0], r[1], r[2], r[7], r[8], r[9], r[10], r[11], r[12], own_unit(r[6], ids[r[0]][1])) for r in rows
    ])


def series_ids(conn: Connection, keys: Iterable[str]) -> dict[str, int]:
    """The ids of the stored series among ``keys``."""
    return {key: id_ for key, (id_, _) in stored_series(conn, keys).items()}


def write_tier_rows(conn: Connection, table: str, start: str, rows: Sequence[Sequence[Any]],
                    drop: Sequence[tuple[str, int]]) -> None:
    """Upsert hourly or daily rows given in the views' form (``series, <start>, <end>, tenant_id,
    metric_type, labels, unit, windows, final_windows, window_ms, coverage, count, sum, min, max,
    sketch``) into ``table`` (``rollup_hours`` or ``rollup_days``, keyed by ``start``), and delete
    the rows of ``drop`` (``(series, start)``). Their series are stored (they have windows)."""
    ids = series_ids(conn, [*(r[0] for r in rows), *(k for k, _ in drop)])
    if drop:
        conn.executemany(f"DELETE FROM {table} WHERE series_id = ? AND {start} = ?",
                         [(ids[k], at) for k, at in drop if k in ids])
    if rows:
        names = ("series_id", start, "unit", "windows", "final_windows", "window_ms", "coverage", "count", "sum",
                 "min", "max", "sketch")
        updates = ", ".join(f"{n} = excluded.{n}" for n in names[2:])
        conn.executemany(
            f"INSERT INTO {table}({', '.join(names)}) VALUES ({', '.join('?' for _ in names)}) "
            f"ON CONFLICT(series_id, {start}) DO UPDATE SET {updates}",
            [(ids[r[0]], r[1], *r[6:]) for r in rows],
        )
