"""The end-to-end benchmark's pure parts: event timing, matching, percentiles."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from typing import cast

import pytest

from bench.e2e import DbWatcher, Latencies, StateTap, applied_at, observe, percentile, retimed, simulated
from processor.store.db import open_read_only
from processor.store.series import event_id
from schemas.events import LifecycleEvent, MetricRecorded


def test_simulated_mixes_lifecycle_events_and_samples() -> None:
    events = simulated(500, seed=3, tenants=2)
    assert len(events) == 500
    assert any(isinstance(e, LifecycleEvent) for e in events) and any(isinstance(e, MetricRecorded) for e in events)


def test_retimed_paces_event_time_and_keeps_each_execution_strictly_increasing() -> None:
    events = simulated(400, seed=5, tenants=3)
    paced = retimed(events, 1_000_000.0, 2_000.0)  # two events per millisecond: collisions happen
    assert [e.event_id for e in paced] == [e.event_id for e in events]
    assert all(abs(e.occurred_at - (1_000_000 + i // 2)) <= 30 for i, e in enumerate(paced))
    last: dict[str, int] = {}
    for e in paced:
        if isinstance(e, LifecycleEvent):
            assert e.occurred_at > last.get(e.execution_id, -1)
            last[e.execution_id] = e.occurred_at
    burst = retimed(events, 5_000.0, None)
    assert all(e.occurred_at >= 5_000 for e in burst)


def test_a_lifecycle_event_is_applied_when_its_execution_first_shows_its_time() -> None:
    seen: dict[str, list[tuple[int, float]]] = {}
    observe(seen, "x", 100, 1.0)
    observe(seen, "x", 100, 2.0)  # not new: ignored
    observe(seen, "x", 130, 3.0)
    events = [LifecycleEvent(event_id=f"e{t}", occurred_at=t, tenant_id="t", execution_id="x") for t in (90, 100, 120, 130, 140)]
    assert [applied_at(seen, e) for e in events] == [1.0, 1.0, 3.0, 3.0, None]
    assert applied_at(seen, LifecycleEvent(event_id="y", occurred_at=1, tenant_id="t", execution_id="y")) is None


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50 and percentile(values, 99) == 99 and percentile(values, 100) == 100
    assert percentile([], 50) == 0.0 and percentile([7.0], 99) == 7.0
    lat = Latencies.of(5, [0.003, 0.001, 0.002])
    assert lat.matched == 3 and lat.sent == 5 and lat.ms(50) == 2.0 and lat.max_ms == 3.0


def test_the_watcher_stamps_what_it_awaits_at_the_first_poll_that_shows_it(tmp_path: Path) -> None:
    db = tmp_path / "e2e.db"
    writer = sqlite3.connect(db)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA user_version = 11")
    writer.execute("CREATE TABLE samples (id BLOB PRIMARY KEY)")
    writer.execute("CREATE TABLE executions (seq INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE, last_event_at INTEGER)")
    writer.commit()
    watcher = DbWatcher(db, 0.025)
    reader = cast(sqlite3.Connection, open_read_only(db))  # a file
    x, y, other = (str(uuid.UUID(int=i)) for i in (1, 2, 3))
    sample = MetricRecorded(event_id=str(uuid.UUID(int=9)), occurred_at=5, tenant_id="t", metric_type="m", value=1.0)
    lifecycle = [LifecycleEvent(event_id=f"e{i}", occurred_at=t, tenant_id="t", execution_id=ex)
                 for i, (ex, t) in enumerate([(x, 100), (x, 120), (y, 50)])]
    for e in (sample, *lifecycle):
        watcher.expect(e)
    watcher.poll(reader, 1.0)  # nothing stored yet
    assert watcher.first_seen() is None
    writer.execute("INSERT INTO executions(id, last_event_at) VALUES (?, 1)", (event_id(other),))  # not awaited
    writer.commit()
    watcher.poll(reader, 2.0)
    assert watcher.first_seen() == 2.0  # the first execution row, whichever it is
    writer.execute("INSERT INTO executions(id, last_event_at) VALUES (?, 100)", (event_id(x),))
    writer.execute("INSERT INTO samples(id) VALUES (?)", (event_id(sample.event_id),))
    writer.commit()
    watcher.poll(reader, 3.0)
    watcher.poll(reader, 3.5)  # nothing committed since: not even probed
    writer.execute("UPDATE executions SET last_event_at = 130 WHERE id = ?", (event_id(x),))
    writer.execute("INSERT INTO executions(id, last_event_at) VALUES (?, 50)", (event_id(y),))
    writer.commit()
    watcher.poll(reader, 4.0)
    assert [watcher.visible_at(e) for e in (sample, *lifecycle)] == [3.0, 3.0, 4.0, 4.0]
    assert other not in watcher.executions  # never awaited: never read
    assert watcher.unseen([sample, *lifecycle]) == []
    writer.execute("UPDATE executions SET last_event_at = 200 WHERE id = ?", (event_id(x),))
    writer.commit()
    watcher.poll(reader, 5.0)  # x is caught up: no longer probed
    assert watcher.executions[x] == [(100, 3.0), (130, 4.0)]
    later = LifecycleEvent(event_id="e9", occurred_at=150, tenant_id="t", execution_id=x)
    watcher.expect(later)
    assert watcher.unseen([later]) == [later]
    writer.execute("UPDATE executions SET last_event_at = 210 WHERE id = ?", (event_id(x),))
    writer.commit()
    watcher.poll(reader, 6.0)
    assert watcher.visible_at(later) == 6.0
    reader.close()
    writer.close()


def test_the_worker_flags_and_the_timeline_file_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from bench.common import BenchContext
    from bench.e2e import TIMELINE_ENV, WORKER_ARGS_ENV, config_for

    monkeypatch.setenv(WORKER_ARGS_ENV, "--batch-ms 10  --batch-max 500")
    monkeypatch.setenv(TIMELINE_ENV, str(tmp_path / "t.json"))
    config = config_for(BenchContext("127.0.0.1:1", quick=True))
    assert config.worker_args == ("--batch-ms", "10", "--batch-max", "500")
    assert config.timeline == tmp_path / "t.json"
    monkeypatch.delenv(WORKER_ARGS_ENV)
    monkeypatch.delenv(TIMELINE_ENV)
    config = config_for(BenchContext("127.0.0.1:1", quick=True))
    assert config.worker_args == () and config.timeline is None


def test_the_timeline_has_one_row_per_event_with_its_latencies(tmp_path: Path) -> None:
    import orjson

    from bench.e2e import Sent, write_timeline

    events = simulated(40, seed=2, tenants=2)

    class Seen:
        def visible_at(self, event: object) -> float | None:
            return None if event is events[1] else 10.5

    class Tap:
        executions: dict[str, list[tuple[int, float]]] = {}

    sent = Sent(tuple(events), tuple(10.0 + i / 100 for i in range(len(events))))
    write_timeline(tmp_path / "t.json", sent, cast(DbWatcher, Seen()), cast(StateTap, Tap()))
    rows = orjson.loads((tmp_path / "t.json").read_bytes())
    assert len(rows) == len(events)
    assert rows[0][0] == 0.0 and rows[0][2] == 0.5 and rows[1][2] is None
    assert rows[3][0] == 0.03 and abs(rows[3][2] - 0.47) < 1e-6
    assert {r[1] for r in rows} <= {"lifecycle", "metric"} and all(r[3] is None for r in rows)
