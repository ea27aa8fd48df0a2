"""The migration to schema 9 (executions and steps in the compact layout of
:mod:`processor.store.schema_execs`): a database of schema 8 (the v7 fixture migrated, and one
holding UUID and other ids) reads the same through the views, compares equal row by row
(:mod:`processor.store.dbdiff`), and the query API answers as the queries of schema 8 did on
the tables before."""

from __future__ import annotations

import gzip
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from processor.store.browse import Browser, Cursor
from processor.store.db import (
    EXECUTION_COLUMNS,
    MIGRATIONS,
    SCHEMA_VERSION,
    SINK_DERIVED_TIMES,
    SINK_STATUS,
    STEP_COLUMNS,
    migrate,
    open_for_writing,
)
from processor.store.dbdiff import compare
from processor.store.executions import execution_row, step_row, write_executions
from processor.store.pgconn import open_pg_for_writing
from processor.store.queries import Monitor, uuid_prefix_span
from processor.store.schema import TYPE_TABLES
from processor.store.schema_execs import EXECS_VERSION
from tests.pg import PgServer
from tests.unit.test_daily import table

FIXTURE_V7 = Path(__file__).resolve().parents[1] / "data" / "schema_v7.db.gz"
SCHEMA_EXECS = EXECS_VERSION
"""The version this module tests the step to."""


def at_schema_8(path: Path) -> Path:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        migrate(conn, SCHEMA_EXECS - 1)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_EXECS - 1
    finally:
        conn.close()
    return path


@pytest.fixture
def v8(tmp_path: Path) -> Path:
    path = tmp_path / "v8.db"
    path.write_bytes(gzip.decompress(FIXTURE_V7.read_bytes()))
    return at_schema_8(path)


def migrated(path: Path, tmp_path: Path) -> Path:
    out = tmp_path / "v9.db"
    shutil.copy(path, out)
    open_for_writing(out).close()
    assert table(out, "PRAGMA user_version")[0][0] == SCHEMA_VERSION >= SCHEMA_EXECS
    return out


def _parsed(row: dict[str, Any]) -> dict[str, Any]:
    try:
        return {**row, "metadata": orjson.loads(row["metadata"])}
    except (orjson.JSONDecodeError, TypeError):
        return row


def old_answers(path: Path) -> dict[str, Any]:
    """What the query API of schema 8 answered: its SQL on the tables of schema 8."""
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row

    def rows(sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        return [dict(r) for r in conn.execute(sql, params)]

    execs = f"SELECT {', '.join(EXECUTION_COLUMNS)} FROM workflow_executions_monitor"
    steps = f"SELECT {', '.join(STEP_COLUMNS)} FROM workflow_step_executions"
    try:
        ids = [r[0] for r in conn.execute("SELECT id FROM workflow_executions_monitor ORDER BY id")]
        tenants = [r[0] for r in conn.execute("SELECT DISTINCT tenant_id FROM workflow_executions_monitor")]
        out: dict[str, Any] = {
            "ids": ids,
            "one": {i: _parsed(rows(f"{execs} WHERE id = ?", (i,))[0]) for i in ids},
            "steps": {i: rows(f"{steps} WHERE execution_id = ? ORDER BY started_at, id", (i,)) for i in ids},
            "recent": [_parsed(r) for r in rows(f"{execs} ORDER BY started_at DESC, id DESC LIMIT 7")],
            "active": [_parsed(r) for r in rows(f"{execs} WHERE status IN ('pending', 'running') "
                                                 "ORDER BY started_at DESC, id DESC")],
            "finished": [_parsed(r) for r in rows(f"{execs} WHERE completed_at IS NOT NULL AND status IN "
                                                   "('completed', 'failed', 'cancelled') ORDER BY completed_at, id")],
        }
        for tenant in tenants:
            out[f"recent {tenant}"] = [_parsed(r) for r in rows(
                f"{execs} WHERE tenant_id = ? ORDER BY started_at DESC, id DESC LIMIT 5", (tenant,))]
            out[f"active {tenant}"] = [_parsed(r) for r in rows(
                f"{execs} WHERE status IN ('pending', 'running') AND tenant_id = ? ORDER BY started_at DESC, id DESC",
                (tenant,))]
        return out
    finally:
        conn.close()


def check_answers(path: Path | str, old: dict[str, Any]) -> None:
    with Monitor(path) as m:
        for i in old["ids"]:
            assert m.get_execution(i) == old["one"][i]
            assert m.get_step_executions(i) == old["steps"][i]
            assert m.find_execution_ids(i[:9], limit=1000) == [j for j in old["ids"] if j.startswith(i[:9])]
        assert m.get_steps_of(old["ids"]) == old["steps"]
        assert m.get_recent_executions(7) == old["recent"]
        assert m.get_active_executions() == old["active"]
        assert m.get_finished_executions(limit=10_000) == old["finished"]
        for key, want in old.items():
            if key.startswith("recent "):
                assert m.get_recent_executions(5, key[7:]) == want
            elif key.startswith("active "):
                assert m.get_active_executions(key[7:]) == want
        assert m.get_execution("no such execution") is None and m.get_step_executions("nothing") == []
        assert m.get_recent_executions(5, "no such tenant") == []


def test_the_v7_fixture_through_8_to_9_reads_the_same(v8: Path, tmp_path: Path) -> None:
    """Every row of every table and view compares equal after the step to 9, the original
    execution tables are views, and the query API answers as before."""
    old = old_answers(v8)
    assert len(old["ids"]) > 5 and sum(len(s) for s in old["steps"].values()) > 5
    new = migrated(v8, tmp_path)
    assert [d for d in compare(v8, new) if d.table not in TYPE_TABLES] == []  # the type tier: schema 10's
    kinds = dict(table(new, "SELECT name, type FROM sqlite_master WHERE name IN ('workflow_executions_monitor', "
                            "'workflow_step_executions')"))
    assert kinds == {"workflow_executions_monitor": "view", "workflow_step_executions": "view"}
    for name in ("workflow_executions_monitor", "workflow_step_executions", "workflow_stats"):
        rows = f"SELECT * FROM {name} ORDER BY 1, 2, 3"
        assert table(new, rows) == table(v8, rows), name
    check_answers(new, old)


U = ("0190f2a1-7c3e-7d2a-9b1c-0123456789ab", "0190f2a1-7c3e-7d2a-9b1c-0123456789ac", "0190f2a1-8000-7000-8000-000000000000")


def _snapshot(id_: str, tenant: str, status: str, started: int, steps: list[tuple[str, str, int]]) -> dict[str, Any]:
    done = status in ("completed", "failed", "cancelled")
    return {
        "id": id_, "workflow_id": "wf", "workflow_name": "Review ✓", "tenant_id": tenant, "user_id": None,
        "status": status, "started_at": started, "completed_at": started + 50 if done else None,
        "duration": 50 if done else None, "steps_total": 3, "steps_completed": len(steps), "steps_failed": 0,
        "current_step": steps[-1][1] if steps else None, "error_message": "boom" if status == "failed" else None,
        "metadata": {"k": [1, "two"]}, "tokens_used": 10 if steps else None, "cost": 0.25 if steps else None,
        "last_event_at": started + 60, "trace_id": "ab" * 16 if tenant == "t1" else None, "span_id": None,
        "steps": [{
            "id": sid, "execution_id": id_, "step_key": key, "step_name": key.upper(), "status": "completed",
            "started_at": at, "completed_at": at + 5, "duration": 5, "retry_count": 1, "error_message": None,
            "input_size": 3, "output_size": None, "tokens_used": 10, "cost": 0.125, "trace_id": None, "span_id": None,
            "retried_at": [at + 1],
        } for sid, key, at in steps],
    }


SNAPSHOTS = (
    _snapshot(U[0], "t1", "completed", 1_000, [(U[2], "lint", 1_001), ("step-b", "test", 1_001)]),
    _snapshot(U[1], "t1", "running", 1_000, [("step-c", "lint", 1_002)]),
    _snapshot("e-text", "t1", "running", 1_000, []),  # ties with the UUIDs: ordered by the ids' text
    _snapshot("ffff", "t2", "failed", 900, [("s", "deploy", 950)]),
    _snapshot("0190f2a1", "t2", "pending", 2_000, []),
    _snapshot("unicode-✓", "t2", "cancelled", 2_000, [(U[0], "lint", 2_001)]),  # a step id that is an execution's
)


def test_a_database_not_yet_migrated_is_read_as_it_is(v8: Path, tmp_path: Path) -> None:
    """A read-only connection never migrates: a database of schema 8 answers from its tables
    as before, and the dashboard's pages of executions are those of the migrated database."""
    check_answers(v8, old_answers(v8))
    new = migrated(v8, tmp_path)
    with Browser(v8) as old, Browser(new) as now:
        for filters in ({}, {"status": "completed"}, {"tenant_id": "tenant_a"}, {"workflow_id": "wf_research"},
                        {"status": "nonsense"}):
            pages = [b.list_executions(limit=3, **filters) for b in (old, now)]
            assert pages[0] == pages[1]
            if pages[0].next_cursor:
                after = Cursor.decode(pages[0].next_cursor)
                assert old.list_executions(limit=3, after=after, **filters) == now.list_executions(
                    limit=3, after=after, **filters)
        for tenant in (None, "tenant_a", "tenant_z"):  # costs: sums in the order the rows are read
            usage = _rounded(old.quota_usage(0, 2**62, tenant))
            assert usage == _rounded(now.quota_usage(0, 2**62, tenant)) and (usage or tenant == "tenant_z")
            buckets = _rounded(old.usage_buckets(0, 2**62, 3_600_000, tenant))
            assert buckets == _rounded(now.usage_buckets(0, 2**62, 3_600_000, tenant)) and (buckets or tenant == "tenant_z")


def _rounded(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "cost": round(r["cost"], 9)} for r in rows]


def v8_with_snapshots(path: Path) -> Path:
    """A schema-8 database holding :data:`SNAPSHOTS` in the execution tables of schema 8."""
    v8 = at_schema_8(path)
    conn = sqlite3.connect(v8, isolation_level=None)
    for s in SNAPSHOTS:
        conn.execute(f"INSERT INTO workflow_executions_monitor({', '.join(EXECUTION_COLUMNS)}) VALUES "
                     f"({', '.join('?' * len(EXECUTION_COLUMNS))})", execution_row(s))
        for step in s["steps"]:
            conn.execute(f"INSERT INTO workflow_step_executions({', '.join(STEP_COLUMNS)}) VALUES "
                         f"({', '.join('?' * len(STEP_COLUMNS))})", step_row(step))
    conn.close()
    return v8


def test_uuid_and_other_ids_migrate_and_answer_as_before(tmp_path: Path) -> None:
    """Ids of UUID text are stored as their 16 bytes and read back as their text, in the order
    of their text among other ids; names and statuses are interned and decoded."""
    v8 = v8_with_snapshots(tmp_path / "uuids.db")
    old = old_answers(v8)
    new = migrated(v8, tmp_path)
    assert [d for d in compare(v8, new) if d.table not in TYPE_TABLES] == []  # the type tier: schema 10's
    check_answers(new, old)
    assert table(new, "SELECT typeof(id), count(*) FROM executions GROUP BY 1 ORDER BY 1") == [("blob", 2), ("text", 4)]
    assert table(new, "SELECT typeof(id), count(*) FROM steps GROUP BY 1 ORDER BY 1") == [("blob", 2), ("text", 3)]
    with Monitor(new) as m:
        assert m.find_execution_ids("0190f2a1") == ["0190f2a1", U[0]]
        assert m.find_execution_ids("0190f2a1-7c3e", limit=5) == [U[0], U[1]]
        assert m.find_execution_ids("0190F2A1") == []


def test_the_sink_writes_what_the_migration_makes(tmp_path: Path) -> None:
    """The same snapshots written by the new sink's writer compare equal to the migrated rows,
    and writing them again changes nothing (the writes are upserts)."""
    v8 = v8_with_snapshots(tmp_path / "uuids.db")
    new = migrated(v8, tmp_path)
    fresh = tmp_path / "fresh.db"
    for _ in range(2):
        w = open_for_writing(fresh)
        w.execute("BEGIN")
        write_executions(w, reversed(SNAPSHOTS))
        w.execute("COMMIT")
        w.close()
    assert [d.table for d in compare(new, fresh)] == ["workflow_stats"]  # the fixture's counters were not written
    assert table(fresh, "SELECT total, completed, running FROM workflow_stats WHERE tenant_id = 't1'") == [(3, 1, 2)]


def test_a_postgresql_store_of_schema_8_migrates_its_rows(tmp_path: Path, postgres: PgServer) -> None:
    """PostgreSQL runs the same step (its ids stay text): equal to the SQLite database migrated
    from the same rows, and the query API answers as before."""
    lite = at_schema_8(tmp_path / "lite.db")
    url = postgres.fresh()
    pg = open_pg_for_writing(url, MIGRATIONS, SCHEMA_EXECS - 1, (SINK_STATUS, SINK_DERIVED_TIMES))
    with sqlite3.connect(lite, isolation_level=None) as conn:
        for target in (conn, pg):
            target.execute("BEGIN")
            for s in SNAPSHOTS:
                target.execute(f"INSERT INTO workflow_executions_monitor({', '.join(EXECUTION_COLUMNS)}) VALUES "
                               f"({', '.join('?' * len(EXECUTION_COLUMNS))})", execution_row(s))
                for step in s["steps"]:
                    target.execute(f"INSERT INTO workflow_step_executions({', '.join(STEP_COLUMNS)}) VALUES "
                                   f"({', '.join('?' * len(STEP_COLUMNS))})", step_row(step))
            target.execute("COMMIT")
    pg.close()
    old = old_answers(lite)
    open_for_writing(url).close()
    assert compare(migrated(lite, tmp_path), url) == []
    check_answers(url, old)


def test_uuid_prefix_span() -> None:
    assert uuid_prefix_span("0190f2a1-7") == (bytes.fromhex("0190f2a17" + "0" * 23), bytes.fromhex("0190f2a17" + "f" * 23))
    assert uuid_prefix_span(U[0]) == (bytes.fromhex(U[0].replace("-", "")),) * 2
    for no in ("", "0190f2a1x", "0190f2a17", "0190F2A1", U[0] + "0"):
        assert uuid_prefix_span(no) is None
