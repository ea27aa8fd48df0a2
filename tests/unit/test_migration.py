"""The migrations to schema 6 (the day tier and the kept counts), 7 (sketches stored as bytes) and 8
(the compact metric layout) on databases that the sink's code of schema 5, 6 and 7 wrote
(``tests/data/schema_v5.db.gz``, ``schema_v6.db.gz``, ``schema_v7.db.gz``, see
``tests/data/make_schema_db.py``): the queries answer as before (and as the raw samples say), the
new tables are what the new code writes from the same rows, and whole days are then read from the
day tier."""

from __future__ import annotations

import gzip
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from processor.folds.sketch import QuantileSketch
from processor.folds.sketch_codec import decode, encode
from processor.store.db import DAY_MS, HOUR_MS, SCHEMA_VERSION, open_for_writing
from processor.store.dbdiff import compare
from processor.store.queries import Monitor
from processor.store.sinkdb import SinkBatch, write_batch
from schemas.events import MetricRecorded
from tests.unit.test_daily import counts_are_the_rows, daily_rows, recomputed_daily, table
from tests.unit.test_hourly import same, same_series
from tests.unit.test_queries import Sample, check_aggregation, check_series, selected

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "schema_v5.db.gz"
D0 = 1_700_006_400_000
MT = "api.request.duration"
RANGES = ((D0, D0 + DAY_MS), (D0, D0 + 3 * DAY_MS), (D0 - 1, D0 + 2 * DAY_MS + 1),
          (D0 + 5 * HOUR_MS + 3, D0 + DAY_MS + 20 * HOUR_MS), (D0 + DAY_MS, D0 + 2 * DAY_MS + 12 * HOUR_MS))
FILTERS: tuple[tuple[str | None, dict[str, str] | None], ...] = (
    (None, None), ("tenant_a", None), (None, {"model": "large"}), ("tenant_b", {}), ("tenant_z", None))
TIER_TABLES = ("metric_rollups_hourly", "metric_rollups_daily", "metric_rollup_day_counts", "metric_counts")


@pytest.fixture
def v5(tmp_path: Path) -> Path:
    path = tmp_path / "v5.db"
    path.write_bytes(gzip.decompress(FIXTURE.read_bytes()))
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 5
    finally:
        conn.close()
    return path


def answers(path: Path) -> list[Any]:
    out: list[Any] = []
    with Monitor(path) as m:
        for start, end in RANGES:
            for tenant, labels in FILTERS:
                out.append(m.get_aggregation(MT, start, end, tenant, labels))
                for interval in (DAY_MS, HOUR_MS):
                    out.append(m.get_time_series(MT, start, end, interval, labels, tenant))
        for tenant in (None, "tenant_a", "tenant_b"):
            out += [m.get_metric_count(MT, tenant), m.get_metric_count("cache.hit_rate", tenant), m.get_metric_count(None, tenant)]
    return out


def same_answers(new: list[Any], old: list[Any]) -> None:
    """The same answers, read from the same rows: equal but for the last bits of sums of raw
    samples, which SQL adds in the order it reads the rows (series by series in schema 8)."""
    assert len(new) == len(old)
    for n, o in zip(new, old):
        if o is None or isinstance(o, int):
            assert n == o
        elif "data_points" in o:
            same_series(n, o)
        else:
            assert n is not None
            # the rows read may differ (schema 9 reads the per-metric-type tier): their merge may not
            assert {k: v for k, v in n.items() if k not in ("sum", "avg") and not k.startswith("from_")} == {
                k: v for k, v in o.items() if k not in ("sum", "avg") and not k.startswith("from_")}
            assert n["sum"] == pytest.approx(o["sum"], rel=1e-12) and n["avg"] == pytest.approx(o["avg"], rel=1e-12)


def stored_samples(path: Path) -> list[Sample]:
    return [Sample(i, t, v, mt, tenant, orjson.loads(labels)) for i, t, v, mt, tenant, labels in table(
        path, "SELECT id, timestamp, value, metric_type, tenant_id, labels FROM performance_metrics")]


def test_a_schema_5_database_migrates_and_answers_as_before(v5: Path, tmp_path: Path) -> None:
    before = answers(v5)  # schema 5, read as it is: windows, hourly rows, counts by a scan
    migrated = tmp_path / "migrated.db"
    shutil.copy(v5, migrated)
    open_for_writing(migrated).close()
    assert table(migrated, "PRAGMA user_version")[0][0] == SCHEMA_VERSION
    assert daily_rows(migrated) == recomputed_daily(migrated) and daily_rows(migrated)
    counts_are_the_rows(migrated)
    after = answers(migrated)
    for old, new in zip(before, after):
        if isinstance(old, int) or old is None:
            assert new == old
        elif "data_points" in old:
            same_series(new, old)
        else:
            same(new, {**old, "from_hourly": 0, "from_daily": 0})  # the same figures, from fewer rows
    samples = stored_samples(migrated)
    with Monitor(migrated) as m:
        whole = m.get_aggregation(MT, D0, D0 + 2 * DAY_MS)
        assert whole is not None and whole["from_daily"] > 0
        for start, end in RANGES:
            for tenant, labels in FILTERS:
                expected = selected(samples, start, end, tenant, labels)
                check_aggregation(m.get_aggregation(MT, start, end, tenant, labels), expected)
                check_series(m.get_time_series(MT, start, end, DAY_MS, labels, tenant), expected, start, DAY_MS)


def test_the_migrated_tiers_are_what_the_new_sink_writes_from_the_same_rows(v5: Path, tmp_path: Path) -> None:
    migrated = tmp_path / "migrated.db"
    shutil.copy(v5, migrated)
    open_for_writing(migrated).close()
    fresh = tmp_path / "fresh.db"
    conn = open_for_writing(fresh)
    samples = [MetricRecorded(event_id=s.id, occurred_at=s.timestamp, tenant_id=s.tenant_id, metric_type=s.metric_type,
                              value=s.value, unit="ms", labels=dict(s.labels)) for s in stored_samples(v5)]
    rollups = [
        {"series": r[0], "window_start": r[1], "window_end": r[2], "tenant_id": r[3], "metric_type": r[4],
         "labels": orjson.loads(r[5]), "unit": r[6], "count": r[7], "sum": r[8], "min": r[9], "max": r[10],
         "sketch": orjson.loads(r[11]), "final": bool(r[12])}
        for r in table(v5, "SELECT series, window_start, window_end, tenant_id, metric_type, labels, unit, count, sum, "
                           "min, max, sketch, final FROM metric_rollups ORDER BY window_start DESC")
    ]
    for k in range(0, max(len(samples), len(rollups)), 333):
        batch = SinkBatch()
        for s in samples[k:k + 333]:
            batch.add_sample(s)
        for r in rollups[k:k + 333]:
            batch.add_rollup(r)
        write_batch(conn, batch, written_at_ms=0)
    conn.close()
    for name in TIER_TABLES:
        rows = f"SELECT * FROM {name} ORDER BY 1, 2, 3"
        assert table(migrated, rows) == table(fresh, rows), name


FIXTURE_V6 = Path(__file__).resolve().parents[1] / "data" / "schema_v6.db.gz"
SKETCH_TABLES = ("metric_rollups", "metric_rollups_hourly", "metric_rollups_daily")


@pytest.fixture
def v6(tmp_path: Path) -> Path:
    path = tmp_path / "v6.db"
    path.write_bytes(gzip.decompress(FIXTURE_V6.read_bytes()))
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 6
        assert conn.execute("SELECT DISTINCT typeof(sketch) FROM metric_rollups").fetchall() == [("text",)]
    finally:
        conn.close()
    return path


def test_a_schema_6_database_migrates_to_sketch_bytes_and_answers_as_before(v6: Path, tmp_path: Path) -> None:
    """The step to 7 stores every sketch as bytes that decode to exactly the sketch its JSON
    held, changes no other column, and the queries answer exactly as on the database before
    (which the reader merges from JSON)."""
    before = answers(v6)
    migrated = tmp_path / "migrated.db"
    shutil.copy(v6, migrated)
    open_for_writing(migrated).close()
    assert table(migrated, "PRAGMA user_version")[0][0] == SCHEMA_VERSION
    for name in SKETCH_TABLES:
        old, new = table(v6, f"SELECT * FROM {name} ORDER BY 1, 2"), table(migrated, f"SELECT * FROM {name} ORDER BY 1, 2")
        assert len(old) == len(new) > 0, name
        at = [c[1] for c in table(v6, f"PRAGMA table_info({name})")].index("sketch")
        for o, n in zip(old, new):
            assert o[:at] + o[at + 1:] == n[:at] + n[at + 1:]
            assert isinstance(n[at], bytes)
            data = orjson.loads(o[at])
            assert n[at] == (b"" if not data else encode(QuantileSketch.from_json(data)))
            assert not data or decode(n[at]) == QuantileSketch.from_json(data)
    counts_are_the_rows(migrated)
    assert daily_rows(migrated) == recomputed_daily(migrated)
    same_answers(answers(migrated), before)
    with Monitor(migrated) as m:
        whole = m.get_aggregation(MT, D0, D0 + 2 * DAY_MS)
        assert whole is not None and whole["from_daily"] > 0


FIXTURE_V7 = Path(__file__).resolve().parents[1] / "data" / "schema_v7.db.gz"
READABLE = ("performance_metrics", "metric_rollups", "metric_rollups_hourly", "metric_rollups_daily",
            "metric_rollup_day_counts", "metric_counts", "workflow_executions_monitor", "workflow_step_executions",
            "workflow_stats")


@pytest.fixture
def v7(tmp_path: Path) -> Path:
    path = tmp_path / "v7.db"
    path.write_bytes(gzip.decompress(FIXTURE_V7.read_bytes()))
    assert table(path, "PRAGMA user_version")[0][0] == 7
    assert table(path, "SELECT type FROM sqlite_master WHERE name = 'performance_metrics'") == [("table",)]
    return path


def test_a_schema_7_database_migrates_to_the_compact_layout_and_reads_the_same(v7: Path, tmp_path: Path) -> None:
    """The step to 8 moves every metric row into the compact tables; the original tables read the
    same through their views (every row, every column), the whole database compares equal, the
    queries answer exactly as on the database before, and each series is stored once."""
    before = answers(v7)
    migrated = tmp_path / "migrated.db"
    shutil.copy(v7, migrated)
    open_for_writing(migrated).close()
    assert table(migrated, "PRAGMA user_version")[0][0] == SCHEMA_VERSION >= 8
    for name in READABLE:
        rows = f"SELECT * FROM {name} ORDER BY 1, 2, 3"
        old = table(v7, rows)
        assert old and table(migrated, rows) == old, name
    kinds = dict(table(migrated, "SELECT name, type FROM sqlite_master WHERE name IN ('performance_metrics', "
                                 "'metric_rollups', 'metric_rollups_hourly', 'metric_rollups_daily')"))
    assert set(kinds.values()) == {"view"} and len(kinds) == 4
    assert [d.table for d in compare(v7, migrated)] == ["type_days", "type_hours", "type_windows"]  # built by later steps
    assert table(migrated, "SELECT COUNT(*) FROM series") == table(v7, "SELECT COUNT(DISTINCT series) FROM metric_rollups")
    assert table(migrated, "SELECT DISTINCT typeof(id) FROM samples") == [("text",)]  # the fixture's ids are no UUIDs
    counts_are_the_rows(migrated)
    assert daily_rows(migrated) == recomputed_daily(migrated)
    same_answers(answers(migrated), before)


def test_the_migrated_layout_is_what_the_new_sink_writes_from_the_same_rows(v7: Path, tmp_path: Path) -> None:
    migrated = tmp_path / "migrated.db"
    shutil.copy(v7, migrated)
    open_for_writing(migrated).close()
    fresh = tmp_path / "fresh.db"
    conn = open_for_writing(fresh)
    samples = [MetricRecorded(event_id=s.id, occurred_at=s.timestamp, tenant_id=s.tenant_id, metric_type=s.metric_type,
                              value=s.value, unit="ms", labels=dict(s.labels)) for s in stored_samples(v7)]
    rollups = [
        {"series": r[0], "window_start": r[1], "window_end": r[2], "tenant_id": r[3], "metric_type": r[4],
         "labels": orjson.loads(r[5]), "unit": r[6], "count": r[7], "sum": r[8], "min": r[9], "max": r[10],
         "sketch": decode(r[11]).to_json(), "final": bool(r[12])}
        for r in table(v7, "SELECT series, window_start, window_end, tenant_id, metric_type, labels, unit, count, sum, "
                           "min, max, sketch, final FROM metric_rollups ORDER BY window_start")
    ]
    for k in range(0, max(len(samples), len(rollups)), 250):
        batch = SinkBatch()
        for s in samples[k:k + 250]:
            batch.add_sample(s)
        for r in rollups[k:k + 250]:
            batch.add_rollup(r)
        write_batch(conn, batch, written_at_ms=0)
    conn.close()
    metric_tables = {"performance_metrics", "metric_rollups", "metric_rollups_hourly", "metric_rollups_daily",
                     "metric_rollup_day_counts", "metric_counts", "type_hours", "type_days", "type_windows"}
    assert [d.table for d in compare(migrated, fresh) if d.table in metric_tables] == []
