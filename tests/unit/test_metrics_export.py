"""The Prometheus definitions and collectors, on fakes: names follow the conventions, each
exporter has a registry of its own, the collectors read the counters the processes keep, and
``/metrics`` of ``axmon serve`` is for admins only."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from processor.errors import ConfigError
from processor.runtime.metrics_collectors import NotifyCollector, SinkCollector, WorkerCollector, webhook_label
from processor.runtime.metrics_export import DEFINITIONS, Exporter, LagMonitor, LagSnapshot, MetricsAddress
from processor.runtime.notify import NotifyCounters
from processor.runtime.sink import SinkCounters
from processor.runtime.supervise import Restarts
from processor.runtime.worker_status import History, LastError, WorkerStatus
from processor.serve.app import ServeConfig, create_app
from processor.serve.auth import KeyRing
from schemas.topics import Topics
from tests.unit.test_serve import ADMIN_KEY, build, key_of, keys_file


def samples(exporter: Exporter) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(exporter.registry).decode()
    return {(s.name, frozenset(s.labels.items())): s.value for f in text_string_to_metric_families(text) for s in f.samples}


def test_the_definitions_follow_the_conventions() -> None:
    names = [d.name for d in DEFINITIONS]
    assert len(names) == len(set(names)) > 30
    for d in DEFINITIONS:
        assert d.name.startswith("axmon_") and d.help.endswith("."), d.name
        assert d.name.endswith("_total") == (d.kind == "counter"), d.name
        assert not any(unit in d.name for unit in ("_ms", "milliseconds", "_bytes_total_")), d.name
        assert not {"execution_id", "id", "event_id", "alert_id"} & set(d.labels), d.name


@pytest.mark.parametrize("text, address", [
    ("9101", MetricsAddress("127.0.0.1", 9101)),
    ("0.0.0.0:9101", MetricsAddress("0.0.0.0", 9101)),
    ("[::1]:9", MetricsAddress("::1", 9)),
])
def test_metrics_addresses(text: str, address: MetricsAddress) -> None:
    assert MetricsAddress.parse(text) == address


@pytest.mark.parametrize("text", ["", "x", "host:", "70000", "h:-1"])
def test_bad_metrics_addresses(text: str) -> None:
    with pytest.raises(ConfigError):
        MetricsAddress.parse(text)


def test_webhook_labels_hide_credentials_and_queries() -> None:
    assert webhook_label("https://u:pw@hooks.example:8443/a/b?token=s#f") == "https://hooks.example:8443/a/b"


def fake_worker(reporter: Any = None) -> SimpleNamespace:
    counters = {"lifecycle": {"applied": 7, "processing_error": 1}, "metrics": {"admitted": 3}, "stats": {}, "alerts": {},
                "dead_letters": {"invalid_json": 2, "processing_error": 1}, "batches": {"lifecycle": 2, "table_writes": 9}}
    return SimpleNamespace(consumed={"lifecycle": 8}, topics=Topics("p."), produced={"p.execution-state": 7, "p.dead-letter": 3},
                           reporter=reporter, counters=lambda: counters,
                           executions={"a": 1, "b": 2}, tenant_stats={}, windows={})


def test_the_worker_collector_reads_the_counters_and_the_heartbeat() -> None:
    history = History(1_000, (2_000,), 1, LastError(3_500, "RuntimeError", "boom"))
    worker = fake_worker()
    status = WorkerStatus("h:1", "h", 1, "g", "running", 4_000, 2_000, history, 5.0, 60.0, waiting=4,
                          counters=worker.counters(), partitions={"p.workflow-events": (0, 2)})
    worker.reporter = SimpleNamespace(status=lambda: status)
    exporter = Exporter()
    collector = WorkerCollector(worker, exporter.registry)
    exporter.add(collector)
    collector.observe_batch("lifecycle", 5, 0.002)
    collector.observe_batch("lifecycle", 3, 0.004)
    found = samples(exporter)

    def v(name: str, **labels: str) -> float:
        return found[(name, frozenset(labels.items()))]

    assert v("axmon_worker_records_consumed_total", topic="p.workflow-events") == 8
    assert v("axmon_worker_records_produced_total", topic="p.dead-letter") == 3
    assert v("axmon_worker_dead_letters_total", reason="invalid_json") == 2
    assert v("axmon_worker_processing_errors_total") == 1
    assert v("axmon_worker_fold_events_total", core="lifecycle", counter="applied") == 7
    assert v("axmon_worker_batches_total", agent="lifecycle") == 2
    assert v("axmon_worker_table_writes_total") == 9
    assert v("axmon_worker_table_entries", table="executions") == 2
    assert v("axmon_worker_restarts_total") == 1
    assert v("axmon_worker_last_error_timestamp_seconds") == 3.5
    assert v("axmon_worker_state", state="running") == 1 and v("axmon_worker_state", state="stalled") == 0
    assert v("axmon_worker_waiting_records") == 4
    assert v("axmon_worker_assigned_partition", topic="p.workflow-events", partition="2") == 1
    assert ("axmon_worker_assigned_partition", frozenset({("topic", "p.workflow-events"), ("partition", "1")})) not in found
    assert v("axmon_worker_batch_records_sum", agent="lifecycle") == 8
    assert v("axmon_worker_fold_duration_seconds_count", agent="lifecycle") == 2
    assert not any(name.endswith("_created") for name, _ in found)


def test_the_sink_and_notify_collectors() -> None:
    sink = Exporter()
    counters = SinkCounters(records=5, batches=2, late_samples=1, by_topic={"p.metrics": 5}, rows={"performance_metrics": 4},
                            last_write_at_s=1_700_000_000.0)
    collector = SinkCollector(counters, sink.registry, Restarts(2, 1_699_999_000.0))
    sink.add(collector)
    collector.observe_transaction(5, 0.01)
    found = samples(sink)
    assert found[("axmon_sink_records_consumed_total", frozenset({("topic", "p.metrics")}))] == 5
    assert found[("axmon_sink_rows_written_total", frozenset({("table", "performance_metrics")}))] == 4
    assert found[("axmon_sink_records_skipped_total", frozenset({("reason", "late")}))] == 1
    assert found[("axmon_sink_transaction_duration_seconds_count", frozenset())] == 1
    assert found[("axmon_restarts_total", frozenset({("component", "sink")}))] == 2

    notify = NotifyCounters(records=3)
    notify.url("http://u:secret@h/x?k=secret").delivered = 3
    notify.url("http://h/y").failed = 1
    exporter = Exporter().add(NotifyCollector(notify, Restarts()))
    found = samples(exporter)
    assert found[("axmon_webhook_deliveries_total", frozenset({("webhook", "http://h/x"), ("outcome", "delivered")}))] == 3
    assert found[("axmon_webhook_deliveries_total", frozenset({("webhook", "http://h/y"), ("outcome", "failed")}))] == 1
    assert "secret" not in generate_latest(exporter.registry).decode()


def test_the_lag_gauges_and_separate_registries() -> None:
    lag = LagMonitor("unused:1", {})
    lag.snapshot = LagSnapshot({"p.worker": ({("t", 0): 3, ("t", 1): 0}, {("t", 0): 10, ("t", 1): 4})}, 1_700_000_000.0, 1)
    a, b = Exporter().add(lag), Exporter()
    found = samples(a)
    assert found[("axmon_consumer_lag_records", frozenset({("group", "p.worker"), ("topic", "t"), ("partition", "0")}))] == 7
    assert found[("axmon_consumer_lag_records", frozenset({("group", "p.worker"), ("topic", "t"), ("partition", "1")}))] == 4
    assert found[("axmon_topic_end_offset", frozenset({("topic", "t"), ("partition", "0")}))] == 10
    assert found[("axmon_lag_poll_errors_total", frozenset())] == 1
    assert samples(b) == {}
    assert not any(name.startswith("axmon_") for f in REGISTRY.collect() for name in [f.name])


def test_an_exporter_serves_over_http_from_a_thread() -> None:
    exporter = Exporter().add(NotifyCollector(NotifyCounters(records=2), Restarts())).serve(MetricsAddress("127.0.0.1", 0))
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{exporter.port}/metrics", timeout=5) as response:
            assert b"axmon_notify_records_total 2.0" in response.read()
    finally:
        exporter.stop()


def test_serve_metrics_are_for_admins(tmp_path: Path) -> None:
    db = build(tmp_path / "a.db", [("acme", "w", "completed", 1), ("acme", "w", "failed", 2), ("beta", "w", "running", 3)], [])
    keys = KeyRing.load(keys_file(tmp_path / "keys.yaml", [("acme",)]))
    client = TestClient(create_app(ServeConfig(db, Topics("p."), keys)))
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"X-API-Key": key_of(("acme",))}).status_code == 403
    response = client.get("/metrics", headers={"X-API-Key": ADMIN_KEY})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    found = {(s.name, frozenset(s.labels.items())): s.value for f in text_string_to_metric_families(response.text) for s in f.samples}
    assert found[("axmon_executions", frozenset({("tenant", "acme"), ("status", "failed")}))] == 1
    assert found[("axmon_db_table_rows", frozenset({("table", "workflow_executions_monitor")}))] == 3
    for tier in ("metric_rollups_hourly", "metric_rollups_daily", "metric_rollup_day_counts", "metric_counts"):
        assert found[("axmon_db_table_rows", frozenset({("table", tier)}))] == 0
    assert found[("axmon_execution_cost", frozenset({("tenant", "acme")}))] == 1.0
    assert '"/metrics"' not in client.get("/openapi.json").text
