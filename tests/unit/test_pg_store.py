"""PostgreSQL as the store: the translation of the store's SQL, the schema it creates, its
errors, the fenced writes several sinks rely on (on both backends), and the copy of a SQLite
file into PostgreSQL (replay's --swap)."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from processor.folds.execution import ExecutionState, apply, snapshot
from processor.ops.health_probe import observe_database
from processor.store.db import SCHEMA_VERSION, DatabaseError, open_for_writing, open_read_only
from processor.store.dbdiff import compare
from processor.store.pgcopy import copy_into
from processor.store.pgdialect import Untranslatable, translate
from processor.store.queries import Monitor
from processor.store.retention import Retention, cleanup
from processor.store.sinkdb import OffsetConflict, SinkBatch, write_batch
from producers.simulator import ScenarioConfig, generate_scenario
from schemas.events import LifecycleEvent
from tests.pg import DbAt, PgServer
from tests.unit.test_hourly import build, scenario

# -- the translation (pure) -----------------------------------------------------------------------


def test_parameters_percent_and_insert_or_ignore_are_translated() -> None:
    assert translate("SELECT a % 2 FROM t WHERE b = ? AND c = '?'") == "SELECT a %% 2 FROM t WHERE b = %s AND c = '?'"
    assert translate("INSERT OR IGNORE INTO t(a) VALUES (?)") == "INSERT INTO t(a) VALUES (%s) ON CONFLICT DO NOTHING"
    assert translate("BEGIN IMMEDIATE") == "BEGIN"
    assert "INDEXED BY" not in translate("SELECT id FROM t INDEXED BY idx WHERE a = ?")


def test_increments_are_qualified_and_nulls_ordered_as_in_sqlite() -> None:
    upsert = translate("INSERT INTO s(k, n) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET n = n + excluded.n")
    assert upsert.endswith("SET n = s.n + excluded.n")
    ordered = translate('SELECT * FROM d ORDER BY timestamp DESC, topic, "offset" DESC LIMIT ?')
    assert ordered == 'SELECT * FROM d ORDER BY timestamp DESC NULLS LAST, topic NULLS FIRST, "offset" DESC NULLS LAST LIMIT %s'


def test_json_idioms_are_translated_and_others_refused() -> None:
    assert "sq_each(%s)" in translate("SELECT a.value FROM json_each(?) AS a")
    assert "json_each_text(r.labels::json)" in translate("SELECT j.key FROM metric_rollups AS r, json_each(r.labels) AS j")
    with pytest.raises(Untranslatable):
        translate("SELECT json_group_array(x) FROM t")
    with pytest.raises(Untranslatable):
        translate("INSERT OR REPLACE INTO t VALUES (?)")


# -- the schema and errors -------------------------------------------------------------------------


def _columns_sqlite(path: Path) -> dict[str, list[str]]:
    conn = sqlite3.connect(path)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name")]
        return {n: [r[1] for r in conn.execute(f'PRAGMA table_info("{n}")')] for n in names}
    finally:
        conn.close()


def test_the_schema_has_sqlites_tables_views_and_columns_and_its_version(tmp_path: Path, postgres: PgServer) -> None:
    open_for_writing(tmp_path / "s.db").close()
    url = postgres.fresh()
    open_for_writing(url).close()
    open_for_writing(url).close()  # opening again changes nothing
    conn = open_read_only(url)
    try:
        rows = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "ORDER BY table_name, ordinal_position").fetchall()
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()
    pg: dict[str, list[str]] = {}
    for table, column in rows:
        pg.setdefault(table, []).append(column)
    assert pg.pop("schema_version") == ["version"]
    assert pg["logs"].pop() == "rowid"  # SQLite's implicit row id, which get_logs follows
    assert pg == _columns_sqlite(tmp_path / "s.db")


def test_an_empty_or_unreachable_database_is_a_database_error(postgres: PgServer) -> None:
    with pytest.raises(DatabaseError, match="not an axmon database"):
        Monitor(postgres.fresh())
    with pytest.raises(DatabaseError, match="cannot connect"):
        Monitor("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")


def test_the_reading_connection_is_read_only(postgres: PgServer) -> None:
    url = postgres.fresh()
    open_for_writing(url).close()
    with Monitor(url) as monitor, pytest.raises(sqlite3.OperationalError, match="read-only"):
        monitor._conn.execute("DELETE FROM samples")


# -- fenced writes (several sinks) ------------------------------------------------------------------


def _snapshots(executions: int) -> list[dict[str, Any]]:
    states: dict[str, ExecutionState] = {}
    for event in generate_scenario(ScenarioConfig(seed=5, tenants=2, executions=executions)):
        if isinstance(event, LifecycleEvent):
            states[event.execution_id] = apply(states.get(event.execution_id), event)
    return [snapshot(s) for s in states.values()]


def _batch(topic: str, first: int, snapshots: list[dict[str, Any]]) -> SinkBatch:
    batch = SinkBatch()
    for n, s in enumerate(snapshots):
        batch.add_execution(s)
        batch.consumed(topic, 0, first + n + 1, 0)
    return batch


def test_a_fenced_batch_behind_the_stored_offsets_writes_nothing(db: DbAt) -> None:
    snapshots = _snapshots(12)
    conn = open_for_writing(db("f.db"))
    try:
        write_batch(conn, _batch("t", 0, snapshots[:8]), fenced=True)
        write_batch(conn, _batch("t", 8, snapshots[8:]), fenced=True)  # continues where the first ended
        with pytest.raises(OffsetConflict, match="t/0"):
            write_batch(conn, _batch("t", 4, snapshots[4:]), fenced=True)  # another sink's stale batch
    finally:
        conn.close()
    with Monitor(db("f.db")) as monitor:
        assert monitor.get_workflow_stats()["total"] == len(snapshots)  # counted once
        assert len(monitor.get_recent_executions(limit=100)) == len(snapshots)


# -- replay --swap into PostgreSQL ----------------------------------------------------------------


def test_a_sqlite_file_copied_into_postgresql_compares_equal(tmp_path: Path, postgres: PgServer) -> None:
    samples, rollups = scenario(3, odd_sizes=True)
    source = build(tmp_path / "new.db", samples, rollups)
    conn = open_for_writing(source)
    write_batch(conn, _batch("axmon.execution-state", 0, _snapshots(20)))
    conn.close()
    url = postgres.fresh()
    live = open_for_writing(url)
    write_batch(live, _batch("axmon.execution-state", 0, _snapshots(3)))  # what the copy replaces
    live.close()
    copied = copy_into(source, url)
    assert copied["rollup_windows"] == len(rollups) and copied["samples"] == len(samples)
    assert compare(source, url) == []  # the counts tables too, counted again by the triggers


def test_health_observes_a_postgresql_store(postgres: PgServer) -> None:
    url = postgres.fresh()
    conn = open_for_writing(url)
    write_batch(conn, _batch("axmon.execution-state", 0, _snapshots(3)), written_at_ms=1_234)
    conn.close()
    seen = observe_database(url)
    assert seen.error is None and seen.exists and seen.schema_version == SCHEMA_VERSION
    assert seen.quick_check == ("ok",) and seen.last_write_ms == 1_234 and seen.last_write_source == "sink_status"
    assert seen.sink_offsets == {("axmon.execution-state", 0): 3}
    assert observe_database("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2").error


def test_sinks_cleaning_up_together_take_each_execution_off_the_counters_once(postgres: PgServer) -> None:
    url = postgres.fresh()
    snapshots = _snapshots(30)
    conn = open_for_writing(url)
    write_batch(conn, _batch("axmon.execution-state", 0, snapshots))
    conn.close()
    now = max(s["last_event_at"] for s in snapshots) + Retention().executions_ms + 1
    conns = [open_for_writing(url) for _ in range(3)]
    try:
        with ThreadPoolExecutor(len(conns)) as pool:
            reports = list(pool.map(lambda c: cleanup(c, now), conns))
    finally:
        for c in conns:
            c.close()
    finished = [s for s in snapshots if s["status"] not in ("pending", "running")]
    assert sum(r.executions for r in reports) == len(finished)
    with Monitor(url) as monitor:
        assert monitor.get_workflow_stats()["total"] == len(snapshots) - len(finished)
        assert len(monitor.get_recent_executions(limit=100)) == len(snapshots) - len(finished)
