"""The end-to-end benchmark's pure parts: event timing, matching, percentiles."""

from __future__ import annotations

from bench.e2e import Latencies, applied_at, observe, percentile, retimed, simulated
from schemas.events import LifecycleEvent, MetricRecorded


def test_simulated_mixes_lifecycle_events_and_samples() -> None:
    events = simulated(500, seed=3, tenants=2)
    assert len(events) == 500
    assert any(isinstance(e, LifecycleEvent) for e in events) and any(isinstance(e, MetricRecorded) for e in events)


def test_retimed_paces_event_time_and_keeps_each_execution_strictly_increasing() -> None:
    events = simulated(400, seed=5, tenants=3)
    paced = retimed(events, 1_000_000.0, 2_000.0)  # two events per millisecond: collisions happen
    assert [e.event_id for e in paced] == [e.event_id for e in events]
    assert all(abs(e.occurred_at - (1_000_000 + i // 2)) <= 30 for i, e in enumerate(paced))
    last: dict[str, int] = {}
    for e in paced:
        if isinstance(e, LifecycleEvent):
            assert e.occurred_at > last.get(e.execution_id, -1)
            last[e.execution_id] = e.occurred_at
    burst = retimed(events, 5_000.0, None)
    assert all(e.occurred_at >= 5_000 for e in burst)


def test_a_lifecycle_event_is_applied_when_its_execution_first_shows_its_time() -> None:
    seen: dict[str, list[tuple[int, float]]] = {}
    observe(seen, "x", 100, 1.0)
    observe(seen, "x", 100, 2.0)  # not new: ignored
    observe(seen, "x", 130, 3.0)
    events = [LifecycleEvent(event_id=f"e{t}", occurred_at=t, tenant_id="t", execution_id="x") for t in (90, 100, 120, 130, 140)]
    assert [applied_at(seen, e) for e in events] == [1.0, 1.0, 3.0, 3.0, None]
    assert applied_at(seen, LifecycleEvent(event_id="y", occurred_at=1, tenant_id="t", execution_id="y")) is None


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50 and percentile(values, 99) == 99 and percentile(values, 100) == 100
    assert percentile([], 50) == 0.0 and percentile([7.0], 99) == 7.0
    lat = Latencies.of(5, [0.003, 0.001, 0.002])
    assert lat.matched == 3 and lat.sent == 5 and lat.ms(50) == 2.0 and lat.max_ms == 3.0
