"""Executions and their steps as the sink stores them (schema 9's compact tables, see
:mod:`processor.store.schema_execs`), and the per-tenant counters they move.

Writers give rows in the views' form (``workflow_executions_monitor`` and
``workflow_step_executions`` columns, :func:`execution_row` and :func:`step_row` of a snapshot);
:func:`write_execution_rows` interns their texts in ``names`` and upserts them, in the caller's
transaction. Names and row ids depend on the order things were first stored, so two databases
are compared through the views, never the compact tables.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import orjson

from processor.store.conn import Connection
from processor.store.schema_execs import STATUSES
from processor.store.series import event_id

_CHUNK = 500
_STATUS_COLUMNS = ("pending", "running", "completed", "failed", "cancelled")
_CODE = {name: code for code, name in enumerate(STATUSES)}

_EXECUTION_NAMES = ("tenant_ref", "workflow_ref", "workflow_name_ref", "user_ref", "status", "started_at",
                    "completed_at", "duration", "steps_total", "steps_completed", "steps_failed", "current_step_ref",
                    "error_message", "metadata", "tokens_used", "cost", "last_event_at", "trace_id", "span_id")
_UPSERT_EXECUTION = (
    f"INSERT INTO executions(id, {', '.join(_EXECUTION_NAMES)}) VALUES ({', '.join('?' * (1 + len(_EXECUTION_NAMES)))}) "
    f"ON CONFLICT(id) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in _EXECUTION_NAMES)}"
)
_STEP_NAMES = ("step_key_ref", "step_name_ref", "status", "started_at", "completed_at", "duration", "retry_count",
               "error_message", "input_size", "output_size", "tokens_used", "cost", "trace_id", "span_id", "retried_at")
_UPSERT_STEP = (
    f"INSERT INTO steps(execution, id, {', '.join(_STEP_NAMES)}) VALUES ({', '.join('?' * (2 + len(_STEP_NAMES)))}) "
    f"ON CONFLICT(execution, id) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in _STEP_NAMES)}"
)


def stored_id(conn: Connection) -> Callable[[str], str | bytes]:
    """How ``conn`` stores an id: SQLite a UUID's text as its 16 bytes, PostgreSQL as text."""
    return event_id if isinstance(conn, sqlite3.Connection) else str


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
        s.get("trace_id"),
        s.get("span_id"),
    )


def step_row(step: Mapping[str, Any]) -> tuple[Any, ...]:
    """A step of a snapshot as a ``workflow_step_executions`` row."""
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
        step.get("trace_id"),
        step.get("span_id"),
        orjson.dumps(step["retried_at"]).decode() if step.get("retried_at") else None,
    )


def intern(conn: Connection, texts: Iterable[str | None]) -> dict[str, int]:
    """The ``names`` id of every text of ``texts`` (``None`` left out), storing those that are new
    (in order, so that sinks sharing a database take their locks in one order)."""
    wanted = sorted({t for t in texts if t is not None})
    found = _stored(conn, "SELECT id, name FROM names WHERE name IN ({})", wanted)
    missing = [(t,) for t in wanted if t not in found]
    if missing:
        conn.executemany("INSERT INTO names(name) VALUES (?) ON CONFLICT(name) DO NOTHING", missing)
        found.update(_stored(conn, "SELECT id, name FROM names WHERE name IN ({})", [t for (t,) in missing]))
    return found


def _stored(conn: Connection, sql: str, keys: Sequence[Any]) -> dict[Any, int]:
    """``{key: id}`` of the rows ``sql`` (``SELECT id, key ... IN ({})``) finds among ``keys``."""
    out: dict[Any, int] = {}
    for at in range(0, len(keys), _CHUNK):
        chunk = keys[at:at + _CHUNK]
        for id_, key in conn.execute(sql.format(", ".join("?" for _ in chunk)), list(chunk)):
            out[key] = int(id_)
    return out


def execution_seqs(conn: Connection, ids: Iterable[str]) -> dict[str, int]:
    """The row ids (``executions.seq``) of the stored executions among ``ids`` (their text)."""
    store = stored_id(conn)
    by_stored = {store(i): i for i in set(ids)}
    found = _stored(conn, "SELECT seq, id FROM executions WHERE id IN ({})", list(by_stored))
    return {by_stored[k]: seq for k, seq in found.items()}


def write_execution_rows(conn: Connection, executions: Sequence[Sequence[Any]], steps: Sequence[Sequence[Any]]) -> None:
    """Upsert executions and steps given as ``workflow_executions_monitor`` and
    ``workflow_step_executions`` rows (a step's execution is among ``executions`` or stored
    before; a step of none raises ``KeyError``). Status texts outside :data:`STATUSES` raise
    ``KeyError``."""
    names = intern(conn, [*(t for r in executions for t in (r[3], r[1], r[2], r[4], r[12])),
                          *(t for r in steps for t in (r[2], r[3]))])
    store = stored_id(conn)
    conn.executemany(_UPSERT_EXECUTION, [
        (store(r[0]), names[r[3]], names[r[1]], names[r[2]], names[r[4]], _CODE[r[5]], *r[6:12],
         None if r[12] is None else names[r[12]], *r[13:20])
        for r in executions
    ])
    if steps:
        seqs = execution_seqs(conn, (r[1] for r in steps))
        conn.executemany(_UPSERT_STEP, [
            (seqs[r[1]], store(r[0]), names[r[2]], names[r[3]], _CODE[r[4]], *r[5:17]) for r in steps
        ])


def write_executions(conn: Connection, snapshots: Iterable[Mapping[str, Any]]) -> None:
    """Upsert execution snapshots with their steps, and move the per-tenant counters from each
    execution's stored row to its new one, in the caller's transaction."""
    snapshots = list(snapshots)
    if not snapshots:
        return
    old = stored_contributions(conn, [s["id"] for s in snapshots])
    deltas: dict[str, list[int]] = {}
    for s in snapshots:
        before = old.get(s["id"])
        if before is not None:
            contribute(deltas, before[0], before[1], before[2], -1)
        contribute(deltas, s["tenant_id"], s["status"], s["duration"], +1)
    write_execution_rows(conn, [execution_row(s) for s in snapshots],
                         [step_row(step) for s in snapshots for step in s["steps"]])
    apply_stats_deltas(conn, deltas)


def stored_contributions(conn: Connection, ids: list[str]) -> dict[str, tuple[str, str, int | None]]:
    """``id -> (tenant, status, duration)`` of the stored executions among ``ids``."""
    store = stored_id(conn)
    by_stored = {store(i): i for i in ids}
    keys = list(by_stored)
    out: dict[str, tuple[str, str, int | None]] = {}
    for at in range(0, len(keys), _CHUNK):
        chunk = keys[at:at + _CHUNK]
        for id_, tenant, status, duration in conn.execute(
            "SELECT e.id, t.name, e.status, e.duration FROM executions AS e JOIN names AS t ON t.id = e.tenant_ref "
            f"WHERE e.id IN ({', '.join('?' for _ in chunk)})", chunk,
        ):
            out[by_stored[id_]] = (tenant, STATUSES[status], duration)
    return out


def contribute(deltas: dict[str, list[int]], tenant: str, status: str, duration: int | None, sign: int) -> None:
    """``deltas[tenant]``: [total, pending, running, completed, failed, cancelled, duration_sum, duration_count]"""
    d = deltas.setdefault(tenant, [0] * 8)
    d[0] += sign
    d[1 + _STATUS_COLUMNS.index(status)] += sign
    if duration is not None:
        d[6] += sign * duration
        d[7] += sign


def apply_stats_deltas(conn: Connection, deltas: Mapping[str, list[int]]) -> None:
    conn.executemany(
        "INSERT INTO workflow_stats(tenant_id, total, pending, running, completed, failed, cancelled, "
        "duration_sum, duration_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(tenant_id) DO UPDATE SET "
        "total = total + excluded.total, pending = pending + excluded.pending, "
        "running = running + excluded.running, completed = completed + excluded.completed, "
        "failed = failed + excluded.failed, cancelled = cancelled + excluded.cancelled, "
        "duration_sum = duration_sum + excluded.duration_sum, "
        "duration_count = duration_count + excluded.duration_count",
        [(tenant, *d) for tenant, d in sorted(deltas.items()) if any(d)],  # sorted: sinks lock tenants in one order
    )


def delete_executions(conn: Connection, seqs: Sequence[int]) -> tuple[int, int]:
    """Delete the executions of these row ids with their steps; ``(steps, executions)`` deleted."""
    before = conn.total_changes
    conn.executemany("DELETE FROM steps WHERE execution = ?", [(s,) for s in seqs])
    steps = conn.total_changes - before
    conn.executemany("DELETE FROM executions WHERE seq = ?", [(s,) for s in seqs])
    return steps, conn.total_changes - before - steps
