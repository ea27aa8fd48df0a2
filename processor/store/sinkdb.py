"""What the sink writes, as SQL: one idempotent batch per transaction.

:class:`SinkBatch` holds the records of one batch, already coalesced (the last snapshot of each
execution and window). :func:`write_batch` upserts them and stores the consumed offsets in the
same transaction, so the database and its offsets never disagree: replaying a batch writes the
same rows again. Per-tenant counters in ``workflow_stats`` move from each execution's old row to
its new one inside that transaction, and the hourly rows of ``metric_rollups_hourly`` are
recomputed from the window rows of every (series, hour) the batch touched.

Used by the live sink (:mod:`processor.runtime.sink`) and by replay alike.
"""

from __future__ import annotations

import base64
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from processor.folds.sketch import merge_json
from processor.store.db import EXECUTION_COLUMNS, HOUR_MS, STEP_COLUMNS
from schemas.events import MetricRecorded

_STATUS_COLUMNS = ("pending", "running", "completed", "failed", "cancelled")


@dataclass
class SinkBatch:
    """One transaction's worth of records. Builders call the ``add_*`` methods in offset order."""

    executions: dict[str, dict[str, Any]] = field(default_factory=dict)
    rollups: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    samples: dict[str, MetricRecorded] = field(default_factory=dict)
    dead_letters: dict[tuple[str, int, int], dict[str, Any]] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    """Alert records in offset order (each is a transition)."""
    offsets: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)
    """(topic, partition) -> (next offset, stream time)"""
    derived_times: dict[tuple[str, int], int] = field(default_factory=dict)
    """(topic, partition) -> the derived lane's stream time (metrics partitions)"""
    records: int = 0

    def add_execution(self, snapshot: dict[str, Any]) -> None:
        self.executions[snapshot["id"]] = snapshot  # coalesce: the last snapshot wins

    def add_rollup(self, rollup: dict[str, Any]) -> None:
        self.rollups[(rollup["series"], rollup["window_start"])] = rollup

    def add_sample(self, sample: MetricRecorded) -> None:
        self.samples.setdefault(sample.event_id, sample)

    def add_dead_letter(self, record: dict[str, Any]) -> None:
        self.dead_letters[(record["topic"], record["partition"], record["offset"])] = record

    def add_alert(self, record: dict[str, Any]) -> None:
        if record.get("status") not in _ALERT_STATUSES or not record.get("id"):
            raise KeyError(f"not an alert record: {str(record)[:80]}")
        self.alerts.append(record)

    def consumed(self, topic: str, partition: int, next_offset: int, stream_time: int, derived_time: int | None = None) -> None:
        self.offsets[(topic, partition)] = (next_offset, stream_time)
        if derived_time is not None:
            self.derived_times[(topic, partition)] = derived_time

    def __len__(self) -> int:
        return len(self.executions) + len(self.rollups) + len(self.samples) + len(self.dead_letters) + len(self.alerts)


UNWRITABLE = (sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.ProgrammingError, sqlite3.DataError,
              OverflowError, TypeError, ValueError, KeyError, IndexError, AttributeError)
"""What one malformed or unstorable record raises while its rows are built or written (no retry
helps); a busy or failing database raises something else, and the batch is tried again."""


def write_batch(conn: sqlite3.Connection, batch: SinkBatch, *, written_at_ms: int | None = None) -> list[str]:
    """Write ``batch`` and its offsets in one transaction (all or nothing), and the wall-clock
    time of the write (``written_at_ms``, default now) in ``sink_status``.

    When a record of the batch cannot be written (:data:`UNWRITABLE`), the batch is written
    again record by record, each in a savepoint, leaving out those that fail: one record never
    stops the sink. Returns what was left out (normally nothing) for the caller to count."""
    written_at = int(time.time() * 1000) if written_at_ms is None else written_at_ms
    try:
        _transaction(conn, batch, written_at, _write_all)
        return []
    except UNWRITABLE:
        pass
    skipped: list[str] = []
    _transaction(conn, batch, written_at, lambda c, b: skipped.extend(_write_each(c, b)))
    return skipped


def _transaction(conn: sqlite3.Connection, batch: SinkBatch, written_at: int,
                 write: Callable[[sqlite3.Connection, SinkBatch], object]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        write(conn, batch)
        conn.executemany(
            "INSERT INTO sink_offsets(topic, partition, next_offset, stream_time) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(topic, partition) DO UPDATE SET next_offset = excluded.next_offset, "
            "stream_time = excluded.stream_time",
            [(t, p, o, st) for (t, p), (o, st) in batch.offsets.items()],
        )
        conn.executemany(
            "INSERT INTO sink_derived_times(topic, partition, stream_time) VALUES (?, ?, ?) "
            "ON CONFLICT(topic, partition) DO UPDATE SET stream_time = excluded.stream_time",
            [(t, p, st) for (t, p), st in batch.derived_times.items()],
        )
        conn.execute(
            "INSERT INTO sink_status(id, last_write_at) VALUES (1, ?) "
            "ON CONFLICT(id) DO UPDATE SET last_write_at = excluded.last_write_at",
            (written_at,),
        )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _write_all(conn: sqlite3.Connection, batch: SinkBatch) -> None:
    write_executions(conn, batch.executions.values())
    write_rollups(conn, batch.rollups.values())
    write_samples(conn, batch.samples.values())
    write_dead_letters(conn, batch.dead_letters.values())
    write_alerts(conn, batch.alerts)


def _write_each(conn: sqlite3.Connection, batch: SinkBatch) -> list[str]:
    """:func:`_write_all` one record at a time, in the same order; the descriptions of the
    records that could not be written."""
    items: list[tuple[str, Callable[[sqlite3.Connection, Any], None], Any]] = [
        *((f"execution {k[:80]!r}", write_executions, v) for k, v in batch.executions.items()),
        *((f"rollup {k[0][:80]}@{k[1]}", write_rollups, v) for k, v in batch.rollups.items()),
        *((f"sample {k[:80]!r}", write_samples, v) for k, v in batch.samples.items()),
        *((f"dead letter {k}", write_dead_letters, v) for k, v in batch.dead_letters.items()),
        *((f"alert {str(v.get('id'))[:80]!r}", write_alerts, v) for v in batch.alerts),
    ]
    skipped = []
    for what, write, item in items:
        conn.execute("SAVEPOINT record")
        try:
            write(conn, [item])
        except UNWRITABLE as exc:
            conn.execute("ROLLBACK TO record")
            skipped.append(f"{what}: {type(exc).__name__}: {exc}"[:500])
        conn.execute("RELEASE record")
    return skipped


def stored_offsets(conn: sqlite3.Connection) -> dict[tuple[str, int], tuple[int, int]]:
    return {
        (row[0], row[1]): (row[2], row[3])
        for row in conn.execute("SELECT topic, partition, next_offset, stream_time FROM sink_offsets")
    }


def stored_derived_times(conn: sqlite3.Connection) -> dict[tuple[str, int], int]:
    """The derived lane's stream time of each metrics partition, as the sink stored it."""
    return {(row[0], row[1]): row[2] for row in conn.execute("SELECT topic, partition, stream_time FROM sink_derived_times")}


# -- executions and per-tenant stats ---------------------------------------------------------------


def execution_row(s: Mapping[str, Any]) -> tuple[Any, ...]:
    """A snapshot as a ``workflow_executions_monitor`` row. The original columns are NOT NULL
    where a pending execution (its start not yet seen) has no value: '' for the missing ids and
    names, and the last event time for ``started_at``."""
    return (
        s["id"],
        s["workflow_id"] or "",
        s["workflow_name"] or "",
        s["tenant_id"],
        s["user_id"] or "",
        s["status"],
        s["started_at"] if s["started_at"] is not None else s["last_event_at"],
        s["completed_at"],
        s["duration"],
        s["steps_total"],
        s["steps_completed"],
        s["steps_failed"],
        s["current_step"],
        s["error_message"],
        orjson.dumps(s["metadata"]).decode(),
        s["tokens_used"],
        s["cost"],
        s["last_event_at"],
    )


def step_row(step: Mapping[str, Any]) -> tuple[Any, ...]:
    started = step["started_at"]
    if started is None:
        started = step["completed_at"] if step["completed_at"] is not None else 0
    return (
        step["id"],
        step["execution_id"],
        step["step_key"] or "",
        step["step_name"] or "",
        step["status"],
        started,
        step["completed_at"],
        step["duration"],
        step["retry_count"],
        step["error_message"],
        step["input_size"],
        step["output_size"],
        step["tokens_used"],
        step["cost"],
    )




def _upsert(table: str, names: tuple[str, ...], key: str) -> str:
    """An upsert of every column of ``names`` on conflict with ``key`` (comma-separated)."""
    keys = {k.strip() for k in key.split(",")}
    columns = ", ".join(names)
    updates = ", ".join(f"{n} = excluded.{n}" for n in names if n not in keys)
    marks = ", ".join("?" for _ in names)
    return f"INSERT INTO {table}({columns}) VALUES ({marks}) ON CONFLICT({key}) DO UPDATE SET {updates}"


_UPSERT_EXECUTION = _upsert("workflow_executions_monitor", EXECUTION_COLUMNS, "id")
_UPSERT_STEP = _upsert("workflow_step_executions", STEP_COLUMNS, "id")


def write_executions(conn: sqlite3.Connection, snapshots: Iterable[Mapping[str, Any]]) -> None:
    snapshots = list(snapshots)
    if not snapshots:
        return
    old = _old_contributions(conn, [s["id"] for s in snapshots])
    deltas: dict[str, list[int]] = {}
    for s in snapshots:
        before = old.get(s["id"])
        if before is not None:
            _contribute(deltas, before[0], before[1], before[2], -1)
        _contribute(deltas, s["tenant_id"], s["status"], s["duration"], +1)
    conn.executemany(_UPSERT_EXECUTION, [execution_row(s) for s in snapshots])
    conn.executemany(_UPSERT_STEP, [step_row(step) for s in snapshots for step in s["steps"]])
    apply_stats_deltas(conn, deltas)


def _old_contributions(conn: sqlite3.Connection, ids: list[str]) -> dict[str, tuple[str, str, int | None]]:
    out: dict[str, tuple[str, str, int | None]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(
            f"SELECT id, tenant_id, status, duration FROM workflow_executions_monitor WHERE id IN ({marks})", chunk
        ):
            out[row[0]] = (row[1], row[2], row[3])
    return out


def _contribute(deltas: dict[str, list[int]], tenant: str, status: str, duration: int | None, sign: int) -> None:
    """``deltas[tenant]``: [total, pending, running, completed, failed, cancelled, duration_sum, duration_count]"""
    d = deltas.setdefault(tenant, [0] * 8)
    d[0] += sign
    d[1 + _STATUS_COLUMNS.index(status)] += sign
    if duration is not None:
        d[6] += sign * duration
        d[7] += sign


def apply_stats_deltas(conn: sqlite3.Connection, deltas: Mapping[str, list[int]]) -> None:
    conn.executemany(
        "INSERT INTO workflow_stats(tenant_id, total, pending, running, completed, failed, cancelled, "
        "duration_sum, duration_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(tenant_id) DO UPDATE SET "
        "total = total + excluded.total, pending = pending + excluded.pending, "
        "running = running + excluded.running, completed = completed + excluded.completed, "
        "failed = failed + excluded.failed, cancelled = cancelled + excluded.cancelled, "
        "duration_sum = duration_sum + excluded.duration_sum, "
        "duration_count = duration_count + excluded.duration_count",
        [(tenant, *d) for tenant, d in deltas.items() if any(d)],
    )


# -- metrics --------------------------------------------------------------------------------------


_UPSERT_ROLLUP = (
    "INSERT INTO metric_rollups(series, window_start, window_end, tenant_id, metric_type, labels, unit, "
    "count, sum, min, max, sketch, final) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(series, window_start) DO UPDATE SET window_end = excluded.window_end, "
    "count = excluded.count, sum = excluded.sum, min = excluded.min, max = excluded.max, "
    "sketch = excluded.sketch, final = excluded.final, unit = excluded.unit"
)


def write_rollups(conn: sqlite3.Connection, rollups: Iterable[Mapping[str, Any]]) -> None:
    """Upsert the window rows, then bring the hourly row of every (series, hour) whose windows
    changed up to date (:func:`refresh_hourly`), in the caller's transaction."""
    rows = [
        (
            r["series"], r["window_start"], r["window_end"], r["tenant_id"], r["metric_type"],
            orjson.dumps(r["labels"], option=orjson.OPT_SORT_KEYS).decode(), r["unit"], r["count"],
            r["sum"], r["min"], r["max"], orjson.dumps(r["sketch"]).decode(), int(bool(r["final"])),
        )
        for r in rollups
    ]
    if not rows:
        return
    stored = _stored_windows(conn, rows)
    conn.executemany(_UPSERT_ROLLUP, rows)
    refresh_hourly(conn, (), written=_Written.of(rows, stored))


# -- the hourly tier ------------------------------------------------------------------------------
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
_UPSERT_HOURLY = _upsert("metric_rollups_hourly", HOURLY_COLUMNS, "series, hour_start")
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


def _by_key(conn: sqlite3.Connection, table: str, columns: Sequence[str], second: str,
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


def _stored_windows(conn: sqlite3.Connection, rows: Sequence[Sequence[Any]]) -> dict[tuple[str, int], Window]:
    """The stored version of each window row about to be written (those that exist)."""
    return _by_key(conn, "metric_rollups", _WINDOW_COLUMNS, "window_start", sorted({(r[0], r[1]) for r in rows}))


@dataclass(frozen=True, slots=True)
class _Written:
    """What a batch changed: per (series, hour), the windows starting in it whose row differs
    from before, as ``(before or None, now)``, in time order."""

    changed: dict[tuple[str, int], list[tuple[Window | None, Window]]]

    @classmethod
    def of(cls, rows: Sequence[Sequence[Any]], stored: Mapping[tuple[str, int], Window]) -> _Written:
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


def refresh_hourly(
    conn: sqlite3.Connection, keys: Iterable[tuple[str, int]], *, written: _Written | None = None
) -> None:
    """Bring the ``metric_rollups_hourly`` row of each ``(series, hour_start)`` of ``keys``,
    and of each hour whose windows ``written`` changed, up to date with the ``metric_rollups``
    rows stored now: :func:`hourly_row` of them (deleted when there is none). A pure function of
    the window rows, so writing a batch again, or replaying it, gives the same row. The hours of
    ``keys`` are recomputed from their windows; the others are advanced from their stored row
    when :func:`_advanced` can, and recomputed otherwise."""
    full = set(keys)
    upserts: list[tuple[Any, ...]] = []
    if written is not None:
        changed = {k: v for k, v in written.changed.items() if k not in full}
        stored = _by_key(conn, "metric_rollups_hourly", HOURLY_COLUMNS, "hour_start", sorted(changed))
        for key, windows in changed.items():
            old = stored.get(key)
            row = None if old is None else _advanced(old, windows)
            if row is None:
                full.add(key)
            elif row != old:
                upserts.append(row)
    drop = []
    for series, hour in sorted(full):
        row = hourly_row(series, hour, conn.execute(_HOUR_WINDOWS, (series, hour, hour + HOUR_MS)).fetchall())
        if row is None:
            drop.append((series, hour))
        else:
            upserts.append(row)
    if drop:
        conn.executemany("DELETE FROM metric_rollups_hourly WHERE series = ? AND hour_start = ?", drop)
    if upserts:
        conn.executemany(_UPSERT_HOURLY, upserts)


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
    (``{}`` when there are none), ``window_ms`` (their common size when it divides the hour,
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
        merged = merge_json(orjson.loads(w[10]) for w in finals)
    except ValueError:
        return None
    count, total, low, high = _summed(finals, 0, 0.0, None, None)
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
        "{}" if merged is None else orjson.dumps(merged.to_json()).decode(),
    )


def _summed(windows: Iterable[Sequence[Any]], count: int, total: float, low: float | None,
            high: float | None) -> tuple[int, float, float | None, float | None]:
    """``count``, ``total``, ``low`` and ``high`` with ``windows``' count, sum, min and max
    added (a window's min and max are ``None`` when it holds no sample)."""
    for w in windows:
        count += w[6]
        total += w[7]
        if w[8] is not None and (low is None or w[8] < low):
            low = w[8]
        if w[9] is not None and (high is None or w[9] > high):
            high = w[9]
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
        merged = merge_json([*([orjson.loads(sketch)] if finals else []), *(orjson.loads(w[10]) for w in added)])
    except ValueError:
        return None
    assert merged is not None and size is not None
    count, total, low, high = _summed(added, count, total, low, high)
    for w in added:
        mask |= 1 << ((w[0] - hour) // size)
    last = added[-1]
    return (
        series, hour, end, last[2], last[3], last[4], last[5], windows, finals + len(added), size,
        format(mask, "x"), count, total, low, high, orjson.dumps(merged.to_json()).decode(),
    )


def write_samples(conn: sqlite3.Connection, samples: Iterable[MetricRecorded]) -> None:
    """Raw samples, insert-or-ignore by event id: a resent sample is stored once."""
    conn.executemany(
        "INSERT OR IGNORE INTO performance_metrics(id, timestamp, metric_type, value, unit, labels, tenant_id) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (
                s.event_id, s.occurred_at, s.metric_type, float(s.value), s.unit,
                orjson.dumps(s.labels, option=orjson.OPT_SORT_KEYS).decode(), s.tenant_id,
            )
            for s in samples
        ],
    )


def write_dead_letters(conn: sqlite3.Connection, records: Iterable[Mapping[str, Any]]) -> None:
    conn.executemany(
        'INSERT OR IGNORE INTO dead_letters(topic, partition, "offset", reason, detail, timestamp, key, value) '
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                r["topic"], r["partition"], r["offset"], r["reason"], r["detail"], r.get("timestamp"),
                None if r.get("key") is None else base64.b64decode(r["key"]),
                None if r.get("value") is None else base64.b64decode(r["value"]),
            )
            for r in records
        ],
    )


# -- retention ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Retention:
    executions_ms: int = 30 * 86_400_000
    samples_ms: int = 90 * 86_400_000
    rollups_ms: int = 400 * 86_400_000


@dataclass(frozen=True, slots=True)
class CleanupReport:
    executions: int
    steps: int
    samples: int
    rollups: int
    dead_letters: int


def cleanup(conn: sqlite3.Connection, now_ms: int, retention: Retention = Retention()) -> CleanupReport:
    """Delete what is older than its retention, in one transaction. Finished executions go by
    ``started_at`` (running ones stay), with their steps; the per-tenant counters lose what the
    deleted executions contributed. Raw samples go by ``timestamp``, rollups and dead letters by
    their end / timestamp; the hourly rows of the hours that lost windows are recomputed from
    what is left (or deleted)."""
    executions_before = now_ms - retention.executions_ms
    report: dict[str, int] = {}
    conn.execute("BEGIN IMMEDIATE")
    try:
        doomed = conn.execute(
            "SELECT id, tenant_id, status, duration FROM workflow_executions_monitor "
            "WHERE started_at < ? AND status NOT IN ('pending', 'running')",
            (executions_before,),
        ).fetchall()
        deltas: dict[str, list[int]] = {}
        for row in doomed:
            _contribute(deltas, row[1], row[2], row[3], -1)
        ids = [(row[0],) for row in doomed]
        report["steps"] = _deleted(conn, "DELETE FROM workflow_step_executions WHERE execution_id = ?", ids)
        report["executions"] = _deleted(conn, "DELETE FROM workflow_executions_monitor WHERE id = ?", ids)
        apply_stats_deltas(conn, deltas)
        report["samples"] = conn.execute(
            "DELETE FROM performance_metrics WHERE timestamp < ?", (now_ms - retention.samples_ms,)
        ).rowcount
        rollups_before = now_ms - retention.rollups_ms
        touched = {
            (series, hour_of(start))
            for series, start in conn.execute(
                "SELECT series, window_start FROM metric_rollups WHERE window_end < ?", (rollups_before,)
            )
        }
        report["rollups"] = conn.execute("DELETE FROM metric_rollups WHERE window_end < ?", (rollups_before,)).rowcount
        refresh_hourly(conn, touched)  # an hourly row never claims a deleted window
        report["dead_letters"] = conn.execute(
            "DELETE FROM dead_letters WHERE timestamp < ?", (now_ms - retention.samples_ms,)
        ).rowcount
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return CleanupReport(**report)


def _deleted(conn: sqlite3.Connection, sql: str, params: list[tuple[Any, ...]]) -> int:
    before = conn.total_changes
    conn.executemany(sql, params)
    return conn.total_changes - before


# -- alerts ---------------------------------------------------------------------------------------

_ALERT_STATUSES = ("pending", "firing", "acknowledged", "resolved")
_ALERT_TIMES = (("pending", "pending_at"), ("firing", "fired_at"), ("acknowledged", "acknowledged_at"), ("resolved", "resolved_at"))


def write_alerts(conn: sqlite3.Connection, records: Iterable[dict[str, Any]]) -> None:
    """Upsert each alert (a row only moves forward through its statuses, so a record seen
    again or out of order changes nothing) and its history: one row per status reached."""
    rows = []
    history = []
    for r in records:
        rows.append((
            r["id"], r["rule"], r.get("kind", "threshold"), r["severity"], r["status"], _ALERT_STATUSES.index(r["status"]),
            r.get("tenant_id"), r.get("metric_type"), orjson.dumps(r.get("labels") or {}).decode(), r.get("series"),
            r.get("execution_id"), r.get("value"), r.get("threshold"), r.get("partition", 0), r["pending_at"],
            r.get("fired_at"), r.get("acknowledged_at"), r.get("acknowledged_by"), r.get("resolved_at"), r["at"],
            orjson.dumps(r).decode(),
        ))
        history += [(r["id"], status, r[column]) for status, column in _ALERT_TIMES if r.get(column) is not None]
    conn.executemany(
        "INSERT INTO alerts(id, rule, kind, severity, status, status_rank, tenant_id, metric_type, labels, series, "
        "execution_id, value, threshold, partition, pending_at, fired_at, acknowledged_at, acknowledged_by, resolved_at, "
        "updated_at, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT(id) DO UPDATE SET status = excluded.status, status_rank = excluded.status_rank, "
        "value = excluded.value, fired_at = excluded.fired_at, acknowledged_at = excluded.acknowledged_at, "
        "acknowledged_by = excluded.acknowledged_by, resolved_at = excluded.resolved_at, "
        "updated_at = excluded.updated_at, record = excluded.record "
        "WHERE excluded.status_rank >= alerts.status_rank",
        rows,
    )
    conn.executemany("INSERT OR IGNORE INTO alert_history(alert_id, status, at) VALUES (?, ?, ?)", history)
