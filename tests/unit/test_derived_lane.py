"""The derived lane of the metrics core: derived samples (written back to the metrics topic
after the lifecycle events they come from, so behind the raw samples of the same partition)
are judged by their own lane's stream time and reopen closed windows, so each one counts
exactly once whatever the lag; the sink's raw gate decides the same."""

from __future__ import annotations

import random
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.folds.config import FoldConfig
from processor.folds.derived import DERIVED_SOURCE
from processor.folds.metrics_core import MetricsCore
from processor.folds.raw_gate import RawSampleGate
from processor.folds.records import Emit, Origin, Stream
from schemas.codec import encode_event
from schemas.events import MetricRecorded
from tests.pg import DbAt
from tests.unit.test_cores import MetricsPipeline

CONFIG = FoldConfig(window_ms=1000, grace_ms=2000, execution_horizon_ms=10_000, sweep_interval_ms=500, marker_ms=10_000, evicted_keep_ms=10_000)
"""Derived windows keep their state 20 s of derived stream time after closing."""

WORKFLOWS = ("review", "deploy")
STATUSES = ("completed", "failed")


def derived(event_id: str, at: int, workflow: str = "review", status: str = "completed") -> MetricRecorded:
    return MetricRecorded(event_id=event_id, occurred_at=at, tenant_id="t", source=DERIVED_SOURCE,
                          metric_type="workflow.execution.count", value=1, unit="count",
                          labels={"workflow": workflow, "status": status})


def raw(event_id: str, at: int) -> MetricRecorded:
    return MetricRecorded(event_id=event_id, occurred_at=at, tenant_id="t", metric_type="api.request.duration",
                          value=5.0, unit="ms", labels={"model": "m"})


def run(core: MetricsCore, samples: list[MetricRecorded], start: int = 0) -> list[Emit]:
    out: list[Emit] = []
    for o, s in enumerate(samples, start):
        out += core.process(s, Origin("axmon.metrics", 0, o), encode_event(s), None)
    return out


def last_rollups(emits: list[Emit]) -> dict[bytes, dict[str, Any]]:
    """What a compacted topic keeps: the newest rollup per key."""
    return {e.key or b"": orjson.loads(e.value or b"") for e in emits if e.stream is Stream.METRIC_ROLLUPS}


def derived_count(rollups: dict[bytes, dict[str, Any]]) -> int:
    return sum(r["count"] for r in rollups.values() if r["metric_type"] == "workflow.execution.count")


def reasons(emits: list[Emit]) -> list[str]:
    return [orjson.loads(e.value or b"")["reason"] for e in emits if e.stream is Stream.DEAD_LETTER]


# Derived samples spread over 60 s of event time, each delayed by up to 15 s (the lifecycle
# partitions' skew), after raw samples that moved the raw stream time an hour ahead.
lagging = st.lists(
    st.tuples(st.integers(0, 60_000), st.integers(0, 15_000), st.sampled_from(WORKFLOWS), st.sampled_from(STATUSES)),
    min_size=1, max_size=120,
)


def lagging_samples(drawn: list[tuple[int, int, str, str]], resend_seed: int) -> tuple[list[MetricRecorded], int]:
    """The samples in arrival order (event time plus delay), with up to 10 derived again
    within 5 s of arrival (after a lifecycle crash), and how many distinct ones there are."""
    rng = random.Random(resend_seed)
    arrivals = [(at + delay, derived(f"d{i}", at, workflow, status)) for i, (at, delay, workflow, status) in enumerate(drawn)]
    arrivals += [(arrival + rng.uniform(0, 5_000), s) for arrival, s in rng.sample(arrivals, min(len(arrivals), 10))]
    return [s for _, s in sorted(arrivals, key=lambda item: item[0])], len(drawn)


@settings(max_examples=150, deadline=None)
@given(lagging, st.integers(0, 1_000))
def test_derived_samples_after_a_long_raw_advance_all_count_once(drawn: list[tuple[int, int, str, str]], seed: int) -> None:
    samples, distinct = lagging_samples(drawn, seed)
    core = MetricsCore({}, CONFIG)  # type: ignore[arg-type]
    out = run(core, [raw(f"r{i}", 3_600_000 + i) for i in range(5)])  # the raw backlog, an hour ahead
    out += run(core, samples, start=5)
    out += core.flush() + core.finish(now_ms=10**13)
    assert reasons(out) == []
    rollups = last_rollups(out)
    assert derived_count(rollups) == distinct
    assert all(r["final"] for r in rollups.values() if r["metric_type"] == "workflow.execution.count")


@settings(max_examples=60, deadline=None)
@given(lagging, st.integers(0, 10_000))
def test_crashes_and_redeliveries_count_each_derived_sample_once(drawn: list[tuple[int, int, str, str]], seed: int) -> None:
    samples, distinct = lagging_samples(drawn, seed)
    backlog = [raw(f"r{i}", 3_600_000 + i) for i in range(5)]
    clean = MetricsPipeline()
    clean.run(backlog + samples, None)
    crashed = MetricsPipeline()
    crashed.run(backlog + samples, random.Random(seed))
    assert crashed.view() == clean.view()
    rollups, dead = clean.view()
    assert dead == {} and derived_count(rollups) == distinct


def test_a_closed_derived_window_reopens_and_publishes_its_final_again() -> None:
    store: dict[str, Any] = {}
    core = MetricsCore(store, CONFIG)  # type: ignore[arg-type]
    closing = run(core, [derived("a", 100), derived("b", 200), derived("c", 5_000)])
    assert [(r["window_start"], r["count"], r["final"]) for r in last_rollups(closing).values()] == [(0, 2, True)]
    late = run(core, [derived("d", 300)], start=3)
    assert [(r["window_start"], r["count"], r["final"]) for r in last_rollups(late).values()] == [(0, 3, True)]
    assert run(core, [derived("d", 300)], start=4) == []  # re-derived: counted once
    restarted = MetricsCore(store, CONFIG)  # type: ignore[arg-type]
    assert restarted.derived_times.get(0) == 5_000 and restarted.times.get(0) == 0
    repaired = run(restarted, [derived("d", 300)], start=3)  # offset 3 redelivered after a crash
    assert {r["window_start"]: r["count"] for r in last_rollups(repaired).values()} == {0: 3}
    assert core.counters == {"applied": 4, "closed": 1, "reopened": 1, "duplicate": 1}


def test_a_derived_window_first_seen_after_its_close_is_closed_at_once() -> None:
    core = MetricsCore({}, CONFIG)  # type: ignore[arg-type]
    run(core, [derived("a", 9_000)])
    [final] = last_rollups(run(core, [derived("b", 100, status="failed")], start=1)).values()
    assert (final["window_start"], final["count"], final["final"]) == (0, 1, True)
    assert [orjson.loads(e.value or b"")["window_start"] for e in core.flush()] == [9_000]  # only the open one


def test_a_derived_sample_beyond_the_kept_state_is_a_dead_letter_late_derived() -> None:
    core = MetricsCore({}, CONFIG)  # type: ignore[arg-type]
    run(core, [derived("a", 100), derived("b", 40_000)])  # window 0 refused from 1000 + 2000 + 30000
    out = run(core, [derived("c", 200), raw("r", 100)], start=2)
    assert reasons(out) == ["late_derived"]  # the raw lane is still at 0: the raw sample counts
    assert core.counters["late_derived"] == 1 and "late" not in core.counters


def test_raw_samples_keep_their_own_lane() -> None:
    core = MetricsCore({}, CONFIG)  # type: ignore[arg-type]
    run(core, [derived("a", 50_000)])  # derived samples do not move the raw stream time
    out = run(core, [raw("r1", 100), raw("r2", 10_000), raw("r3", 200)], start=1)
    assert reasons(out) == ["late"]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 80_000)), max_size=80))
def test_the_sinks_raw_gate_admits_exactly_what_the_worker_counts(drawn: list[tuple[bool, int]]) -> None:
    samples = [derived(f"s{i}", at) if is_derived else raw(f"s{i}", at) for i, (is_derived, at) in enumerate(drawn)]
    core = MetricsCore({}, CONFIG)  # type: ignore[arg-type]
    gate = RawSampleGate(CONFIG, {})
    for o, s in enumerate(samples):
        refused = bool(reasons(core.process(s, Origin("axmon.metrics", 0, o), encode_event(s), None)))
        assert gate.admit(0, s) is not refused


def test_the_sink_replaces_a_reopened_final_and_its_hourly_row(db: DbAt) -> None:
    from processor.store.db import open_for_writing
    from processor.store.hourly import hourly_row
    from processor.store.sinkdb import SinkBatch, write_batch

    core = MetricsCore({}, CONFIG)  # type: ignore[arg-type]
    conn = open_for_writing(db("a.db"))
    conn.row_factory = None
    hourly = "SELECT count, windows, final_windows FROM metric_rollups_hourly WHERE metric_type = 'workflow.execution.count'"
    for o, s in enumerate([derived("a", 100), derived("b", 200), derived("c", 5_000), derived("d", 300)]):
        batch = SinkBatch()
        for rollup in last_rollups(core.process(s, Origin("axmon.metrics", 0, o), encode_event(s), None)).values():
            batch.add_rollup(rollup)
        write_batch(conn, batch)
    assert conn.execute("SELECT count, final FROM metric_rollups WHERE window_start = 0").fetchall() == [(3, 1)]
    assert conn.execute(hourly).fetchall() == [(3, 1, 1)]
    [(series,)] = conn.execute("SELECT series FROM metric_rollups").fetchall()
    windows = conn.execute("SELECT window_start, window_end, tenant_id, metric_type, labels, unit, count, sum, min, max, "
                           "sketch, final FROM metric_rollups WHERE series = ?", (series,)).fetchall()
    stored = conn.execute("SELECT * FROM metric_rollups_hourly").fetchone()
    assert tuple(stored) == hourly_row(series, 0, windows)
    conn.close()


def test_the_lane_is_a_property_of_the_series() -> None:
    from processor.folds.derived import in_derived_lane

    assert in_derived_lane("workflow.step.count", {"workflow": "w", "step": "s", "status": "completed"})
    assert in_derived_lane("workflow.execution.duration", {"status": "failed", "workflow": "w"})
    assert not in_derived_lane("workflow.step.duration", {"model": "m"})  # an engine's own series stays raw
    assert not in_derived_lane("workflow.execution.count", {"workflow": "w", "status": "completed", "host": "h"})
    assert not in_derived_lane("api.request.duration", {"workflow": "w", "status": "completed"})
