"""What the sink writes, as SQL: one idempotent batch per transaction.

:class:`SinkBatch` holds the records of one batch, already coalesced (the last snapshot of each
execution and window). :func:`write_batch` upserts them and stores the consumed offsets in the
same transaction, so the database and its offsets never disagree: replaying a batch writes the
same rows again. Per-tenant counters in ``workflow_stats`` move from each execution's old row to
its new one inside that transaction, and the hourly rows of ``metric_rollups_hourly`` are
recomputed from the window rows of every (series, hour) the batch touched
(:mod:`processor.store.hourly`), and the daily rows of ``metric_rollups_daily`` from the hourly
rows of every (series, day) whose hourly rows changed (:mod:`processor.store.daily`), then the
per-metric-type rows of both (:mod:`processor.store.type_tier`) and of the windows
(:mod:`processor.store.type_windows`). Retention is :mod:`processor.store.retention`.

Used by the live sink (:mod:`processor.runtime.sink`) and by replay alike.
"""

from __future__ import annotations

import base64
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from processor.errors import AxmonError
from processor.folds.decode import decode_input
from processor.folds.records import Emit, Origin, Stream
from processor.folds.sketch_codec import encode_json
from processor.folds.windows import sample_series
from processor.store.conn import Connection
from processor.store.daily import refresh_daily
from processor.store.db import LOG_COLUMNS
from processor.store.executions import execution_row as execution_row  # re-exported: the sink's row forms
from processor.store.executions import step_row as step_row
from processor.store.executions import write_executions
from processor.store.hourly import Written, refresh_hourly, stored_windows
from processor.store.pgconn import PgConnection
from processor.store.series import write_keyed_samples, write_window_rows
from processor.store.type_tier import refresh_types
from processor.store.type_windows import refresh_type_windows
from schemas.events import LogRecorded, MetricRecorded

KeyedSample = tuple[str, tuple[str, int, str, float, str, str, str | None]]
"""A raw sample as :func:`processor.store.series.write_keyed_samples` takes it: ``(series key,
performance_metrics row)``."""


def sample_row(s: MetricRecorded) -> KeyedSample:
    return (sample_series(s)[1],
            (s.event_id, s.occurred_at, s.metric_type, float(s.value), s.unit,
             orjson.dumps(s.labels, option=orjson.OPT_SORT_KEYS).decode(), s.tenant_id))


@dataclass
class SinkBatch:
    """One transaction's worth of records. Builders call the ``add_*`` methods in offset order."""

    executions: dict[str, dict[str, Any]] = field(default_factory=dict)
    rollups: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    samples: dict[str, KeyedSample] = field(default_factory=dict)
    """Raw samples by event id, as the rows they are stored as (:func:`sample_row`): a batch
    that crosses a process boundary (replay's fold processes) pickles tuples, several times
    faster than the events."""
    logs: dict[str, LogRecorded] = field(default_factory=dict)
    dead_letters: dict[tuple[str, int, int], dict[str, Any]] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    """Alert records in offset order (each is a transition)."""
    offsets: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)
    """(topic, partition) -> (next offset, stream time)"""
    derived_times: dict[tuple[str, int], int] = field(default_factory=dict)
    """(topic, partition) -> the derived lane's stream time (metrics partitions)"""
    first_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    """(topic, partition) -> the first offset of the batch (what a fenced write checks)"""
    records: int = 0

    def add_execution(self, snapshot: dict[str, Any]) -> None:
        self.executions[snapshot["id"]] = snapshot  # coalesce: the last snapshot wins

    def add_rollup(self, rollup: dict[str, Any]) -> None:
        self.rollups[(rollup["series"], rollup["window_start"])] = rollup

    def add_sample(self, sample: MetricRecorded) -> None:
        if sample.event_id not in self.samples:
            self.samples[sample.event_id] = sample_row(sample)

    def add_log(self, record: LogRecorded) -> None:
        self.logs.setdefault(record.event_id, record)

    def add_log_input(self, origin: Origin, key: bytes | None, value: bytes | None) -> bool:
        """A record of the logs topic: its log record, or (when it is not one) its dead letter,
        stored directly (no worker reads the logs topic). The sink and replay both call this."""
        decoded = decode_input(LogRecorded, value, origin, key)
        if isinstance(decoded, LogRecorded):
            self.add_log(decoded)
            return True
        if isinstance(decoded, Emit) and decoded.value is not None:
            self.add_dead_letter(orjson.loads(decoded.value))
        return False

    def add_dead_letter(self, record: dict[str, Any]) -> None:
        self.dead_letters[(record["topic"], record["partition"], record["offset"])] = record

    def add_alert(self, record: dict[str, Any]) -> None:
        if record.get("status") not in _ALERT_STATUSES or not record.get("id"):
            raise KeyError(f"not an alert record: {str(record)[:80]}")
        self.alerts.append(record)

    def add(self, stream: Stream, record: dict[str, Any]) -> None:
        """A derived record, by the stream it is on (as the worker publishes it, or as replay
        computes it); the streams the database does not hold are left out."""
        if stream is Stream.EXECUTION_STATE:
            self.add_execution(record)
        elif stream is Stream.METRIC_ROLLUPS:
            self.add_rollup(record)
        elif stream is Stream.DEAD_LETTER:
            self.add_dead_letter(record)
        elif stream is Stream.ALERTS:
            self.add_alert(record)

    def consumed(self, topic: str, partition: int, next_offset: int, stream_time: int, derived_time: int | None = None) -> None:
        self.offsets[(topic, partition)] = (next_offset, stream_time)
        self.first_offsets.setdefault((topic, partition), next_offset - 1)
        if derived_time is not None:
            self.derived_times[(topic, partition)] = derived_time

    def __len__(self) -> int:
        return (len(self.executions) + len(self.rollups) + len(self.samples) + len(self.logs) + len(self.dead_letters)
                + len(self.alerts))


UNWRITABLE = (sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.ProgrammingError, sqlite3.DataError,
              OverflowError, TypeError, ValueError, KeyError, IndexError, AttributeError)
"""What one malformed or unstorable record raises while its rows are built or written (no retry
helps); a busy or failing database raises something else, and the batch is tried again."""


class OffsetConflict(AxmonError):
    """Another sink has written past the start of this batch on one of its partitions (the
    partition moved to it in a rebalance): nothing was written; consume again from the stored
    offsets."""


def write_batch(conn: Connection, batch: SinkBatch, *, written_at_ms: int | None = None, fenced: bool = False) -> list[str]:
    """Write ``batch`` and its offsets in one transaction (all or nothing), and the wall-clock
    time of the write (``written_at_ms``, default now) in ``sink_status``.

    ``fenced`` (several sinks sharing the database): the transaction first locks the batch's
    partitions and checks that the offsets stored for them are not past the batch's first
    offsets; when one is, it writes nothing and raises :class:`OffsetConflict`. So each
    partition's records are written once, in order, whichever sink consumed them.

    When a record of the batch cannot be written (:data:`UNWRITABLE`), the batch is written
    again record by record, each in a savepoint, leaving out those that fail: one record never
    stops the sink. Returns what was left out (normally nothing) for the caller to count."""
    written_at = int(time.time() * 1000) if written_at_ms is None else written_at_ms
    try:
        _transaction(conn, batch, written_at, _write_all, fenced)
        return []
    except UNWRITABLE:
        pass
    skipped: list[str] = []
    _transaction(conn, batch, written_at, lambda c, b: skipped.extend(_write_each(c, b)), fenced)
    return skipped


def _transaction(conn: Connection, batch: SinkBatch, written_at: int,
                 write: Callable[[Connection, SinkBatch], object], fenced: bool = False) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        if fenced:
            _fence(conn, batch)
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


def _fence(conn: Connection, batch: SinkBatch) -> None:
    keys = sorted(batch.first_offsets)
    if isinstance(conn, PgConnection):
        conn.lock_partitions(keys)  # held to the commit: one writer per partition at a time
    stored = stored_offsets(conn)
    behind = [f"{t}/{p}" for t, p in keys if stored.get((t, p), (0, 0))[0] > batch.first_offsets[(t, p)]]
    if behind:
        raise OffsetConflict(f"another sink wrote past this batch's start on {', '.join(behind)}")


def _write_all(conn: Connection, batch: SinkBatch) -> None:
    write_executions(conn, batch.executions.values())
    write_rollups(conn, batch.rollups.values())
    write_samples(conn, batch.samples.values())
    write_logs(conn, batch.logs.values())
    write_dead_letters(conn, batch.dead_letters.values())
    write_alerts(conn, batch.alerts)


def _write_each(conn: Connection, batch: SinkBatch) -> list[str]:
    """:func:`_write_all` one record at a time, in the same order; the descriptions of the
    records that could not be written."""
    items: list[tuple[str, Callable[[Connection, Any], None], Any]] = [
        *((f"execution {k[:80]!r}", write_executions, v) for k, v in batch.executions.items()),
        *((f"rollup {k[0][:80]}@{k[1]}", write_rollups, v) for k, v in batch.rollups.items()),
        *((f"sample {k[:80]!r}", write_samples, v) for k, v in batch.samples.items()),
        *((f"log {k[:80]!r}", write_logs, v) for k, v in batch.logs.items()),
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


def stored_offsets(conn: Connection) -> dict[tuple[str, int], tuple[int, int]]:
    return {
        (row[0], row[1]): (row[2], row[3])
        for row in conn.execute("SELECT topic, partition, next_offset, stream_time FROM sink_offsets")
    }


def stored_derived_times(conn: Connection) -> dict[tuple[str, int], int]:
    """The derived lane's stream time of each metrics partition, as the sink stored it."""
    return {(row[0], row[1]): row[2] for row in conn.execute("SELECT topic, partition, stream_time FROM sink_derived_times")}


# -- metrics --------------------------------------------------------------------------------------


def write_rollups(conn: Connection, rollups: Iterable[Mapping[str, Any]]) -> None:
    """Upsert the window rows, then bring the hourly row of every (series, hour) whose windows
    changed up to date (:func:`refresh_hourly`), and the daily row of every (series, day) whose
    hourly rows changed (:func:`refresh_daily`), and their per-metric-type rows
    (:func:`refresh_types`), and the per-metric-type window row of every (type, window start)
    whose windows changed (:func:`refresh_type_windows`), in the caller's transaction. The window rows
    per day and the raw samples per type are counted by triggers (see :mod:`processor.store.db`)."""
    rows = [
        (
            r["series"], r["window_start"], r["window_end"], r["tenant_id"], r["metric_type"],
            orjson.dumps(r["labels"], option=orjson.OPT_SORT_KEYS).decode(), r["unit"], r["count"],
            r["sum"], r["min"], r["max"], encode_json(r["sketch"]), int(bool(r["final"])),
        )
        for r in rollups
    ]
    if not rows:
        return
    stored = stored_windows(conn, rows)
    write_window_rows(conn, rows)
    written = Written.of(rows, stored)
    changes = refresh_hourly(conn, (), written=written)
    refresh_daily(conn, changes)
    refresh_types(conn, changes)
    refresh_type_windows(conn, written)


def write_samples(conn: Connection, samples: Iterable[KeyedSample]) -> None:
    """Raw samples (:func:`sample_row`), insert-or-ignore: a resent sample (the same event) is
    stored once."""
    write_keyed_samples(conn, list(samples))


_INSERT_LOG = (f"INSERT OR IGNORE INTO logs({', '.join(LOG_COLUMNS)}) "
               f"VALUES ({', '.join('?' for _ in LOG_COLUMNS)})")


def write_logs(conn: Connection, records: Iterable[LogRecorded]) -> None:
    """Log records, insert-or-ignore by event id: a resent record is stored once."""
    conn.executemany(_INSERT_LOG, [
        (
            r.event_id, r.occurred_at, r.tenant_id, r.level, r.severity_number, r.message, r.execution_id,
            r.step_id, orjson.dumps(r.attributes, option=orjson.OPT_SORT_KEYS).decode(), r.trace_id, r.span_id,
            r.source,
        )
        for r in records
    ])


def write_dead_letters(conn: Connection, records: Iterable[Mapping[str, Any]]) -> None:
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


# -- alerts ---------------------------------------------------------------------------------------

_ALERT_STATUSES = ("pending", "firing", "acknowledged", "resolved")
_ALERT_TIMES = (("pending", "pending_at"), ("firing", "fired_at"), ("acknowledged", "acknowledged_at"), ("resolved", "resolved_at"))


def write_alerts(conn: Connection, records: Iterable[dict[str, Any]]) -> None:
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
