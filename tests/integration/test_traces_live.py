"""``axmon traces`` on the real broker: SDK events -> worker -> axmon.execution-state -> the
continuous exporter -> a real local OTLP/HTTP receiver, beside the sink writing SQLite. The
received span trees equal the database's finished executions and steps, engine trace contexts
included; a stopped exporter resumes from its committed offsets and a busy receiver is retried."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import sqlite3
import uuid
from pathlib import Path

import pytest

from processor.folds.spans import execution_span_id, step_span_id
from processor.runtime.admin import contract_topics, ensure_topics
from schemas import Event, Topics
from schemas.events import LifecycleEvent
from tests.integration.conftest import TEST_PARTITIONS
from tests.integration.processes import AxmonProcess, wait_until
from tests.integration.test_sink import settle, sink
from tests.integration.test_worker import publish, scenario, worker
from tests.otlp_receiver import Received, otlp_receiver
from tests.unit.test_traces import assert_trees_equal_database

pytestmark = pytest.mark.integration


def with_engine_context(events: list[Event]) -> list[Event]:
    """Every third execution's events carry an engine trace context (one trace per execution)."""
    out: list[Event] = []
    for e in events:
        if isinstance(e, LifecycleEvent):
            digest = hashlib.sha256(e.execution_id.encode()).hexdigest()
            if int(digest[:2], 16) % 3 == 0:
                e = dataclasses.replace(e, trace_id=digest[:32], span_id=digest[32:48])
        out.append(e)
    return out


def exporter(bootstrap: str, topics: Topics, workdir: Path, url: str, group: str) -> AxmonProcess:
    return AxmonProcess(
        "traces",
        ["traces", "--otlp", url, "--bootstrap", bootstrap, "--topic-prefix", topics.prefix,
         "--group", group, "--from-beginning"],
        workdir,
    )


def expected_span_ids(db: Path) -> set[bytes]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        ids = {execution_span_id(r[0]) for r in conn.execute(
            "SELECT id FROM workflow_executions_monitor WHERE status IN ('completed', 'failed', 'cancelled')")}
        ids |= {step_span_id(r[0], r[1]) for r in conn.execute(
            "SELECT e.id, s.id FROM workflow_step_executions s JOIN workflow_executions_monitor e ON e.id = s.execution_id "
            "WHERE e.status IN ('completed', 'failed', 'cancelled')")}
    return ids


def wait_exported(received: Received, db: Path, traces: AxmonProcess, timeout: float) -> None:
    def done() -> bool:
        traces.check()
        return expected_span_ids(db) <= set(received.by_id())

    wait_until(done, timeout, 0.5, "the exporter to send every finished execution")


def test_the_exporter_sends_finished_executions_as_the_database_holds_them(kafka_bootstrap: str, tmp_path: Path) -> None:
    topics = Topics(f"test-{uuid.uuid4().hex[:10]}.")
    asyncio.run(ensure_topics(kafka_bootstrap, contract_topics(topics, TEST_PARTITIONS)))
    db = tmp_path / "axmon.db"
    events = with_engine_context(scenario(seed=23, executions=60))
    half = len(events) // 2
    group = f"traces-{uuid.uuid4().hex[:8]}"
    with otlp_receiver() as (url, received):
        work = worker(kafka_bootstrap, topics, tmp_path).start()
        writer = sink(kafka_bootstrap, topics, tmp_path, db).start()
        traces = exporter(kafka_bootstrap, topics, tmp_path, url, group).start()
        try:
            asyncio.run(publish(kafka_bootstrap, topics, events[:half]))
            settle(kafka_bootstrap, topics, [db], [work, writer], 240)
            wait_exported(received, db, traces, 120)
            assert traces.stop() == 0, traces.tail()

            received.fail_next = 2  # the receiver is busy when the exporter comes back
            asyncio.run(publish(kafka_bootstrap, topics, events[half:]))
            settle(kafka_bootstrap, topics, [db], [work, writer], 240)
            traces.start()
            wait_exported(received, db, traces, 120)
        finally:
            traces.stop()
            writer.stop()
            work.stop()
        spans = received.by_id()
        assert received.refused == 2
        assert set(spans) == expected_span_ids(db)
        assert_trees_equal_database(spans, db)
        under_engine = [s for s in spans.values() if s.parent_span_id and s.parent_span_id not in spans]
        assert under_engine, "the executions with an engine trace context hang under the engine's span"
