"""The query API against small databases built row by row, checked against an oracle computed
from the raw samples: exact counts, sums, extremes and nearest-rank percentiles (within the
sketch's 1% when rollups were read), whatever part of the range comes from rollups."""

from __future__ import annotations

import math
import random
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.errors import ConfigError
from processor.folds.aggregate import Aggregate
from processor.folds.sketch_codec import encode
from processor.folds.windows import series_id
from processor.store.db import EXECUTION_COLUMNS, STEP_COLUMNS, DatabaseError, open_for_writing
from processor.store.executions import write_execution_rows
from processor.store.metric_queries import nearest_rank
from processor.store.queries import Monitor
from processor.store.range_plan import plan_range
from processor.store.series import write_sample_rows, write_window_rows
from tests.pg import DbAt

W = 60_000
"""Window size of the test rollups."""
T0 = 1_700_000_040_000
"""A window boundary (a multiple of W)."""
MT = "api.request.duration"
QS = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))


# -- building databases ------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    id: str
    timestamp: int
    value: float
    metric_type: str = MT
    tenant_id: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def series(self) -> tuple[str | None, str, tuple[tuple[str, str], ...]]:
        return (self.tenant_id, self.metric_type, tuple(sorted(self.labels.items())))


def labels_json(labels: Mapping[str, str]) -> str:
    return orjson.dumps(dict(labels), option=orjson.OPT_SORT_KEYS).decode()


def insert_samples(conn: sqlite3.Connection, samples: Iterable[Sample]) -> None:
    write_sample_rows(conn, [(s.id, s.timestamp, s.metric_type, s.value, "ms", labels_json(s.labels), s.tenant_id)
                             for s in samples])


def insert_rollups(
    conn: sqlite3.Connection, samples: Iterable[Sample], *, final_before: int, window_ms: int = W
) -> int:
    """One rollup row per series and window of ``samples`` (``Aggregate.of`` its values),
    final when the window ends at or before ``final_before``. An open window's row is a stale
    snapshot, as the sink may hold one: it counts only the window's first sample, so a query
    that trusted it would be wrong. Returns the rows written."""
    groups: dict[tuple[Any, ...], list[float]] = {}
    for s in samples:
        start = s.timestamp - s.timestamp % window_ms
        groups.setdefault((*s.series, start), []).append(s.value)
    rows = []
    for (tenant, metric_type, labels, start), values in groups.items():
        final = start + window_ms <= final_before
        agg = Aggregate.of(values if final else values[:1])
        rows.append((
            series_id((tenant or "", metric_type, labels)), start, start + window_ms, tenant, metric_type,
            labels_json(dict(labels)), "ms", agg.count, agg.sum, agg.min, agg.max,
            encode(agg.sketch), int(final),
        ))
    write_window_rows(conn, rows)
    return len(rows)


EXECUTION_DEFAULTS: dict[str, Any] = {
    "workflow_id": "wf_review", "workflow_name": "Code Review", "tenant_id": "tenant_a", "user_id": "alice",
    "status": "completed", "started_at": T0, "completed_at": None, "duration": None, "steps_total": 2,
    "steps_completed": 0, "steps_failed": 0, "current_step": None, "error_message": None, "metadata": "{}",
    "tokens_used": None, "cost": None, "last_event_at": T0, "trace_id": None, "span_id": None,
}
STEP_DEFAULTS: dict[str, Any] = {
    "step_key": "lint", "step_name": "Lint", "status": "completed", "started_at": T0, "completed_at": None,
    "duration": None, "retry_count": 0, "error_message": None, "input_size": None, "output_size": None,
    "tokens_used": None, "cost": None, "trace_id": None, "span_id": None, "retried_at": None,
}


def insert_row(conn: sqlite3.Connection, table: str, row: Mapping[str, Any]) -> None:
    """A row of ``table`` (a raw sample, an execution or a step: through the store's writers, their tables
    being views)."""
    if table == "performance_metrics":
        write_sample_rows(conn, [tuple(row[c] for c in ("id", "timestamp", "metric_type", "value", "unit", "labels",
                                                         "tenant_id"))])
        return
    if table == "workflow_executions_monitor":  # views too (schema 9): through the store's writer
        write_execution_rows(conn, [tuple(row[c] for c in EXECUTION_COLUMNS)], [])
        return
    if table == "workflow_step_executions":
        write_execution_rows(conn, [], [tuple(row[c] for c in STEP_COLUMNS)])
        return
    columns = ", ".join(f'"{c}"' for c in row)
    conn.execute(f"INSERT INTO {table}({columns}) VALUES ({', '.join('?' * len(row))})", list(row.values()))


def insert_execution(conn: sqlite3.Connection, id: str, **fields: Any) -> None:
    insert_row(conn, "workflow_executions_monitor", {"id": id, **EXECUTION_DEFAULTS, **fields})


def insert_step(conn: sqlite3.Connection, id: str, execution_id: str, **fields: Any) -> None:
    insert_row(conn, "workflow_step_executions", {"id": id, "execution_id": execution_id, **STEP_DEFAULTS, **fields})


def insert_stats(conn: sqlite3.Connection, tenant: str, **counts: int) -> None:
    row = {k: counts.get(k, 0) for k in ("total", "pending", "running", "completed", "failed", "cancelled",
                                         "duration_sum", "duration_count")}
    insert_row(conn, "workflow_stats", {"tenant_id": tenant, **row})


def build_db(path: Path, samples: Sequence[Sample] = (), *, final_before: int | None = None) -> Path:
    """A database holding ``samples`` raw and (when ``final_before`` is given) as rollups."""
    conn = open_for_writing(path)
    conn.execute("BEGIN")
    insert_samples(conn, samples)
    if final_before is not None:
        insert_rollups(conn, samples, final_before=final_before)
    conn.execute("COMMIT")
    conn.close()
    return path


# -- the oracle --------------------------------------------------------------------------------


def selected(samples: Iterable[Sample], start: int, end: int, tenant: str | None = None,
             labels: Mapping[str, str] | None = None, metric_type: str = MT) -> list[Sample]:
    return [
        s for s in samples
        if s.metric_type == metric_type and start <= s.timestamp < end
        and (tenant is None or s.tenant_id == tenant)
        and all(s.labels.get(k) == v for k, v in (labels or {}).items())
    ]


def check_aggregation(result: Mapping[str, Any] | None, expected: Sequence[Sample]) -> None:
    values = sorted(s.value for s in expected)
    if not values:
        assert result is None
        return
    assert result is not None
    assert result["count"] == len(values)
    assert result["min"] == values[0] and result["max"] == values[-1]
    assert result["sum"] == pytest.approx(math.fsum(values), rel=1e-9, abs=1e-6)
    assert result["avg"] == pytest.approx(math.fsum(values) / len(values), rel=1e-9, abs=1e-6)
    for name, q in QS:
        truth = nearest_rank(values, q)
        if result["exact"]:
            assert result[name] == truth
        else:
            assert abs(result[name] - truth) <= 0.01 * abs(truth) + 1e-9, (name, result[name], truth)
    assert result["exact"] == (result["from_rollups"] == 0)


def check_series(result: Mapping[str, Any], expected: Sequence[Sample], start: int, interval: int) -> None:
    buckets: dict[int, list[float]] = {}
    for s in expected:
        buckets.setdefault(start + (s.timestamp - start) // interval * interval, []).append(s.value)
    points = result["data_points"]
    assert [p["timestamp"] for p in points] == sorted(buckets)
    for p in points:
        values = buckets[p["timestamp"]]
        assert p["count"] == len(values)
        assert p["value"] == pytest.approx(math.fsum(values) / len(values), rel=1e-9, abs=1e-6)


# -- property: any range, any finality, any filter ----------------------------------------------

TENANTS = (None, "tenant_a", "tenant_b")
LABELS: tuple[dict[str, str], ...] = ({}, {"model": "large"}, {"model": "small"}, {"model": "large", "region": "eu"})

sample_values = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False),
    st.integers(0, 5_000).map(float),
)
samples_strategy = st.lists(
    st.tuples(st.integers(0, 10 * W - 1), sample_values, st.sampled_from(TENANTS), st.integers(0, len(LABELS) - 1),
              st.sampled_from((MT, MT, MT, "cache.hit_rate"))),
    min_size=5, max_size=150,
).map(lambda items: [
    Sample(f"s{i:05d}", T0 + at, value, metric_type, tenant, LABELS[label])
    for i, (at, value, tenant, label, metric_type) in enumerate(items)
])
edges = st.one_of(st.integers(-W, 11 * W), st.integers(-1, 11).map(lambda k: k * W)).map(lambda offset: T0 + offset)
"""Range ends: anywhere, or on a window boundary (so whole windows fall inside)."""
FILTERS: tuple[tuple[str | None, dict[str, str] | None], ...] = (
    (None, None), ("tenant_a", None), ("tenant_z", None), (None, {"model": "large"}),
    ("tenant_b", {"region": "eu"}), (None, {"model": "small", "region": "eu"}),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(samples_strategy, st.integers(0, 11), edges, edges, st.sampled_from((W // 2, W, 2 * W, 3 * W, 7_000)))
def test_aggregation_and_series_equal_the_oracle(
    samples: list[Sample], final_windows: int, a: int, b: int, interval: int
) -> None:
    start, end = min(a, b), max(a, b) + 1
    with tempfile.TemporaryDirectory() as folder:
        db = build_db(Path(folder) / "p.db", samples, final_before=T0 + final_windows * W)
        with Monitor(db) as monitor:
            for tenant, labels in FILTERS:
                expected = selected(samples, start, end, tenant, labels)
                check_aggregation(monitor.get_aggregation(MT, start, end, tenant, labels), expected)
                series = monitor.get_time_series(MT, start, end, interval, labels, tenant)
                check_series(series, expected, start, interval)


# -- the split between rollups and raw samples ---------------------------------------------------


def dense_samples(windows: int, per_window: int, seed: int = 1, **fields: Any) -> list[Sample]:
    rng = random.Random(seed)
    prefix = f"{fields.get('tenant_id')}-{sorted(fields.get('labels', {}).items())}-"
    return [
        Sample(f"{prefix}{w:03d}-{i:04d}", T0 + w * W + rng.randrange(W), rng.lognormvariate(5, 1), **fields)
        for w in range(windows) for i in range(per_window)
    ]


def test_whole_final_windows_come_from_rollups_and_only_the_cut_edges_from_raw(db: DbAt) -> None:
    samples = dense_samples(10, 50)
    db = build_db(db("t.db"), samples, final_before=T0 + 10 * W)
    start, end = T0 + W // 3, T0 + 9 * W + W // 2
    with Monitor(db) as monitor:
        result = monitor.get_aggregation(MT, start, end)
    expected = selected(samples, start, end)
    check_aggregation(result, expected)
    assert result is not None and not result["exact"]
    assert result["from_rollups"] == 8  # windows 1..8; windows 0 and 9 are cut
    edge = [s for s in expected if s.timestamp < T0 + W or s.timestamp >= T0 + 9 * W]
    assert result["from_raw"] == len(edge)


def test_a_range_inside_one_window_reads_raw_samples_exactly(db: DbAt) -> None:
    samples = dense_samples(3, 200)
    db = build_db(db("t.db"), samples, final_before=T0 + 3 * W)
    start, end = T0 + W + 1_000, T0 + W + 40_000
    with Monitor(db) as monitor:
        result = monitor.get_aggregation(MT, start, end)
    check_aggregation(result, selected(samples, start, end))
    assert result is not None and result["exact"] and result["from_rollups"] == 0


def test_a_range_that_is_exactly_one_window_uses_its_rollup(db: DbAt) -> None:
    samples = dense_samples(3, 200)
    db = build_db(db("t.db"), samples, final_before=T0 + 3 * W)
    with Monitor(db) as monitor:
        result = monitor.get_aggregation(MT, T0 + W, T0 + 2 * W)
    check_aggregation(result, selected(samples, T0 + W, T0 + 2 * W))
    assert result is not None and (result["from_rollups"], result["from_raw"]) == (1, 0)


def test_open_windows_are_read_from_raw_samples(db: DbAt) -> None:
    samples = dense_samples(6, 40)
    db = build_db(db("t.db"), samples, final_before=T0 + 4 * W)  # windows 4 and 5 still open
    with Monitor(db) as monitor:
        result = monitor.get_aggregation(MT, T0, T0 + 6 * W)
    check_aggregation(result, samples)
    assert result is not None and result["from_rollups"] == 4 and result["from_raw"] == 80


def test_a_window_final_for_one_series_and_open_for_another_is_read_from_raw(db: DbAt) -> None:
    a = dense_samples(3, 30, seed=1, labels={"model": "large"})
    b = dense_samples(3, 30, seed=2, labels={"model": "small"})
    conn = open_for_writing(db("t.db"))
    conn.execute("BEGIN")
    insert_samples(conn, a + b)
    insert_rollups(conn, a, final_before=T0 + 3 * W)
    insert_rollups(conn, b, final_before=T0 + 1 * W)  # b's windows 1 and 2 are open
    conn.execute("COMMIT")
    with Monitor(db("t.db")) as monitor:
        both = monitor.get_aggregation(MT, T0, T0 + 3 * W)
        only_a = monitor.get_aggregation(MT, T0, T0 + 3 * W, labels={"model": "large"})
    check_aggregation(both, a + b)
    assert both is not None and both["from_rollups"] == 2 and both["from_raw"] == 120  # window 0 of a and b
    check_aggregation(only_a, a)
    assert only_a is not None and only_a["from_rollups"] == 3 and only_a["from_raw"] == 0


def test_rollups_stand_in_for_raw_samples_removed_by_retention(db: DbAt) -> None:
    samples = dense_samples(4, 25)
    db = build_db(db("t.db"), samples, final_before=T0 + 4 * W)
    conn = open_for_writing(db)
    conn.execute("DELETE FROM samples WHERE timestamp < ?", (T0 + 2 * W,))
    conn.close()
    with Monitor(db) as monitor:
        result = monitor.get_aggregation(MT, T0, T0 + 4 * W)
    check_aggregation(result, samples)


def test_windows_of_two_sizes_that_overlap_are_read_from_raw(db: DbAt) -> None:
    small = dense_samples(4, 10, seed=3, labels={"w": "1"})
    large = dense_samples(4, 10, seed=4, labels={"w": "2"})
    conn = open_for_writing(db("t.db"))
    conn.execute("BEGIN")
    insert_samples(conn, small + large)
    insert_rollups(conn, small, final_before=T0 + 4 * W)
    insert_rollups(conn, large, final_before=T0 + 4 * W, window_ms=2 * W)
    conn.execute("COMMIT")
    with Monitor(db("t.db")) as monitor:
        result = monitor.get_aggregation(MT, T0, T0 + 4 * W)
    check_aggregation(result, small + large)
    assert result is not None and result["from_rollups"] == 0


def test_tenant_and_labels_select_series_and_isolate_tenants(db: DbAt) -> None:
    mine = dense_samples(5, 20, seed=1, tenant_id="tenant_a", labels={"model": "large", "region": "eu"})
    theirs = dense_samples(5, 20, seed=2, tenant_id="tenant_b", labels={"model": "large", "region": "eu"})
    other = dense_samples(5, 20, seed=3, tenant_id="tenant_a", labels={"model": "small"})
    samples = mine + theirs + other
    db = build_db(db("t.db"), samples, final_before=T0 + 5 * W)
    start, end = T0 + 1_234, T0 + 5 * W - 1_234
    with Monitor(db) as monitor:
        for tenant, labels in (("tenant_a", {"model": "large"}), ("tenant_a", None), ("tenant_b", None),
                               (None, {"region": "eu"}), (None, {"model": "large", "region": "eu"}),
                               ("tenant_a", {"model": "none"}), ("tenant_c", None)):
            check_aggregation(monitor.get_aggregation(MT, start, end, tenant, labels),
                              selected(samples, start, end, tenant, labels))
            check_series(monitor.get_time_series(MT, start, end, W, labels, tenant),
                         selected(samples, start, end, tenant, labels), start, W)
        only_b = monitor.get_aggregation(MT, T0, T0 + 5 * W, "tenant_b")
    assert only_b is not None and only_b["count"] == len(theirs)


def test_label_keys_that_a_json_path_cannot_name_still_filter(db: DbAt) -> None:
    odd = {'say "hi"': "yes", "back\\slash": "1", "dot.ted": "x"}
    samples = [Sample("a", T0 + 1, 1.0, labels=odd), Sample("b", T0 + 2, 2.0, labels={"dot.ted": "x"}),
               Sample("c", T0 + 3, 3.0, labels={"dot": "x"})]
    db = build_db(db("t.db"), samples)
    with Monitor(db) as monitor:
        for labels in ({'say "hi"': "yes"}, {"back\\slash": "1"}, {"dot.ted": "x"}, {"dot": "x"}, {"dot.ted": "y"}):
            check_aggregation(monitor.get_aggregation(MT, T0, T0 + W, labels=labels),
                              selected(samples, T0, T0 + W, labels=labels))


def test_no_samples_is_none_and_an_empty_series(db: DbAt) -> None:
    db = build_db(db("t.db"), [Sample("a", T0, 1.0)])
    with Monitor(db) as monitor:
        assert monitor.get_aggregation(MT, T0 + 1, T0 + W) is None
        assert monitor.get_aggregation("cpu.usage", T0, T0 + W) is None
        series = monitor.get_time_series(MT, T0 + 1, T0 + W)
    assert series == {"metric_type": MT, "start": T0 + 1, "end": T0 + W, "interval_ms": 60_000, "data_points": []}


def test_the_original_percentile_definition(db: DbAt) -> None:
    values = [float(v) for v in range(1, 101)]
    db = build_db(db("t.db"), [Sample(f"s{i}", T0 + i, v) for i, v in enumerate(values)])
    with Monitor(db) as monitor:
        result = monitor.get_aggregation(MT, T0, T0 + W)
    assert result is not None
    assert {k: result[k] for k in ("count", "sum", "avg", "min", "max", "p50", "p95", "p99", "exact")} == {
        "count": 100, "sum": 5050.0, "avg": 50.5, "min": 1.0, "max": 100.0, "p50": 50.0, "p95": 95.0,
        "p99": 99.0, "exact": True,
    }
    assert (result["metric_type"], result["start"], result["end"]) == (MT, T0, T0 + W)


# -- time series ---------------------------------------------------------------------------------


def test_a_long_series_is_a_handful_of_queries_and_uses_rollups(db: DbAt) -> None:
    samples = dense_samples(120, 20)
    db = build_db(db("t.db"), samples, final_before=T0 + 110 * W)
    statements: list[str] = []
    with Monitor(db) as monitor:
        monitor._conn.set_trace_callback(statements.append)
        series = monitor.get_time_series(MT, T0, T0 + 120 * W, 2 * W)
    check_series(series, samples, T0, 2 * W)
    assert len(series["data_points"]) == 60
    assert len(statements) <= 5  # the day proof, the window tier's proof and rows, the rollups, the raw samples
    raw_query = next(s for s in statements if "performance_metrics" in s)
    assert f"[[{T0 + 110 * W},{T0 + 120 * W}]]" in raw_query  # only the open windows are read raw


def test_windows_straddling_bucket_edges_are_read_raw(db: DbAt) -> None:
    samples = dense_samples(6, 30)
    db = build_db(db("t.db"), samples, final_before=T0 + 6 * W)
    start = T0 + W // 2
    with Monitor(db) as monitor:
        check_series(monitor.get_time_series(MT, start, T0 + 6 * W, W), selected(samples, start, T0 + 6 * W), start, W)
        check_series(monitor.get_time_series(MT, T0, T0 + 6 * W, 90_000), samples, T0, 90_000)


def test_only_buckets_with_samples_are_returned_in_time_order(db: DbAt) -> None:
    samples = [Sample("a", T0 + 5 * W + 1, 4.0), Sample("b", T0 + 1, 1.0), Sample("c", T0 + 2, 3.0)]
    db = build_db(db("t.db"), samples, final_before=T0 + W)
    with Monitor(db) as monitor:
        series = monitor.get_time_series(MT, T0, T0 + 10 * W, W)
    assert series["data_points"] == [
        {"timestamp": T0, "value": 2.0, "count": 2},
        {"timestamp": T0 + 5 * W, "value": 4.0, "count": 1},
    ]


# -- the plan, pure ------------------------------------------------------------------------------


def test_plan_covers_whole_final_windows_and_leaves_the_rest_raw() -> None:
    windows = [(0, 10, True), (10, 20, True), (20, 30, False), (30, 40, True), (40, 50, True), (50, 60, True)]
    plan = plan_range(windows, 5, 55)
    assert plan.covered == {(10, 20), (30, 40), (40, 50)}
    assert plan.raw == ((5, 10), (20, 30), (50, 55))


def test_plan_rejects_mixed_finality_overlaps_and_bucket_straddlers() -> None:
    mixed = plan_range([(0, 10, True), (0, 10, False), (10, 20, True)], 0, 20)
    assert mixed.covered == {(10, 20)} and mixed.raw == ((0, 10),)
    overlapping = plan_range([(0, 10, True), (0, 20, True), (20, 30, True)], 0, 30)
    assert overlapping.covered == {(20, 30)} and overlapping.raw == ((0, 20),)
    buckets = plan_range([(0, 10, True), (10, 20, True), (20, 30, True)], 0, 30, bucket_ms=15)
    assert buckets.covered == {(0, 10), (20, 30)} and buckets.raw == ((10, 20),)
    assert plan_range([], 3, 9).raw == ((3, 9),)


# -- executions ----------------------------------------------------------------------------------


@pytest.fixture
def executions_db(db: DbAt) -> Path:
    conn = open_for_writing(db("e.db"))
    conn.execute("BEGIN")
    insert_execution(conn, "e1", started_at=T0, status="completed", duration=2_500, completed_at=T0 + 2_500,
                     metadata='{"pr": "#123", "n": [1, 2]}')
    insert_execution(conn, "e2", started_at=T0 + 10, status="running", current_step="lint")
    insert_execution(conn, "e3", started_at=T0 + 10, status="pending")
    insert_execution(conn, "e4", started_at=T0 + 20, status="failed", error_message="boom", tenant_id="tenant_b")
    insert_execution(conn, "e5", started_at=T0 + 5, status="running", tenant_id="tenant_b", metadata="null")
    insert_execution(conn, "e6", started_at=T0 + 1, status="cancelled")
    insert_step(conn, "s-b", "e1", started_at=T0 + 100, step_key="test")
    insert_step(conn, "s-a", "e1", started_at=T0 + 100, step_key="build")
    insert_step(conn, "s-0", "e1", started_at=T0, step_key="lint", retry_count=2)
    insert_step(conn, "x-0", "e2", started_at=T0)
    conn.execute("COMMIT")
    conn.close()
    return db("e.db")


def ids(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    return [r["id"] for r in rows]


def test_active_executions_are_pending_or_running_newest_first(executions_db: Path) -> None:
    with Monitor(executions_db) as monitor:
        assert ids(monitor.get_active_executions()) == ["e3", "e2", "e5"]
        assert ids(monitor.get_active_executions("tenant_a")) == ["e3", "e2"]
        assert ids(monitor.get_active_executions("tenant_b")) == ["e5"]
        assert monitor.get_active_executions("nobody") == []


def test_recent_executions_order_limit_and_tenant(executions_db: Path) -> None:
    with Monitor(executions_db) as monitor:
        assert ids(monitor.get_recent_executions()) == ["e4", "e3", "e2", "e5", "e6", "e1"]
        assert ids(monitor.get_recent_executions(2)) == ["e4", "e3"]
        assert ids(monitor.get_recent_executions(10, "tenant_b")) == ["e4", "e5"]
        assert all(r["tenant_id"] == "tenant_a" for r in monitor.get_recent_executions(100, "tenant_a"))


def test_an_execution_has_its_columns_and_parsed_metadata(executions_db: Path) -> None:
    with Monitor(executions_db) as monitor:
        e1 = monitor.get_execution("e1")
        e5 = monitor.get_execution("e5")
        assert monitor.get_execution("nope") is None
        assert monitor.get_execution("' OR 1=1 --") is None
    assert e1 is not None and e5 is not None
    assert list(e1) == ["id", *EXECUTION_DEFAULTS]  # the table's columns, in order
    assert e1["metadata"] == {"pr": "#123", "n": [1, 2]}
    assert (e1["duration"], e1["status"], e1["completed_at"]) == (2_500, "completed", T0 + 2_500)
    assert e5["metadata"] is None


def test_steps_are_ordered_by_start_then_id(executions_db: Path) -> None:
    with Monitor(executions_db) as monitor:
        steps = monitor.get_step_executions("e1")
        assert monitor.get_step_executions("nope") == []
    assert ids(steps) == ["s-0", "s-a", "s-b"]
    assert steps[0]["retry_count"] == 2 and list(steps[0]) == ["id", "execution_id", *STEP_DEFAULTS]


# -- stats ---------------------------------------------------------------------------------------


def test_stats_sum_over_tenants_or_pick_one(db: DbAt) -> None:
    conn = open_for_writing(db("s.db"))
    insert_stats(conn, "tenant_a", total=150, pending=1, running=2, completed=130, failed=15, cancelled=2,
                 duration_sum=325_000, duration_count=130)
    insert_stats(conn, "tenant_b", total=3, completed=1, failed=2, duration_sum=300, duration_count=3)
    conn.close()
    with Monitor(db("s.db")) as monitor:
        a = monitor.get_workflow_stats("tenant_a")
        everyone = monitor.get_workflow_stats()
        nobody = monitor.get_workflow_stats("tenant_z")
        per_tenant = monitor.get_tenant_stats()
    assert a == {"total": 150, "pending": 1, "running": 2, "completed": 130, "failed": 15, "cancelled": 2,
                 "avg_duration": 2500.0, "success_rate": 86.67}
    assert everyone == {"total": 153, "pending": 1, "running": 2, "completed": 131, "failed": 17, "cancelled": 2,
                        "avg_duration": 325_300 / 133, "success_rate": 85.62}
    assert nobody == {"total": 0, "pending": 0, "running": 0, "completed": 0, "failed": 0, "cancelled": 0,
                      "avg_duration": 0, "success_rate": 0}
    assert [t["tenant_id"] for t in per_tenant] == ["tenant_a", "tenant_b"]
    assert {k: v for k, v in per_tenant[0].items() if k != "tenant_id"} == a


# -- counts, dead letters, units -----------------------------------------------------------------


def test_metric_count_unit_dead_letters_and_table_counts(db: DbAt) -> None:
    samples = [Sample("a", T0, 1.0, tenant_id="tenant_a"), Sample("b", T0 + 1, 2.0),
               Sample("c", T0 + 2, 3.0, metric_type="cache.hit_rate", tenant_id="tenant_a")]
    db = build_db(db("t.db"), samples)
    conn = open_for_writing(db)
    for offset, (reason, ts) in enumerate((("late", T0), ("undecodable", T0 + 5), ("late", None), ("late", T0 + 9))):
        insert_row(conn, "dead_letters", {"topic": "axmon.metrics", "partition": 0, "offset": offset, "reason": reason,
                                          "detail": "d", "timestamp": ts, "key": b"k", "value": b"\x00\xff"})
    conn.close()
    with Monitor(db) as monitor:
        assert monitor.get_metric_count() == 3
        assert monitor.get_metric_count(MT) == 2
        assert monitor.get_metric_count(tenant_id="tenant_a") == 2
        assert monitor.get_metric_count("cache.hit_rate", "tenant_a") == 1
        assert monitor.get_metric_count(MT, "tenant_b") == 0
        assert monitor.get_metric_unit(MT) == "ms" and monitor.get_metric_unit("nope") is None
        letters = monitor.get_dead_letters()
        assert [(d["offset"], d["reason"]) for d in letters] == [(3, "late"), (1, "undecodable"), (0, "late"), (2, "late")]
        assert letters[0]["value"] == b"\x00\xff" and set(letters[0]) == {
            "topic", "partition", "offset", "reason", "detail", "timestamp", "key", "value"}
        assert [d["offset"] for d in monitor.get_dead_letters(2, "late")] == [3, 0]
        counts = monitor.counts()
    assert counts["performance_metrics"] == 3 and counts["dead_letters"] == 4 and counts["metric_rollups"] == 0
    assert set(counts) >= {"workflow_executions_monitor", "workflow_step_executions", "workflow_stats", "sink_offsets"}


# -- errors --------------------------------------------------------------------------------------


def test_bad_arguments_are_config_errors(db: DbAt) -> None:
    db = build_db(db("t.db"))
    with Monitor(db) as monitor:
        bad_calls: list[Callable[[], object]] = [
            lambda: monitor.get_aggregation(MT, T0, T0),
            lambda: monitor.get_aggregation(MT, T0 + 1, T0),
            lambda: monitor.get_aggregation(MT, float(T0), T0 + 1),  # type: ignore[arg-type]
            lambda: monitor.get_aggregation("", T0, T0 + 1),
            lambda: monitor.get_aggregation(MT, T0, T0 + 1, labels={"": "x"}),
            lambda: monitor.get_aggregation(MT, T0, T0 + 1, labels={"k": 1}),  # type: ignore[dict-item]
            lambda: monitor.get_time_series(MT, T0, T0 + 1, 0),
            lambda: monitor.get_time_series(MT, T0, T0 + 1, -5),
            lambda: monitor.get_time_series(MT, T0 + 1, T0),
            lambda: monitor.get_recent_executions(0),
            lambda: monitor.get_recent_executions(True),
            lambda: monitor.get_dead_letters(-1),
        ]
        for call in bad_calls:
            with pytest.raises(ConfigError):
                call()


def test_a_missing_or_foreign_database_is_a_database_error(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match="no database"):
        Monitor(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()
    foreign = tmp_path / "foreign.db"
    sqlite3.connect(foreign).close()
    with pytest.raises(DatabaseError, match="not an axmon database"):
        Monitor(foreign)


def test_the_connection_is_read_only(db: DbAt) -> None:
    with Monitor(build_db(db("t.db"))) as monitor, pytest.raises(sqlite3.OperationalError):
        monitor._conn.execute("DELETE FROM samples")
