"""A fixed hostile input set through the real worker and sink on the real broker, among good
events: the worker never restarts, the good events end in SQLite, the hostile ones are in the
dead-letter topic with their reasons, and no SQLite row holds a NULL or infinite number."""

from __future__ import annotations

import asyncio
import base64
import math
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from processor.folds.sketch_codec import decode
from processor.runtime.admin import read_topic
from processor.runtime.replay import ReplayPlan, replay
from processor.settings import Settings
from processor.store.dbdiff import compare
from processor.store.queries import Monitor
from producers import AxmonProducer, ProducerConfig
from producers.simulator import ScenarioConfig, generate_scenario
from schemas import Event, LifecycleEvent, MetricRecorded, Topics, series_key
from tests.integration.conftest import TEST_PARTITIONS
from tests.integration.processes import AxmonProcess, wait_until

WINDOW_MS = 60_000
GRACE_MS = 3_600_000
HOUR = 3_600_000
MAX_FLOAT = 1.7976931348623157e308
HOSTILE_SERIES = "tenant_id = 'hostile' AND metric_type = 'api.request.duration'"


def _sample(event_id: str, at: int, value: Any, metric_type: str = "api.request.duration", **extra: Any) -> bytes:
    return orjson.dumps({"type": "metric.recorded", "version": 1, "event_id": event_id, "occurred_at": at,
                         "tenant_id": "hostile", "metric_type": metric_type, "value": value, **extra})


def _lifecycle(type_: str, event_id: str, execution_id: str, at: int, **fields: Any) -> bytes:
    return orjson.dumps({"type": type_, "version": 1, "event_id": event_id, "occurred_at": at,
                         "tenant_id": "hostile", "execution_id": execution_id, **fields})


def _started(event_id: str, execution_id: str, at: int, **fields: Any) -> bytes:
    return _lifecycle("execution.started", event_id, execution_id, at,
                      **{"workflow_id": "wf", "workflow_name": "W", "user_id": "u", "steps_total": 3, **fields})


def hostile_records(topics: Topics, at: int) -> tuple[list[tuple[str, bytes, bytes]], Counter[str], dict[str, float]]:
    """(topic, key, value) records, the dead-letter reasons they must give, and the values
    that must be counted in the series ``api.request.duration`` of tenant ``hostile``."""
    w, m = topics.workflow_events, topics.metrics
    key = series_key("hostile", "api.request.duration", {})
    deep = b'{"type":"execution.started","version":1,"event_id":"deep","occurred_at":%d,"tenant_id":"hostile",' \
           b'"execution_id":"deep","workflow_id":"wf","workflow_name":"W","user_id":"u","steps_total":1,"metadata":' % at
    deep += b'{"a":' * 300 + b"1" + b"}" * 300 + b"}"
    big_error = "E" * 400_000
    records = [
        # two samples of 1e308 in one window: today their sum overflows to inf
        (m, key, _sample("huge-1", at, 1e308)),
        (m, key, _sample("huge-2", at + 1, 1e308)),
        (m, key, _sample("max", at + 2, MAX_FLOAT)),
        (m, key, _sample("min", at + 3, -MAX_FLOAT)),
        # the extremes the contract accepts, counted
        (m, key, _sample("denormal", at + 4, 5e-324)),
        (m, key, _sample("negative-zero", at + 5, -0.0)),
        (m, key, _sample("top-1", at + 6, 1e15)),
        (m, key, _sample("top-2", at + 7, 1e15)),
        (m, key, _sample("bottom", at + 8, -1e15)),
        (m, key, _sample("labels", at + 9, 1, labels={f"l{i}": "v" for i in range(500)})),
        (m, key, _sample("x" * 5000, at + 10, 1)),
        (m, key, _sample("too-large", at + 11, 1, padding="p" * 600_000)),
        # lifecycle
        (w, b"deep", deep),
        (w, b"long", _started("y" * 5000, "long", at)),
        (w, b"nul", _started("nul-id", "exec\x00nul", at)),
        (w, "unicode-✓".encode(), _started("unicode", "unicode-✓", at, workflow_name="Synthèse \x00 🚀 — ☃",
                                            metadata={"ключ": "値\x00", "nested": {"a": [1, {"b": None}]}})),
        (w, "unicode-✓".encode(), _lifecycle("execution.failed", "unicode-failed", "unicode-✓", at + 5,
                                              error_message="nul \x00 and emoji 🚀")),
        # a record that passes decoding but whose fold cannot be published: the third failed
        # step makes the execution's state larger than a Kafka record
        (w, b"bloated", _started("bloated-start", "bloated", at)),
        *[(w, b"bloated", _lifecycle("step.failed", f"bloated-fail-{n}", "bloated", at + n + 1, step_id=f"s{n}",
                                      error_message=big_error)) for n in range(3)],
        (w, b"bloated", _lifecycle("execution.completed", "bloated-done", "bloated", at + 10)),
        # a derived record no worker wrote: the exact rollup the old arithmetic produced
        (topics.metric_rollups, b"poison@0", orjson.dumps({
            "series": "poison", "tenant_id": None, "metric_type": "api.request.duration", "labels": {}, "unit": "",
            "window_start": 0, "window_end": 60_000, "count": 2, "sum": None, "avg": None, "min": 1e308,
            "max": 1e308, "p50": 1e308, "p95": 1e308, "p99": 1e308, "sketch": {"a": 0.01, "z": 0, "p": [], "n": []},
            "final": True})),
    ]
    reasons = Counter({"out_of_range": 4, "invalid_field": 4, "too_large": 1, "too_deep": 1, "processing_error": 1})
    counted = {"denormal": 5e-324, "negative-zero": -0.0, "top-1": 1e15, "top-2": 1e15, "bottom": -1e15}
    return records, reasons, counted


def latest(bootstrap: str, topic: str) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async for record in read_topic(bootstrap, topic, idle_timeout=1.0):
            out[(record.key or b"").decode()] = None if record.value is None else orjson.loads(record.value)
        return out

    return asyncio.run(read())


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def test_hostile_input_neither_stops_nor_poisons_the_worker_and_the_sink(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    at = (int(time.time() * 1000) - 2 * HOUR) // WINDOW_MS * WINDOW_MS + 1_000  # idle: every window closes
    good: list[Event] = generate_scenario(ScenarioConfig(seed=11, tenants=2, executions=20, start_ms=at, span_ms=20_000))
    records, reasons, counted = hostile_records(topics, at)
    db = tmp_path / "axmon.db"
    common = ["--bootstrap", kafka_bootstrap, "--topic-prefix", topics.prefix, "--partitions", str(TEST_PARTITIONS)]
    fold = ["--window-ms", str(WINDOW_MS), "--grace-ms", str(GRACE_MS)]
    worker = AxmonProcess("worker", ["worker", *common, *fold], tmp_path).start()
    sink = AxmonProcess("sink", ["sink", *common, *fold, "--db", str(db), "--batch-ms", "200"], tmp_path).start()

    async def send() -> None:
        async with AxmonProducer(config=ProducerConfig(bootstrap=kafka_bootstrap, topics=topics)) as producer:
            half = len(good) // 2
            for event in good[:half]:
                await producer.publish(event)
            for topic, key, value in records:
                await producer.send_raw(topic, key, value)
            for event in good[half:]:
                await producer.publish(event)

    try:
        asyncio.run(send())
        good_executions = {e.execution_id for e in good if isinstance(e, LifecycleEvent)}
        good_samples = {e.event_id for e in good if isinstance(e, MetricRecorded)}
        dead: dict[str, Any] = {}

        def done() -> bool:
            nonlocal dead
            worker.check()
            sink.check()
            dead = latest(kafka_bootstrap, topics.dead_letter)
            executions = {r[0] for r in rows(db, "SELECT id FROM workflow_executions_monitor")}
            samples = {r[0] for r in rows(db, "SELECT id FROM performance_metrics")}
            hostile = rows(db, f"SELECT final FROM metric_rollups WHERE {HOSTILE_SERIES}")
            dead_rows = rows(db, "SELECT count(*) FROM dead_letters")
            return (sum(reasons.values()) <= len(dead) and good_executions | {"unicode-✓", "bloated"} <= executions
                    and good_samples <= samples and hostile == [(1,)] and dead_rows == [(len(dead),)])

        wait_until(done, 180, interval=2.0, what=f"the pipeline to settle (worker log:\n{worker.tail()})")

        # the hostile records are dead letters with their reasons and origins
        assert Counter(d["reason"] for d in dead.values()) == reasons
        error = next(d for d in dead.values() if d["reason"] == "processing_error")
        assert error["detail"].startswith("RecordTooLarge: ")
        assert orjson.loads(base64.b64decode(error["value"]))["event_id"] == "bloated-fail-2"
        assert error["topic"] == topics.workflow_events and isinstance(error["offset"], int)
        assert next(d for d in dead.values() if d["reason"] == "too_large")["detail"].startswith("an event is at most")

        # the accepted extremes are counted exactly, and finite everywhere
        [(count, total, low, high, sketch)] = rows(
            db, f"SELECT count, sum, min, max, sketch FROM metric_rollups WHERE {HOSTILE_SERIES}")
        assert (count, low, high) == (len(counted), -1e15, 1e15)
        assert math.isfinite(total) and total == 1e15  # the 5e-324 vanishes in 1e15, as in any double sum
        assert decode(sketch).zero == 2  # 5e-324 and -0.0 count as zero
        stored = dict(rows(db, f"SELECT id, value FROM performance_metrics WHERE {HOSTILE_SERIES}"))
        assert stored == counted
        for table, columns in (("metric_rollups", "count, sum, min, max"), ("metric_rollups_hourly", "count, sum, min, max"),
                               ("performance_metrics", "value"), ("workflow_stats", "total, duration_sum"),
                               ("workflow_executions_monitor", "duration, cost, tokens_used")):
            for row in rows(db, f"SELECT {columns} FROM {table}"):
                assert all(v is None or math.isfinite(v) for v in row), (table, row)
        assert rows(db, "SELECT count(*) FROM metric_rollups WHERE sum IS NULL OR series = 'poison'") == [(0,)]
        with Monitor(db) as monitor:  # raw samples at the edges, the final window inside: the same answer
            for start, end in ((at - WINDOW_MS, at + HOUR), (at, at + 9)):
                summary = monitor.get_aggregation("api.request.duration", start, end, tenant_id="hostile")
                assert (summary["count"], summary["sum"], summary["min"], summary["max"]) == (5, 1e15, -1e15, 1e15)
                assert all(math.isfinite(summary[k]) for k in ("avg", "p50", "p95", "p99"))

        # unicode and NUL survive in text; the bloated execution stops before its third failure
        [(name, status, error_message, metadata)] = rows(
            db, "SELECT workflow_name, status, error_message, metadata FROM workflow_executions_monitor WHERE id = 'unicode-✓'")
        assert (name, status, error_message) == ("Synthèse \x00 🚀 — ☃", "failed", "nul \x00 and emoji 🚀")
        assert orjson.loads(metadata) == {"ключ": "値\x00", "nested": {"a": [1, {"b": None}]}}
        assert rows(db, "SELECT status, steps_failed FROM workflow_executions_monitor WHERE id = 'bloated'") == [("completed", 2)]

        # a replay of the topics decides the same (the same dead letters and rows, table by table)
        settings = Settings(topic_prefix=topics.prefix, partitions=TEST_PARTITIONS, window_ms=WINDOW_MS, grace_ms=GRACE_MS)
        asyncio.run(replay(settings, kafka_bootstrap, ReplayPlan(tmp_path / "replayed.db")))
        diffs = compare(db, tmp_path / "replayed.db")
        assert not diffs, "\n".join(d.describe() for d in diffs)

        # the good events all arrived, and nobody restarted
        assert rows(db, "SELECT count(*) FROM workflow_executions_monitor") == [(len(good_executions) + 2,)]
        assert worker.alive() and worker.starts == 1 and "starting again" not in worker.log.read_text()
        assert sink.alive() and "left out a record that cannot be stored" in sink.log.read_text()
    finally:
        assert worker.stop() == 0, worker.tail()
        assert sink.stop() == 0, sink.tail()
