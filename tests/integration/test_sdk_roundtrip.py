"""Every event type through the real broker: async SDK, sync facade and ``axmon produce``."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections import defaultdict

import orjson

from processor.runtime.admin import Record, read_topic
from producers import AxmonProducer, ProducerConfig, SyncAxmonProducer
from producers.simulator import ScenarioConfig, generate_scenario
from schemas import (
    EVENT_CLASSES,
    Event,
    LifecycleEvent,
    LogRecorded,
    MetricRecorded,
    Topics,
    decode_event,
    series_key,
)

CLOCK_MS = 1_767_225_600_000


async def read_all(bootstrap: str, topics: Topics) -> list[Record]:
    records = []
    for topic in (*topics.sources, topics.logs):
        records += [r async for r in read_topic(bootstrap, topic)]
    return records


def decoded(records: list[Record]) -> list[Event]:
    return [decode_event(r.value or b"") for r in records]


def check_every_type(records: list[Record], topics: Topics) -> dict[str, Event]:
    """Each of the ten types is there (once, but for the executions started to fail and be
    cancelled), on its topic, with the contract's key, and all
    events of one execution share a partition."""
    by_type: dict[str, Event] = {}
    partitions: defaultdict[str, set[int]] = defaultdict(set)
    for record in records:
        event = decode_event(record.value or b"")
        if event.TYPE == "execution.started" and event.workflow_id != "wf_code_review":  # type: ignore[attr-defined]
            pass  # the extra executions that fail and get cancelled
        else:
            assert event.TYPE not in by_type, f"{event.TYPE} arrived twice"
            by_type[event.TYPE] = event
        if isinstance(event, LifecycleEvent):
            assert record.topic == topics.workflow_events
            assert record.key == event.execution_id.encode()
            partitions[event.execution_id].add(record.partition)
        elif isinstance(event, LogRecorded):
            assert record.topic == topics.logs
            assert record.key == (event.execution_id or "").encode()
            partitions[event.execution_id or ""].add(record.partition)
        else:
            assert isinstance(event, MetricRecorded)
            assert record.topic == topics.metrics
            assert record.key == series_key(event.tenant_id, event.metric_type, event.labels)
    assert set(by_type) == set(EVENT_CLASSES)
    assert all(len(p) == 1 for p in partitions.values())
    return by_type


def check_values(by_type: dict[str, Event]) -> None:
    started = by_type["execution.started"]
    assert started.tenant_id == "tenant_acme"
    assert started.metadata == {"pr": "#123", "author": "bob"}  # type: ignore[attr-defined]
    completed = by_type["step.completed"]
    assert (completed.tokens_used, completed.cost, completed.input_size, completed.output_size) == (  # type: ignore[attr-defined]
        1500, 0.003, 5000, 1200,
    )
    assert by_type["step.failed"].error_message == "timeout"  # type: ignore[attr-defined]
    assert by_type["execution.failed"].error_message == "step failed"  # type: ignore[attr-defined]
    assert by_type["execution.cancelled"].reason == "user abort"  # type: ignore[attr-defined]
    metric = by_type["metric.recorded"]
    assert (metric.value, metric.unit, metric.labels) == (2500, "ms", {"workflowName": "code-review"})  # type: ignore[attr-defined]
    log = by_type["log.recorded"]
    assert (log.level, log.message, log.step_id, log.tenant_id, log.attributes) == (  # type: ignore[attr-defined]
        "warn", "retrying", by_type["step.started"].step_id, "tenant_acme", {"attempt": 2})  # type: ignore[attr-defined]
    assert all(e.occurred_at == CLOCK_MS and e.source == "test-sdk" for e in by_type.values())


def every_call(monitor: SyncAxmonProducer) -> None:
    """The original design's usage example, plus the calls it left out."""
    execution_id = monitor.start_execution(
        "wf_code_review", "Code Review Workflow", "tenant_acme", "user_alice", 5, {"pr": "#123", "author": "bob"}
    )
    step_id = monitor.start_step(execution_id, "security_audit", "Security Audit")
    monitor.fail_step(step_id, "timeout")
    monitor.retry_step(step_id)
    monitor.log("warn", "retrying", step_id=step_id, attributes={"attempt": 2})
    monitor.complete_step(step_id, tokens_used=1500, cost=0.003, input_size=5000, output_size=1200)
    monitor.update_execution(execution_id, current_step="quality_analysis")
    monitor.complete_execution(execution_id)
    failing = monitor.start_execution("wf", "W", "tenant_acme", "u", 1)
    monitor.fail_execution(failing, "step failed")
    cancelled = monitor.start_execution("wf", "W", "tenant_acme", "u", 1)
    monitor.cancel_execution(cancelled, "user abort")
    monitor.record("workflow.execution.duration", 2500, unit="ms",
                   labels={"workflowName": "code-review"}, tenant_id="tenant_acme")


async def test_async_sdk_round_trips_every_type(kafka_bootstrap: str, topics: Topics) -> None:
    config = ProducerConfig(bootstrap=kafka_bootstrap, topics=topics, source="test-sdk")
    async with AxmonProducer(config=config, clock=lambda: CLOCK_MS) as monitor:
        execution_id = await monitor.start_execution(
            "wf_code_review", "Code Review Workflow", "tenant_acme", "user_alice", 5,
            {"pr": "#123", "author": "bob"},
        )
        step_id = await monitor.start_step(execution_id, "security_audit", "Security Audit")
        await monitor.fail_step(step_id, "timeout")
        await monitor.retry_step(step_id)
        await monitor.log("warn", "retrying", step_id=step_id, attributes={"attempt": 2})
        await monitor.complete_step(step_id, tokens_used=1500, cost=0.003, input_size=5000, output_size=1200)
        await monitor.update_execution(execution_id, current_step="quality_analysis")
        await monitor.complete_execution(execution_id)
        failing = await monitor.start_execution("wf", "W", "tenant_acme", "u", 1)
        await monitor.fail_execution(failing, "step failed")
        cancelled = await monitor.start_execution("wf", "W", "tenant_acme", "u", 1)
        await monitor.cancel_execution(cancelled, "user abort")
        await monitor.record("workflow.execution.duration", 2500, unit="ms",
                             labels={"workflowName": "code-review"}, tenant_id="tenant_acme")
        await monitor.flush()
        assert monitor.delivered == 13
    records = await read_all(kafka_bootstrap, topics)
    assert len(records) == 13
    check_values(check_every_type(records, topics))


def test_sync_facade_round_trips_every_type(kafka_bootstrap: str, topics: Topics) -> None:
    config = ProducerConfig(bootstrap=kafka_bootstrap, topics=topics, source="test-sdk")
    with SyncAxmonProducer(config=config, clock=lambda: CLOCK_MS) as monitor:
        every_call(monitor)
        monitor.flush()
        assert monitor.delivered == 13
    records = asyncio.run(read_all(kafka_bootstrap, topics))
    assert len(records) == 13
    check_values(check_every_type(records, topics))


def test_sync_facade_is_thread_safe(kafka_bootstrap: str, topics: Topics) -> None:
    config = ProducerConfig(bootstrap=kafka_bootstrap, topics=topics)
    with SyncAxmonProducer(config=config, max_pending=50) as monitor:
        def work(n: int) -> None:
            for i in range(200):
                monitor.record("cpu.usage", i, labels={"thread": str(n)})
        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        monitor.flush()
    events = decoded(asyncio.run(read_all(kafka_bootstrap, topics)))
    assert len(events) == 800
    assert len({e.event_id for e in events}) == 800


async def test_simulated_scenario_arrives_whole(kafka_bootstrap: str, topics: Topics) -> None:
    scenario = generate_scenario(ScenarioConfig(seed=11, executions=80, tenants=4))
    async with AxmonProducer(config=ProducerConfig(bootstrap=kafka_bootstrap, topics=topics)) as producer:
        for event in scenario:
            await producer.publish(event)
    records = await read_all(kafka_bootstrap, topics)
    events = decoded(records)
    assert sorted(e.event_id for e in events) == sorted(e.event_id for e in scenario)
    partitions: defaultdict[str, set[int]] = defaultdict(set)
    for record, event in zip(records, events):
        if isinstance(event, LifecycleEvent):
            partitions[event.execution_id].add(record.partition)
    assert all(len(p) == 1 for p in partitions.values()), "an execution spans partitions"
    assert set().union(*partitions.values()) == {0, 1, 2}, "keys should spread over the 3 partitions"
    sent = {e.event_id: e for e in scenario}
    assert all(sent[e.event_id] == e for e in events)


def test_axmon_produce_cli(kafka_bootstrap: str, topics: Topics) -> None:
    lines = [
        orjson.dumps({"type": "metric.recorded", "metric_type": "cache.hit_rate", "value": 85.5,
                      "unit": "percent", "labels": {"cacheType": "workflow"}}),
        b"",
        b"{broken",
        orjson.dumps({"type": "execution.started", "tenant_id": "t", "execution_id": "e1",
                      "workflow_id": "w", "workflow_name": "W", "user_id": "u", "steps_total": -1}),
        orjson.dumps({"type": "execution.started", "version": 1, "event_id": "ev-1", "occurred_at": 5,
                      "tenant_id": "t", "execution_id": "e1", "workflow_id": "w", "workflow_name": "W",
                      "user_id": "u", "steps_total": 2, "engine": "custom-field"}),
        orjson.dumps({"type": "step.started", "version": 9, "event_id": "x", "occurred_at": 1}),
    ]
    done = subprocess.run(
        [sys.executable, "-m", "processor.cli", "produce", "-", "--bootstrap", kafka_bootstrap,
         "--topic-prefix", topics.prefix, "--partitions", "3"],
        input=b"\n".join(lines) + b"\n", capture_output=True, timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert "line 3: undecodable" in err
    assert "line 4: invalid_field" in err and "steps_total" in err
    assert "line 6: unknown_version" in err
    assert "published 2 event(s), 3 invalid line(s) skipped" in err
    assert "Traceback" not in err
    events = decoded(asyncio.run(read_all(kafka_bootstrap, topics)))
    assert sorted(e.TYPE for e in events) == ["execution.started", "metric.recorded"]
    started = next(e for e in events if e.TYPE == "execution.started")
    assert started.event_id == "ev-1" and started.extra == {"engine": "custom-field"}
