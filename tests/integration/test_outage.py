"""An outage on the real broker: the worker is stopped for far longer than the grace (in event
time) while engines go on publishing lifecycle events and raw samples, then started again. The
derived samples of the outage are written to the metrics topic after the raw backlog; every
finished execution must still count exactly once in ``workflow.execution.count`` (rollups, raw
rows, queries), agree with the stats, and a replay must give the same database.

The expected figures come from the generated events with small code of the test's own."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from processor.errors import BrokerError
from processor.ops.settle import backlog, settled
from processor.runtime.admin import contract_topics, ensure_topics
from processor.runtime.replay import ReplayPlan, replay
from processor.settings import Settings
from processor.store.dbdiff import compare
from processor.store.queries import Monitor
from producers import AxmonProducer, EventFactory, ProducerConfig
from schemas import Event, Topics
from tests.integration.conftest import TEST_PARTITIONS
from tests.integration.processes import AxmonProcess, wait_until

WINDOW_MS = 10_000
GRACE_MS = 20_000
MINUTE = 60_000
SPAN_MS = 25 * MINUTE
OUTAGE = (5 * MINUTE, 20 * MINUTE)
"""Event times (from the scenario's start) published while the worker is down: 15 minutes."""
ENDINGS = ("execution.completed", "execution.failed", "execution.cancelled")
STATUS = {"execution.completed": "completed", "execution.failed": "failed", "execution.cancelled": "cancelled"}


def scenario(t0: int, seed: int) -> list[Event]:
    """Executions starting every ~4 s of event time, each with 1-3 steps (completed or failed)
    and most with an ending, and raw samples of 12 series every 5 s, in event-time order."""
    rng = random.Random(seed)
    f = EventFactory(source="outage-test")
    events: list[Event] = []
    at = t0
    while at < t0 + SPAN_MS - 2 * MINUTE:
        tenant, workflow = rng.choice(("tenant_a", "tenant_b")), rng.choice(("wf_review", "wf_deploy"))
        steps = rng.randint(1, 3)
        started = f.start_execution(workflow, workflow.title(), tenant, "u", steps, occurred_at=at)
        events.append(started)
        t = at
        for k in range(steps):
            step = f.start_step(started.execution_id, f"s{k}", f"Step {k}", occurred_at=t + 1_000)
            t += rng.randint(2_000, 20_000)
            outcome = "step.completed" if rng.random() < 0.8 else "step.failed"
            failed = {"error_message": "boom"} if outcome == "step.failed" else {}
            events += [step, f.step_event(outcome, step.step_id, occurred_at=t, **failed)]
        if rng.random() < 0.9:
            ending = rng.choice(ENDINGS)
            failed = {"error_message": "boom"} if ending == "execution.failed" else {}
            events.append(f.end_execution(ending, started.execution_id, occurred_at=t + 500, **failed))
        at += rng.randint(2_000, 6_000)
    for n in range(SPAN_MS // 5_000):
        for s in range(12):
            events.append(f.record("api.request.duration", rng.uniform(10, 900), unit="ms", labels={"model": f"m{s}"},
                                   tenant_id="tenant_a", occurred_at=t0 + n * 5_000 + s))
    return sorted(events, key=lambda e: e.occurred_at)


def expected_endings(events: list[Event]) -> Counter[str]:
    """Finished executions by status: one ending each in this scenario."""
    return Counter(STATUS[e.TYPE] for e in events if e.TYPE in STATUS)


def expected_step_outcomes(events: list[Event]) -> int:
    return sum(e.TYPE in ("step.completed", "step.failed") for e in events)


async def publish(bootstrap: str, topics: Topics, events: list[Event]) -> None:
    async with AxmonProducer(config=ProducerConfig(bootstrap=bootstrap, topics=topics)) as producer:
        for event in events:
            await producer.publish(event)


def wait_settled(bootstrap: str, topics: Topics, db: Path, procs: list[AxmonProcess], timeout: float) -> None:
    previous = None

    def done() -> bool:
        nonlocal previous
        for proc in procs:
            assert proc.alive(), f"the {proc.name} died:\n{proc.tail()}"
        try:
            ok, previous = asyncio.run(settled(bootstrap, topics, db, previous))
        except BrokerError:  # a new group's coordinator is not known at once
            return False
        if not ok or not db.exists():
            return False
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return bool(conn.execute("SELECT count(*) FROM metric_rollups WHERE final = 0").fetchone()[0] == 0)
        finally:
            conn.close()

    wait_until(done, timeout, interval=2.0, what="the pipeline to settle")


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def test_an_outage_longer_than_the_grace_loses_no_derived_sample(kafka_bootstrap: str, tmp_path: Path) -> None:
    base = Settings.load({"partitions": TEST_PARTITIONS}, environ={})
    settings = replace(base, topic_prefix=f"outage-{uuid.uuid4().hex[:8]}.", window_ms=WINDOW_MS, grace_ms=GRACE_MS,
                       db_path=tmp_path / "live.db")
    topics = settings.topics
    asyncio.run(ensure_topics(kafka_bootstrap, contract_topics(topics, TEST_PARTITIONS)))
    t0 = int(time.time() * 1000) - 3 * 3_600_000
    t0 -= t0 % 3_600_000  # idle by the wall clock: every window is published final
    events = scenario(t0, seed=7)
    before = [e for e in events if e.occurred_at < t0 + OUTAGE[0]]
    during = [e for e in events if t0 + OUTAGE[0] <= e.occurred_at < t0 + OUTAGE[1]]
    after = [e for e in events if e.occurred_at >= t0 + OUTAGE[1]]
    common = ["--bootstrap", kafka_bootstrap, "--topic-prefix", topics.prefix, "--partitions", str(TEST_PARTITIONS),
              "--window-ms", str(WINDOW_MS), "--grace-ms", str(GRACE_MS)]
    worker = AxmonProcess("worker", ["worker", *common], tmp_path)
    sink = AxmonProcess("sink", ["sink", *common, "--db", str(settings.db_path)], tmp_path)
    worker.start()
    sink.start()
    try:
        asyncio.run(publish(kafka_bootstrap, topics, before))
        wait_settled(kafka_bootstrap, topics, settings.db_path, [worker, sink], timeout=240)
        assert worker.stop() == 0, worker.tail()  # the outage: engines go on for 15 minutes of event time
        asyncio.run(publish(kafka_bootstrap, topics, during))
        assert not worker.alive()
        waiting = asyncio.run(backlog(kafka_bootstrap, topics, settings.db_path)).worker
        assert waiting >= len(during), "the outage left a backlog for the worker"
        worker.start()
        asyncio.run(publish(kafka_bootstrap, topics, after))
        wait_settled(kafka_bootstrap, topics, settings.db_path, [worker, sink], timeout=420)
    finally:
        sink.stop()
        worker.stop()

    endings = expected_endings(events)
    finished = sum(endings.values())
    assert finished > 250 and len(during) > len(before)
    with Monitor(settings.db_path) as m:
        count = m.get_aggregation("workflow.execution.count", t0, t0 + 2 * SPAN_MS)
        assert count["count"] == count["sum"] == finished, count
        for status, n in endings.items():
            assert m.get_aggregation("workflow.execution.count", t0, t0 + 2 * SPAN_MS, labels={"status": status})["count"] == n
        assert m.get_aggregation("workflow.step.count", t0, t0 + 2 * SPAN_MS)["count"] == expected_step_outcomes(events)
        stats = m.get_workflow_stats()
        assert (stats["completed"], stats["failed"], stats["cancelled"]) == (
            endings["completed"], endings["failed"], endings["cancelled"])
    conn = sqlite3.connect(settings.db_path)
    try:
        for metric in ("workflow.execution.count", "workflow.step.count", "workflow.execution.duration"):
            (raw_rows,) = conn.execute("SELECT count(*) FROM performance_metrics WHERE metric_type = ?", (metric,)).fetchone()
            (rolled,) = conn.execute("SELECT sum(count) FROM metric_rollups WHERE metric_type = ?", (metric,)).fetchone()
            assert raw_rows == rolled, (metric, raw_rows, rolled)
        assert conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 0
    finally:
        conn.close()
    cli = subprocess.run([sys.executable, "-m", "processor.cli", "stats", "--db", str(settings.db_path), "--json"],
                         capture_output=True, check=True, cwd=tmp_path)
    shown = json.loads(cli.stdout)["stats"]
    assert shown["completed"] + shown["failed"] + shown["cancelled"] == finished, shown

    replayed = tmp_path / "replay.db"
    asyncio.run(replay(settings, kafka_bootstrap, ReplayPlan(replayed)))
    diffs = compare(settings.db_path, replayed)
    assert not diffs, "\n".join(d.describe() for d in diffs)
