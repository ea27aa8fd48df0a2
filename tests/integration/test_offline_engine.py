"""An engine that was offline on the real broker: it flushes its buffer (three complete
executions, 18 events) with event times two hours behind the stream, and the late steps of
executions whose early part arrived in time and was evicted since. Every execution ends complete
and correct in the derived topics, the database, ``axmon workflows`` and ``axmon stats``; the
derived counts and the per-tenant stats count each once; nothing is dead-lettered; a replay
builds the same database."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from processor.folds.routing import home_of
from processor.runtime.replay import ReplayPlan, replay
from processor.settings import Settings
from processor.store.dbdiff import compare
from producers import AxmonProducer, EventFactory, ProducerConfig
from schemas import Event, LifecycleEvent, Topics
from tests.integration.conftest import TEST_PARTITIONS
from tests.integration.processes import wait_until
from tests.integration.test_sink import settle, sink
from tests.integration.test_worker import (
    GRACE_MS,
    HOUR,
    WINDOW_MS,
    latest,
    rollup_mismatches,
    worker,
)
from tests.oracle import expected_executions, expected_rollups, same


def execution(f: EventFactory, tenant: str, at: int) -> list[LifecycleEvent]:
    """Six events: start, two steps (start, completed), completed."""
    started = f.start_execution("wf_sync", "Sync", tenant, "u", 2, occurred_at=at)
    events: list[Any] = [started]
    for s in range(2):
        step = f.start_step(started.execution_id, f"s{s}", f"Step {s}", occurred_at=at + 1_000 + 2_000 * s)
        events += [step, f.step_event("step.completed", step.step_id, occurred_at=at + 2_000 + 2_000 * s, tokens_used=10, cost=0.5)]
    events.append(f.end_execution("execution.completed", started.execution_id, occurred_at=at + 6_000))
    return events


def scenario(t0: int) -> tuple[list[Event], list[Event], list[Event], set[str]]:
    """(in time: early parts and then live executions two hours on that cover every partition;
    the offline buffer, two hours behind; the late parts of the early executions; the ids of the
    early executions)."""
    f = EventFactory(source="offline-test")
    early_parts: list[Event] = []
    late_parts: list[Event] = []
    early_ids: set[str] = set()
    for n in range(3):  # start, first step, completed in time; the second step comes late
        events = execution(f, "tenant_a", t0 + n * 10_000)
        early_parts += [events[0], events[1], events[2], events[5]]
        late_parts += [events[3], events[4]]
        early_ids.add(events[0].execution_id)
    live: list[Event] = []
    covered: set[int] = set()
    n = 0
    while len(covered) < TEST_PARTITIONS or n < 12:
        events = execution(f, ("tenant_a", "tenant_b")[n % 2], t0 + 2 * HOUR + n * 5_000)
        live += events
        covered.add(home_of(events[0], TEST_PARTITIONS))
        n += 1
    offline = [e for n in range(3) for e in execution(f, "tenant_b", t0 + 20_000 + n * 10_000)]
    return early_parts + live, offline, late_parts, early_ids


async def publish(bootstrap: str, topics: Topics, events: list[Event]) -> None:
    async with AxmonProducer(config=ProducerConfig(bootstrap=bootstrap, topics=topics)) as producer:
        for event in events:
            await producer.publish(event)
        await producer.flush()


def axmon_json(*args: str) -> Any:
    out = subprocess.run([str(Path(sys.executable).parent / "axmon"), *args, "--json"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_an_engine_offline_for_two_hours_loses_nothing(kafka_bootstrap: str, topics: Topics, tmp_path: Path) -> None:
    t0 = int(time.time() * 1000) - 5 * HOUR  # idle by the wall clock: every window closes
    in_time, offline, late_parts, early_ids = scenario(t0)
    assert len(offline) == 18
    events = in_time + offline + late_parts
    live_db = tmp_path / "live.db"
    work = worker(kafka_bootstrap, topics, tmp_path).start()
    writer = sink(kafka_bootstrap, topics, tmp_path, live_db).start()
    try:
        asyncio.run(publish(kafka_bootstrap, topics, in_time))

        def early_evicted() -> bool:
            assert work.alive(), work.tail()
            state = latest(kafka_bootstrap, topics.execution_state)
            return not early_ids & state.keys() and len(state) == len(expected_executions(in_time)) - len(early_ids)

        # the early parts left the worker (tombstones): their late steps find only the markers
        wait_until(early_evicted, 180, what="the early executions' eviction")
        asyncio.run(publish(kafka_bootstrap, topics, offline + late_parts))
        settle(kafka_bootstrap, topics, [live_db], [work, writer], timeout=240)
    finally:
        writer.stop()
        work.stop()

    expected = expected_executions(events)
    assert all(v["status"] == "completed" and v["steps_completed"] == 2 for v in expected.values())
    late_ids = early_ids | {e.execution_id for e in offline}
    state = latest(kafka_bootstrap, topics.execution_state)
    for eid in late_ids:  # published again after their late events (the others were evicted)
        assert same(state[eid], expected[eid]), eid
    assert latest(kafka_bootstrap, topics.dead_letter) == {}
    assert rollup_mismatches(latest(kafka_bootstrap, topics.metric_rollups), expected_rollups(events, WINDOW_MS)) == []
    by_tenant = Counter(v["tenant_id"] for v in expected.values())
    stats = latest(kafka_bootstrap, topics.workflow_stats)
    assert {t: (v["total"], v["completed"], v["running"]) for t, v in stats.items()} == {
        t: (n, n, 0) for t, n in by_tenant.items()
    }

    # the database, as `axmon workflows` and `axmon stats` show it
    conn = sqlite3.connect(live_db)
    try:
        rows = dict(conn.execute("SELECT id, steps_completed FROM workflow_executions_monitor WHERE status = 'completed'").fetchall())
        assert rows == {eid: 2 for eid in expected}
        counted = conn.execute(
            "SELECT sum(count) FROM metric_rollups WHERE metric_type = 'workflow.execution.count'").fetchone()[0]
        assert counted == len(expected)
        assert conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 0
    finally:
        conn.close()
    listed = axmon_json("workflows", "--db", str(live_db), "--limit", "1000")
    assert late_ids <= {e["id"] for e in listed["executions"] if e["status"] == "completed" and e["steps_completed"] == 2}
    overall = axmon_json("stats", "--db", str(live_db))["stats"]
    assert (overall["total"], overall["completed"], overall["running"]) == (len(expected), len(expected), 0)

    # replay into a new database: the same rows
    settings = Settings.load({"topic_prefix": topics.prefix, "partitions": TEST_PARTITIONS, "window_ms": WINDOW_MS,
                              "grace_ms": GRACE_MS}, environ={})
    replayed = tmp_path / "replay.db"
    asyncio.run(replay(settings, kafka_bootstrap, ReplayPlan(replayed)))
    diffs = compare(live_db, replayed)
    assert not diffs, "\n".join(d.describe() for d in diffs)
