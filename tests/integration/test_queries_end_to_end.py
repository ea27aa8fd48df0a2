"""SDK -> worker -> sink -> query API on the real broker and real SQLite: every query of the
original design equals an independent oracle (:mod:`tests.oracle`) computed directly from the
generated events."""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from processor.store.db import DAY_MS as DAY
from processor.store.db import EXECUTION_COLUMNS, STEP_COLUMNS
from processor.store.db import HOUR_MS as HOUR
from processor.store.queries import Monitor
from schemas import Event, Topics
from tests.integration.test_sink import settle, sink
from tests.integration.test_worker import WINDOW_MS, publish, scenario, worker
from tests.oracle import (
    expected_executions,
    expected_row,
    expected_samples,
    expected_stats,
    expected_step_row,
    nearest_rank,
    same,
)


class Oracle:
    def __init__(self, events: list[Event]) -> None:
        self.executions = {}
        for eid, execution in expected_executions(events).items():
            row = expected_row(execution)
            row["steps"] = [expected_step_row(s) for s in execution["steps"]]
            self.executions[eid] = row
        self.samples = expected_samples(events)

    def rows(self, tenant: str | None) -> list[dict[str, Any]]:
        return [r for r in self.executions.values() if tenant is None or r["tenant_id"] == tenant]

    def values(self, metric_type: str, start: int, end: int, tenant: str | None, labels: dict[str, str] | None) -> list[float]:
        return [
            float(s.value) for s in self.samples
            if s.metric_type == metric_type and start <= s.occurred_at < end
            and (tenant is None or s.tenant_id == tenant)
            and all(s.labels.get(k) == v for k, v in (labels or {}).items())
        ]


def strip(row: dict[str, Any]) -> dict[str, Any]:
    """The row's columns, metadata parsed (its text is the sink's business, its content is not)."""
    out = {k: row[k] for k in EXECUTION_COLUMNS}
    if isinstance(out["metadata"], str):
        out["metadata"] = json.loads(out["metadata"])
    return out


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Oracle]:
    import uuid

    from processor.runtime.admin import contract_topics, ensure_topics
    from tests.integration.conftest import TEST_PARTITIONS

    topics = Topics(f"test-{uuid.uuid4().hex[:10]}.")
    asyncio.run(ensure_topics(kafka_bootstrap, contract_topics(topics, TEST_PARTITIONS)))
    workdir = tmp_path_factory.mktemp("e2e")
    db = workdir / "axmon.db"
    events = scenario(seed=41, executions=300)
    work = worker(kafka_bootstrap, topics, workdir).start()
    writer = sink(kafka_bootstrap, topics, workdir, db).start()
    try:
        asyncio.run(publish(kafka_bootstrap, topics, events))
        oracle = Oracle(events)

        settle(kafka_bootstrap, topics, [db], [work, writer], 300)
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            assert conn.execute("SELECT count(*) FROM metric_rollups WHERE final = 0").fetchone()[0] == 0
            assert conn.execute("SELECT count(*) FROM workflow_executions_monitor").fetchone()[0] == len(oracle.executions)
        finally:
            conn.close()
    finally:
        writer.stop()
        work.stop()
    return db, oracle


TENANTS = [None, "tenant_a", "tenant_c"]


@pytest.mark.parametrize("tenant", TENANTS)
def test_execution_queries(pipeline: tuple[Path, Oracle], tenant: str | None) -> None:
    db, oracle = pipeline
    rows = oracle.rows(tenant)
    by_recency = sorted(rows, key=lambda r: (r["started_at"], r["id"]), reverse=True)
    with Monitor(db) as monitor:
        active = monitor.get_active_executions(tenant)
        assert same([strip(r) for r in active], [strip(r) for r in by_recency if r["status"] in ("pending", "running")])
        recent = monitor.get_recent_executions(limit=25, tenant_id=tenant)
        assert same([strip(r) for r in recent], [strip(r) for r in by_recency[:25]])
        assert len(monitor.get_recent_executions(limit=1000, tenant_id=tenant)) == len(rows)
        stats = monitor.get_workflow_stats(tenant)
        expected = expected_stats(rows)
        for key in ("total", "running", "completed", "failed", "cancelled", "pending", "success_rate"):
            assert stats[key] == expected[key], key
        assert stats["avg_duration"] == pytest.approx(expected["avg_duration"])


def test_execution_and_steps(pipeline: tuple[Path, Oracle]) -> None:
    db, oracle = pipeline
    with Monitor(db) as monitor:
        for eid, row in list(oracle.executions.items())[:60]:
            got = monitor.get_execution(eid)
            assert got is not None and same(strip(got), strip(row))
            steps = monitor.get_step_executions(eid)
            want = sorted(row["steps"], key=lambda s: (s["started_at"], s["id"]))
            assert same([{k: s[k] for k in STEP_COLUMNS} for s in steps], want)
        assert monitor.get_execution("no-such-execution") is None


@pytest.mark.parametrize(
    ("metric_type", "tenant", "labels"),
    [
        ("api.request.duration", None, None),
        ("api.request.duration", "tenant_c", None),
        ("api.request.duration", "tenant_b", {"model": "gpt-large"}),
        ("cpu.usage", "tenant_a", None),
        ("workflow.step.duration", None, {"status": "completed"}),
        ("workflow.execution.count", "tenant_d", {"status": "failed"}),
    ],
)
def test_aggregations_and_series(pipeline: tuple[Path, Oracle], metric_type: str, tenant: str | None, labels: dict[str, str] | None) -> None:
    db, oracle = pipeline
    times = [s.occurred_at for s in oracle.samples]
    first, last = min(times), max(times) + 1
    cuts = [
        (first, last),  # everything: whole windows from rollups
        (first + 12_345, first + 5 * WINDOW_MS + 777),  # cuts windows at both edges
        (first + 61_000, first + 62_000),  # inside one window: raw only, exact
        (first - first % HOUR, last - last % HOUR + HOUR),  # whole hours: the hourly tiers
        (first - first % DAY, last - last % DAY + DAY),  # whole UTC days: the day tiers
        (first - first % HOUR + HOUR, last + DAY),  # from an hour boundary inside the data
    ]
    with Monitor(db) as monitor, Monitor(db, types=False) as per_series:
        for start, end in cuts:
            finer = per_series.get_aggregation(metric_type, start, end, tenant_id=tenant, labels=labels)
            values = oracle.values(metric_type, start, end, tenant, labels)
            got = monitor.get_aggregation(metric_type, start, end, tenant_id=tenant, labels=labels)
            if not values:
                assert got is None or got["count"] == 0
                continue
            assert got is not None and finer is not None
            if start % HOUR == 0 and end % HOUR == 0:  # whole hours of final windows: from a tier
                assert got["from_hourly"] + got["from_daily"] > 0
            assert {k: v for k, v in got.items() if k not in ("sum", "avg") and not k.startswith("from_")} == {
                k: v for k, v in finer.items() if k not in ("sum", "avg") and not k.startswith("from_")}
            assert (got["count"], got["min"], got["max"]) == (len(values), min(values), max(values))
            assert got["sum"] == pytest.approx(sum(values))
            assert got["avg"] == pytest.approx(sum(values) / len(values))
            for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
                exact = nearest_rank(values, q)
                if got["exact"]:
                    assert got[name] == exact
                else:
                    assert abs(got[name] - exact) <= 0.01 * abs(exact) + 1e-9
        start, end = first, last
        series = monitor.get_time_series(metric_type, start, end, interval_ms=120_000, labels=labels, tenant_id=tenant)
        points = {p["timestamp"]: p for p in series["data_points"]}
        for k in range(math.ceil((end - start) / 120_000)):
            bucket = start + k * 120_000
            values = oracle.values(metric_type, bucket, min(end, bucket + 120_000), tenant, labels)
            if values:
                assert points[bucket]["value"] == pytest.approx(sum(values) / len(values))
            else:
                assert bucket not in points
        assert monitor.get_metric_count(metric_type, tenant) == len(oracle.values(metric_type, 0, 2**62, tenant, None))


def test_metric_count(pipeline: tuple[Path, Oracle]) -> None:
    db, oracle = pipeline
    with Monitor(db) as monitor:
        assert monitor.get_metric_count() == len(oracle.samples)
        assert monitor.get_metric_count(tenant_id="tenant_a") == sum(s.tenant_id == "tenant_a" for s in oracle.samples)
