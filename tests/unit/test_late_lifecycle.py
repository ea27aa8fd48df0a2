"""Lifecycle events that come hours late (an engine that was offline): any split of an
execution's events into an early part and a late part, with the early part's state evicted in
between, ends in the row, derived samples and stats of all its events folded at once."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from processor.folds.config import FoldConfig
from processor.folds.derived import derived_samples
from processor.folds.execution import apply, snapshot
from processor.folds.lifecycle_core import LifecycleCore
from processor.folds.records import Emit, Origin, Stream
from processor.folds.stats import TenantStats, stats_of_snapshots
from processor.folds.stats_core import StatsCore
from producers.factory import EventFactory
from schemas.codec import decode_event, encode_event
from schemas.events import LifecycleEvent, MetricRecorded

HORIZON = 10_000
CONFIG = FoldConfig(window_ms=1000, grace_ms=2000, execution_horizon_ms=HORIZON, sweep_interval_ms=500,
                    marker_ms=10_000, evicted_keep_ms=200_000)


def execution(f: EventFactory, at: int, steps: int, outcome: str) -> list[LifecycleEvent]:
    started = f.start_execution("wf", "W", "t", "u", steps, occurred_at=at)
    events: list[LifecycleEvent] = [started]
    for s in range(steps):
        step = f.start_step(started.execution_id, f"s{s}", f"S{s}", occurred_at=at + 100 * s + 10)
        events += [step, f.step_event("step.completed", step.step_id, occurred_at=at + 100 * s + 60)]
    extra = {"error_message": "boom"} if outcome == "execution.failed" else {}
    events.append(f.end_execution(outcome, started.execution_id, occurred_at=at + 100 * steps + 10, **extra))
    return events


class Run:
    """A lifecycle core on partition 0 and a stats core fed from its stats changes."""

    def __init__(self) -> None:
        self.core = LifecycleCore({}, CONFIG)  # type: ignore[arg-type]
        self.stats = StatsCore({})  # type: ignore[arg-type]
        self.offset = 0
        self.rows: dict[str, Any] = {}
        self.samples: list[MetricRecorded] = []
        self.dead: list[Any] = []

    def feed(self, events: list[LifecycleEvent]) -> None:
        for event in events:
            for emit in self.core.process(event, Origin("t", 0, self.offset), encode_event(event), None):
                self._route(emit)
            self.offset += 1

    def _route(self, emit: Emit) -> None:
        if emit.stream is Stream.EXECUTION_STATE and emit.value is not None:
            row = decode_json(emit.value)
            self.rows[row["id"]] = row
        elif emit.stream is Stream.METRICS:
            sample = decode_event(emit.value or b"")
            assert isinstance(sample, MetricRecorded)
            self.samples.append(sample)
        elif emit.stream is Stream.STATS_CHANGES:
            self.stats.process(emit.value or b"", Origin("s", 0, self.offset), None)
        elif emit.stream is Stream.DEAD_LETTER:
            self.dead.append(decode_json(emit.value or b""))

    def stats_view(self) -> dict[str, Any]:
        return TenantStats.from_json(self.stats.store["t"]).view()  # type: ignore[index]


def decode_json(raw: bytes) -> Any:
    import orjson

    return orjson.loads(raw)


def filler(f: EventFactory, at: int) -> list[LifecycleEvent]:
    """A short execution that moves stream time to ``at`` (and evicts what ended a horizon before)."""
    return execution(f, at, 0, "execution.completed")


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 3), st.sampled_from(["execution.completed", "execution.failed"]), st.integers(0, 1 << 30),
       st.integers(0, 3))
def test_any_early_and_late_split_with_eviction_between_ends_as_all_at_once(steps: int, outcome: str, seed: int, rounds: int) -> None:
    rng = random.Random(seed)
    f = EventFactory()
    events = execution(f, 1_000, steps, outcome)
    eid = events[0].execution_id
    ending = events[-1]
    late = [e for e in events[:-1] if rng.random() < 0.5]
    early = [e for e in events if e not in late]  # holds the ending: the early state is evicted
    rng.shuffle(early)
    rng.shuffle(late)
    resent = rng.sample(events, min(2, len(events)))  # client resends among the late ones
    run = Run()
    run.feed(early)
    fillers: list[LifecycleEvent] = []
    at = 1_000
    parts = [late[i::rounds + 1] for i in range(rounds + 1)]
    for part in (p for p in parts if p):  # each part after another eviction
        at += 3 * HORIZON
        fill = filler(f, at)
        fillers += fill
        run.feed(fill)
        assert "evicted" in run.core.store[eid]  # type: ignore[operator]
        run.feed(part)
    run.feed(resent)
    at += 3 * HORIZON
    fill = filler(f, at)
    fillers += fill
    run.feed(fill)

    whole = None
    for event in events:
        whole = apply(whole, event)
    assert whole is not None and ending in events
    assert run.rows[eid] == snapshot(whole)
    assert not run.dead
    ids = [s.event_id for s in run.samples if s.labels.get("workflow") == "W" and s.occurred_at < 1_000 + HORIZON]
    assert sorted(set(ids)) == sorted(ids)  # each once (resends re-derive nothing new)
    assert sorted(ids) == sorted(s.event_id for s in derived_samples(whole))
    fill_rows = [run.rows[e.execution_id] for e in fillers if e.type == "execution.started"]
    assert run.stats_view() == stats_of_snapshots("t", [snapshot(whole), *fill_rows])


def test_a_never_seen_execution_hours_behind_is_folded_whole() -> None:
    f = EventFactory()
    run = Run()
    run.feed(filler(f, 5 * HORIZON))
    offline = [e for n in range(3) for e in execution(f, 1_000 + n * 500, 2, "execution.completed")]
    run.feed(offline)
    assert not run.dead
    for started in (e for e in offline if e.type == "execution.started"):
        whole = None
        for event in (e for e in offline if e.execution_id == started.execution_id):
            whole = apply(whole, event)
        assert whole is not None and run.rows[started.execution_id] == snapshot(whole)
    counts = [s for s in run.samples if s.metric_type == "workflow.execution.count"]
    assert len(counts) == 4
    assert run.stats_view()["completed"] == 4


def test_beyond_the_retention_is_a_dead_letter_that_says_why() -> None:
    f = EventFactory()
    run = Run()
    run.feed(filler(f, 1_000 + HORIZON + CONFIG.evicted_keep_ms + 1))
    run.feed(execution(f, 1_000, 0, "execution.completed"))
    assert [d["reason"] for d in run.dead] == ["late", "late"]
    assert "holds no state" in run.dead[0]["detail"]
