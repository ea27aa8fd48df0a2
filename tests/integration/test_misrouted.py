"""Executions and series whose records arrive on two partitions (a producer with another
partitioner than Kafka's murmur2, e.g. librdkafka's CRC32 default): the real worker and sink end
as if one murmur2 producer had sent everything, and a replay builds the same database."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from processor.folds.records import FORWARDED_FROM
from processor.folds.routing import contract_key, home_of
from processor.runtime.replay import ReplayPlan, replay
from processor.settings import Settings
from processor.store.dbdiff import compare
from producers import EventFactory
from schemas import Event, LifecycleEvent, Topics
from schemas.codec import decode_event, encode_event
from tests.integration.conftest import TEST_PARTITIONS
from tests.integration.processes import wait_until
from tests.integration.test_sink import settle, sink
from tests.integration.test_worker import (
    GRACE_MS,
    WINDOW_MS,
    latest,
    rollup_mismatches,
    worker,
)
from tests.oracle import differences, expected_executions, expected_rollups

HOUR = 3_600_000
SOURCE = "crc32-engine"
EXECUTIONS = 20


def split_scenario() -> list[tuple[Event, int]]:
    """(event, partition): 20 executions of 8 events each, alternately on partitions 0 and 1; a
    raw series split the same way; and raw samples of a series the worker also derives
    (workflow.execution.count of workflow W), all off their home."""
    f = EventFactory(source=SOURCE)
    start = int(time.time() * 1000) - 2 * HOUR  # idle by the wall clock: every window closes
    placed: list[tuple[Event, int]] = []

    def place(events: list[Any], alternate: bool) -> None:
        """On partitions 0 and 1 in turn (as the issue's engines did), or all off their home."""
        for n, event in enumerate(events):
            placed.append((event, n % 2 if alternate else (home_of(event, TEST_PARTITIONS) + 1) % TEST_PARTITIONS))

    for x in range(EXECUTIONS):
        at = start + x * 2_000
        started = f.start_execution("wf", "W", f"tenant-{x % 2}", "u", 3, occurred_at=at)
        events: list[Any] = [started]
        for s in range(3):
            step = f.start_step(started.execution_id, f"s{s}", f"step {s}", occurred_at=at + 100 * s + 10)
            events += [step, f.step_event("step.completed", step.step_id, occurred_at=at + 100 * s + 60)]
        events.append(f.end_execution("execution.completed", started.execution_id, occurred_at=at + 500))
        place(events, alternate=True)
    split = [f.record("api.request.duration", float(n), unit="ms", labels={"endpoint": "/split"}, tenant_id="tenant-0",
                      occurred_at=start + n * 1_500) for n in range(24)]
    place(split, alternate=True)
    beside_derived = [f.record("workflow.execution.count", 1.0, unit="count", labels={"workflow": "W", "status": "completed"},
                               tenant_id="tenant-0", occurred_at=start + 20_000 + n * 3_000) for n in range(6)]
    place(beside_derived, alternate=False)
    return placed


async def produce_on(bootstrap: str, topics: Topics, placed: list[tuple[Event, int]]) -> None:
    """Each record on the partition given, as a producer with its own partitioner would."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for event, partition in placed:
            topic = topics.workflow_events if isinstance(event, LifecycleEvent) else topics.metrics
            await producer.send(topic, encode_event(event), key=contract_key(event), partition=partition)
        await producer.flush()
    finally:
        await producer.stop()


def forwarded(bootstrap: str, topic: str) -> list[tuple[int, dict[str, Any], Event]]:
    """(partition, original, event) of every forwarded copy on ``topic``."""

    async def read() -> list[tuple[int, dict[str, Any], Event]]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(TEST_PARTITIONS)]
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            out: list[tuple[int, dict[str, Any], Event]] = []
            remaining = {tp for tp in tps if ends[tp] > 0}
            while remaining:
                batch = await consumer.getmany(*remaining, timeout_ms=1000)
                for tp, messages in batch.items():
                    for m in messages:
                        out += [(tp.partition, orjson.loads(v), decode_event(m.value)) for k, v in (m.headers or ()) if k == FORWARDED_FROM]
                for tp in list(remaining):
                    if await consumer.position(tp) >= ends[tp]:
                        remaining.discard(tp)
            return out
        finally:
            await consumer.stop()

    return asyncio.run(read())


def test_records_off_their_home_partition_end_as_if_one_murmur2_producer_sent_everything(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    placed = split_scenario()
    events = [e for e, _ in placed]
    misrouted = [(e, p) for e, p in placed if home_of(e, TEST_PARTITIONS) != p]
    assert len({e.execution_id for e, _ in misrouted if isinstance(e, LifecycleEvent)}) == EXECUTIONS
    live_db = tmp_path / "live.db"
    work = worker(kafka_bootstrap, topics, tmp_path).start()
    writer = sink(kafka_bootstrap, topics, tmp_path, live_db).start()
    try:
        asyncio.run(produce_on(kafka_bootstrap, topics, placed))
        wait_until(lambda: latest(kafka_bootstrap, topics.execution_state), 180, what="the worker's first output")
        settle(kafka_bootstrap, topics, [live_db], [work, writer], timeout=240)
    finally:
        writer.stop()
        work.stop()

    # the derived topics: what the pure folds of all the events give, wherever they arrived
    state = latest(kafka_bootstrap, topics.execution_state)
    running = sorted(v["id"] for v in state.values() if v["status"] != "completed")
    assert not differences(state, expected_executions(events)), f"{len(running)} of {EXECUTIONS} not completed: {running[:3]}"
    assert rollup_mismatches(latest(kafka_bootstrap, topics.metric_rollups), expected_rollups(events, WINDOW_MS)) == []
    stats = latest(kafka_bootstrap, topics.workflow_stats)
    assert sum(v["completed"] for v in stats.values()) == EXECUTIONS and sum(v["running"] for v in stats.values()) == 0

    # the database
    conn = sqlite3.connect(live_db)
    try:
        rows = conn.execute("SELECT status, steps_completed, count(*) FROM workflow_executions_monitor GROUP BY 1, 2").fetchall()
        assert rows == [("completed", 3, EXECUTIONS)]
        assert conn.execute("SELECT sum(completed), sum(running) FROM workflow_stats").fetchone() == (EXECUTIONS, 0)
        raw = conn.execute(f"SELECT count(*) FROM performance_metrics WHERE id IN ({','.join('?' * len(events))})",
                           [e.event_id for e in events]).fetchone()[0]
        assert raw == 30  # every raw sample once, the split ones and those beside derived ones
        assert conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 0
    finally:
        conn.close()

    # every misrouted original was forwarded home (at least once), and the worker said so once
    copies = forwarded(kafka_bootstrap, topics.workflow_events) + forwarded(kafka_bootstrap, topics.metrics)
    assert {(o["topic"], o["partition"], e.event_id) for _, o, e in copies} == {
        (topics.workflow_events if isinstance(e, LifecycleEvent) else topics.metrics, p, e.event_id) for e, p in misrouted
    }
    assert all(p == home_of(e, TEST_PARTITIONS) for p, _, e in copies)
    log = (tmp_path / "worker.log").read_text()
    assert log.count(f"source '{SOURCE}' produces records on partitions") == 1, log[-3000:]

    # replay into a new database: the same rows
    settings = Settings.load({"topic_prefix": topics.prefix, "partitions": TEST_PARTITIONS, "window_ms": WINDOW_MS,
                              "grace_ms": GRACE_MS}, environ={})
    replayed = tmp_path / "replay.db"
    asyncio.run(replay(settings, kafka_bootstrap, ReplayPlan(replayed)))
    diffs = compare(live_db, replayed)
    assert not diffs, "\n".join(d.describe() for d in diffs)
