"""The processing cores on a dict store: redelivery, lateness, eviction, stats watermarks,
window closing, and crash recovery (lost writes, lost outputs, redelivered inputs)."""

from __future__ import annotations

import copy
import math
import random
from collections import defaultdict
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.folds.config import FoldConfig
from processor.folds.lifecycle_core import LifecycleCore
from processor.folds.metrics_core import MetricsCore
from processor.folds.records import Emit, Origin, Stream
from processor.folds.stats import TenantStats, stats_of_snapshots
from processor.folds.stats_core import StatsCore
from producers.factory import EventFactory
from producers.simulator import ScenarioConfig, generate_scenario
from schemas.codec import encode_event
from schemas.events import LifecycleEvent, MetricRecorded
from tests import oracle
from tests.unit.scenarios import lifecycle_scenarios, metric_scenarios

CONFIG = FoldConfig(window_ms=1000, grace_ms=2000, execution_horizon_ms=10_000, sweep_interval_ms=500, marker_ms=10_000, evicted_keep_ms=10_000)


def origin(o: int, p: int = 0) -> Origin:
    return Origin("t", p, o)


def values(emits: list[Emit], stream: Stream) -> list[Any]:
    return [None if e.value is None else orjson.loads(e.value) for e in emits if e.stream is stream]


def feed(core: LifecycleCore, events: list[LifecycleEvent], start: int = 0, p: int = 0) -> list[Emit]:
    out: list[Emit] = []
    for o, e in enumerate(events, start):
        out += core.process(e, origin(o, p), encode_event(e), None)
    return out


# -- lifecycle -------------------------------------------------------------------------------


def test_redelivery_changes_nothing_and_publishes_again() -> None:
    f = EventFactory()
    started = f.start_execution("wf", "W", "t", "u", 1, occurred_at=100)
    done = f.end_execution("execution.completed", started.execution_id, occurred_at=200)
    core = LifecycleCore({}, CONFIG)  # type: ignore[arg-type]
    feed(core, [started, done])
    before = copy.deepcopy(core.store)
    again = core.process(started, origin(0), encode_event(started), None)  # offset 0 again
    assert core.store == before
    [state] = values(again, Stream.EXECUTION_STATE)
    assert state["status"] == "completed"
    assert values(again, Stream.STATS_CHANGES)[0]["status"] == "completed"
    assert {s["metric_type"] for s in values(again, Stream.METRICS)} == {"workflow.execution.count", "workflow.execution.duration"}


def test_late_events_go_to_the_dead_letter_topic() -> None:
    f = EventFactory()
    core = LifecycleCore({}, CONFIG)  # type: ignore[arg-type]
    fresh = f.start_execution("wf", "W", "t", "u", 1, occurred_at=50_000)
    stale = f.start_execution("wf", "W", "t", "u", 1, occurred_at=29_000)  # horizon + evicted_keep_ms behind
    out = feed(core, [fresh, stale])
    [dl] = values(out, Stream.DEAD_LETTER)
    assert dl["reason"] == "late" and dl["offset"] == 1
    assert stale.execution_id not in core.store  # type: ignore[operator]


def test_finished_executions_are_evicted_after_the_horizon() -> None:
    f = EventFactory()
    core = LifecycleCore({}, CONFIG)  # type: ignore[arg-type]
    a = f.start_execution("wf", "W", "t", "u", 1, occurred_at=1_000)
    a_done = f.end_execution("execution.completed", a.execution_id, occurred_at=2_000)
    b = f.start_execution("wf", "W", "t", "u", 1, occurred_at=13_000)  # stream time passes 2000 + horizon
    late_step = f.start_step(a.execution_id, "k", "K", occurred_at=2_500)
    out = feed(core, [a, a_done, b])
    assert core.store[a.execution_id]["evicted"] == 13_000  # type: ignore[index]
    out += feed(core, [late_step], start=3)
    tombstones = [e for e in out if e.stream is Stream.EXECUTION_STATE and e.value is None]
    assert [t.key for t in tombstones] == [a.execution_id.encode()]
    # the late step rehydrates it: the stats take its absorbed contribution back
    assert [v["op"] for v in values(out, Stream.STATS_CHANGES)] == ["set", "set", "set", "absorb", "reopen"]
    assert not values(out, Stream.DEAD_LETTER)
    assert core.store[a.execution_id]["re"] == [[2, 1, 3, ["completed", 1_000]]]  # type: ignore[index]
    # evicted again a horizon later; the marker and its state go evicted_keep_ms after that
    feed(core, [f.start_execution("wf", "W", "t", "u", 1, occurred_at=24_000)], start=10)
    assert "evicted" in core.store[a.execution_id]  # type: ignore[index]
    feed(core, [f.start_execution("wf", "W", "t", "u", 1, occurred_at=40_000)], start=11)
    assert a.execution_id not in core.store  # type: ignore[operator]


def test_stream_time_is_recovered_from_the_store() -> None:
    f = EventFactory()
    store: dict[str, Any] = {}
    feed(LifecycleCore(store, CONFIG), [f.start_execution("wf", "W", "t", "u", 1, occurred_at=90_000)])  # type: ignore[arg-type]
    restarted = LifecycleCore(store, CONFIG)  # type: ignore[arg-type]
    assert restarted.times.get(0) == 90_000
    assert restarted.times.get(1) == 0


# -- the whole lifecycle pipeline under crashes -------------------------------------------------


class Pipeline:
    """Lifecycle core -> stats-changes (3 partitions, by tenant) -> stats core, failing the way
    Kafka fails: the table's changelog (one partition here) keeps a prefix of its writes since
    the last commit, each stats-changes partition keeps a prefix of its records since the last
    commit, and the inputs after the last commit are delivered again."""

    def __init__(self, horizon_ms: int) -> None:
        self.exec_store: dict[str, Any] = {}
        self.stats_store: dict[str, Any] = {}
        config = FoldConfig(window_ms=1000, grace_ms=2000, execution_horizon_ms=horizon_ms, sweep_interval_ms=200,
                            marker_ms=60_000)
        self.lifecycle = LifecycleCore(self.exec_store, config)  # type: ignore[arg-type]
        self.stats = StatsCore(self.stats_store)  # type: ignore[arg-type]
        self.stats_log: defaultdict[int, list[bytes]] = defaultdict(list)
        self.metrics_log: list[bytes] = []
        """The derived samples published (one partition here), which a crash truncates too."""
        self.states: dict[bytes, Any] = {}

    def run(self, events: list[LifecycleEvent], rng: random.Random | None) -> None:
        """Process ``events`` in offset order; with ``rng``, commit rarely and crash sometimes."""
        committed = 0
        # tables[k]: the table after the first k events (stored values are never mutated, so
        # shallow copies are faithful)
        tables = [dict(self.exec_store)]
        outputs = [{p: len(v) for p, v in self.stats_log.items()}]
        samples = [len(self.metrics_log)]
        o = 0
        while o < len(events):
            if rng is not None and o > committed and rng.random() < 0.03:
                kept = rng.randint(committed, o)  # the changelog kept the writes of events < kept
                self.exec_store.clear()
                self.exec_store.update(tables[kept])
                for p, log in self.stats_log.items():
                    del log[rng.randint(outputs[committed].get(p, 0), len(log)):]
                del self.metrics_log[rng.randint(samples[committed], len(self.metrics_log)):]
                self.lifecycle.forget()
                del tables[committed + 1:], outputs[committed + 1:], samples[committed + 1:]
                o = committed  # redelivery from the last commit
                continue
            for emit in self.lifecycle.process(events[o], origin(o), encode_event(events[o]), None):
                self._route(emit)
            o += 1
            tables.append(dict(self.exec_store))
            outputs.append({p: len(v) for p, v in self.stats_log.items()})
            samples.append(len(self.metrics_log))
            if rng is not None and rng.random() < 0.03:
                committed = o
        self._drain()

    def _route(self, emit: Emit) -> None:
        if emit.stream is Stream.STATS_CHANGES:
            assert emit.key is not None and emit.value is not None
            self.stats_log[hash(emit.key) % 3].append(emit.value)
        elif emit.stream is Stream.EXECUTION_STATE and emit.value is not None:
            self.states[emit.key or b""] = orjson.loads(emit.value)
        elif emit.stream is Stream.METRICS:
            assert emit.value is not None
            self.metrics_log.append(emit.value)

    def derived(self) -> dict[str, Any]:
        """The derived samples published, by event id (the metrics fold counts each id once)."""
        return {sample["event_id"]: sample for sample in map(orjson.loads, self.metrics_log)}

    def _drain(self) -> None:
        for p, log in sorted(self.stats_log.items()):
            for n, raw in enumerate(log):
                self.stats.process(raw, origin(n, p), None)


def lifecycle_scenario(seed: int) -> list[LifecycleEvent]:
    events = generate_scenario(ScenarioConfig(seed=seed, executions=25, tenants=3, span_ms=60_000))
    lifecycle = [e for e in events if isinstance(e, LifecycleEvent)]
    rng = random.Random(seed)
    lifecycle += rng.sample(lifecycle, 10)  # client resends (same event id, new offset)
    rng.shuffle(lifecycle)
    return lifecycle


def stats_views(pipeline: Pipeline) -> dict[str, dict[str, Any]]:
    return {t: TenantStats.from_json(v).view() for t, v in pipeline.stats_store.items()}


def expected_stats(states: dict[bytes, Any]) -> dict[str, dict[str, Any]]:
    tenants = {s["tenant_id"] for s in states.values()}
    return {t: stats_of_snapshots(t, [s for s in states.values() if s["tenant_id"] == t]) for t in tenants}


def oracle_stats(events: list[LifecycleEvent]) -> dict[str, dict[str, Any]]:
    executions = list(oracle.expected_executions(events).values())
    return {t: {"tenant_id": t, **oracle.expected_stats(executions, t)} for t in {x["tenant_id"] for x in executions}}


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000))
def test_crashes_change_no_execution_state(seed: int) -> None:
    events = lifecycle_scenario(seed % 7)
    clean = Pipeline(horizon_ms=3_600_000)
    clean.run(events, None)
    crashed = Pipeline(horizon_ms=3_600_000)
    crashed.run(events, random.Random(seed))
    assert crashed.states == clean.states
    assert stats_views(crashed) == stats_views(clean) == expected_stats(clean.states)


@settings(max_examples=150, deadline=None)
@given(lifecycle_scenarios(), st.integers(0, 10_000))
def test_generated_executions_fold_to_the_oracle_under_crashes(events: list[LifecycleEvent], seed: int) -> None:
    """Generated executions (steps, retries, failures, cancellations, updates, missing starts,
    several endings, equal timestamps, unicode everywhere), resent and in any order: the
    published states and the stats are what the independent oracle says, crashes or not."""
    clean = Pipeline(horizon_ms=3_600_000)
    clean.run(events, None)
    published = {k.decode(): {f: v for f, v in state.items() if f != "stale_since"} for k, state in clean.states.items()}
    problems = oracle.differences(published, oracle.expected_executions(events))
    assert not problems, problems
    assert stats_views(clean) == oracle_stats(events)
    crashed = Pipeline(horizon_ms=3_600_000)
    crashed.run(events, random.Random(seed))
    assert crashed.states == clean.states
    assert stats_views(crashed) == stats_views(clean)
    assert crashed.derived() == clean.derived()


@settings(max_examples=150, deadline=None)
@given(lifecycle_scenarios(), st.integers(0, 10_000))
def test_crashes_change_nothing_even_when_evictions_are_redelivered(events: list[LifecycleEvent], seed: int) -> None:
    """A horizon shorter than the stretches between commits: executions are evicted (their
    contributions absorbed) while their events are still uncommitted, so redeliveries reach
    evicted executions, and lateness is decided near the crash point."""
    clean = Pipeline(horizon_ms=1_500)
    clean.run(events, None)
    crashed = Pipeline(horizon_ms=1_500)
    crashed.run(events, random.Random(seed))
    assert crashed.states == clean.states
    assert stats_views(crashed) == stats_views(clean) == expected_stats(clean.states)
    assert crashed.derived() == clean.derived()


def test_a_crash_after_an_eviction_persisted_loses_no_derived_sample() -> None:
    """The table kept the eviction, the crash lost the derived samples published before it:
    redelivering the execution's events sends them again (a CI run of the live-equals-replay
    proof lost a step's samples this way)."""
    f = EventFactory()
    start = f.start_execution("wf", "W", "t", "u", 1, occurred_at=1000)
    eid = start.execution_id
    step = f.start_step(eid, "k", "K", occurred_at=1100)
    events = [start, step, f.step_event("step.completed", step.step_id, execution_id=eid, occurred_at=1500),
              f.end_execution("execution.completed", eid, occurred_at=1600),
              f.start_execution("wf", "W", "t", "u", 1, occurred_at=30_000)]  # far ahead: the first is evicted
    clean = values(feed(LifecycleCore({}, CONFIG), events), Stream.METRICS)
    store: dict[str, Any] = {}
    core = LifecycleCore(store, CONFIG)  # type: ignore[arg-type]
    feed(core, events)  # everything it published is lost
    assert "evicted" in store[eid]
    core.forget()
    again = values(feed(core, events), Stream.METRICS)
    assert {s["event_id"]: s for s in again} == {s["event_id"]: s for s in clean}
    assert {s["metric_type"] for s in clean} >= {"workflow.step.count", "workflow.step.duration"}


# -- metrics ---------------------------------------------------------------------------------


def sample(f: EventFactory, at: int, value: float = 1.0, **labels: str) -> MetricRecorded:
    return f.record("api.request.duration", value, unit="ms", labels=labels or {"m": "x"}, tenant_id="t", occurred_at=at)


def feed_metrics(core: MetricsCore, samples: list[MetricRecorded], start: int = 0) -> list[Emit]:
    out: list[Emit] = []
    for o, s in enumerate(samples, start):
        out += core.process(s, origin(o), encode_event(s), None)
    return out


def test_windows_close_by_stream_time_and_late_samples_are_dead_letters() -> None:
    f = EventFactory()
    core = MetricsCore({}, CONFIG)  # type: ignore[arg-type]
    early = [sample(f, 100, 1), sample(f, 900, 3)]
    out = feed_metrics(core, early + [sample(f, 3_100, 5), sample(f, 500, 7)])
    finals = values(out, Stream.METRIC_ROLLUPS)
    assert [(r["window_start"], r["count"], r["sum"], r["final"]) for r in finals] == [(0, 2, 4.0, True)]
    [dl] = values(out, Stream.DEAD_LETTER)
    assert dl["reason"] == "late" and dl["offset"] == 3


def test_resent_samples_count_once_and_redeliveries_change_nothing() -> None:
    f = EventFactory()
    core = MetricsCore({}, CONFIG)  # type: ignore[arg-type]
    s = sample(f, 100, 2)
    feed_metrics(core, [s, s, sample(f, 200, 4)])
    core.process(s, origin(0), encode_event(s), None)  # redelivered offset
    [rollup] = values(core.flush(), Stream.METRIC_ROLLUPS)
    assert (rollup["count"], rollup["sum"], rollup["final"]) == (2, 6.0, False)
    assert core.counters == {"applied": 2, "duplicate": 1, "redelivered": 1}
    assert core.flush() == []  # coalesced: nothing changed since


def test_idle_windows_are_published_final_by_the_wall_clock_and_stay_open() -> None:
    f = EventFactory()
    core = MetricsCore({}, CONFIG)  # type: ignore[arg-type]
    feed_metrics(core, [sample(f, 100, 1)])
    assert core.close_idle(now_ms=2_999) == []
    [final] = values(core.close_idle(now_ms=3_000), Stream.METRIC_ROLLUPS)
    assert final["final"] and final["count"] == 1
    assert core.close_idle(now_ms=4_000) == []
    feed_metrics(core, [sample(f, 200, 1)], start=1)  # not late by stream time: still counts
    [again] = values(core.flush(), Stream.METRIC_ROLLUPS)
    assert again["count"] == 2 and not again["final"]


def test_finish_publishes_every_open_window_final_once_idle() -> None:
    f = EventFactory()
    core = MetricsCore({}, CONFIG)  # type: ignore[arg-type]
    feed_metrics(core, [sample(f, 100), sample(f, 1_100), sample(f, 1_200, m="y")])
    finals = values(core.finish(now_ms=3_500), Stream.METRIC_ROLLUPS)
    assert sorted((r["window_start"], r["labels"]["m"], r["final"]) for r in finals) == [(0, "x", True), (1000, "x", False), (1000, "y", False)]



def test_a_window_published_final_stays_final_after_a_redelivery() -> None:
    f = EventFactory()
    core = MetricsCore({}, CONFIG)  # type: ignore[arg-type]
    s = sample(f, 100, 1)
    feed_metrics(core, [s])
    core.flush()
    assert values(core.close_idle(now_ms=10_000), Stream.METRIC_ROLLUPS)[0]["final"]
    core.process(s, origin(0), encode_event(s), None)  # redelivered after a restart
    published = values(core.flush() + core.close_idle(now_ms=10_000), Stream.METRIC_ROLLUPS)
    assert published and published[-1]["final"]


def test_the_rollup_timer_publishes_a_changed_idle_window_once_final() -> None:
    """The worker's timer runs close_idle before flush: a window that changed and is already
    idle on the wall clock (a backlog of old samples) is one final record, not a non-final one
    the final one replaces at once; a window still open is one non-final record."""
    f = EventFactory()
    core = MetricsCore({}, CONFIG)  # type: ignore[arg-type]
    feed_metrics(core, [sample(f, 100, 1), sample(f, 1_500, 2)])  # stream time 1,500: both windows open
    published = values(core.close_idle(now_ms=3_500) + core.flush(), Stream.METRIC_ROLLUPS)
    assert sorted((r["window_start"], r["final"]) for r in published) == [(0, True), (1_000, False)]
    assert values(core.close_idle(now_ms=3_500) + core.flush(), Stream.METRIC_ROLLUPS) == []


class MetricsPipeline:
    """The metrics core under the same failure model as :class:`Pipeline`; its outputs (rollups
    and dead letters) on one partition keep a prefix of what followed the last commit."""

    def __init__(self) -> None:
        self.store: dict[str, Any] = {}
        config = FoldConfig(window_ms=1000, grace_ms=2000, execution_horizon_ms=10_000, sweep_interval_ms=500, marker_ms=60_000)
        self.core = MetricsCore(self.store, config)  # type: ignore[arg-type]
        self.outputs: list[Emit] = []

    def run(self, samples: list[MetricRecorded], rng: random.Random | None) -> None:
        committed = 0
        tables = [dict(self.store)]
        lengths = [0]
        o = 0
        while o < len(samples):
            if rng is not None and o > committed and rng.random() < 0.03:
                kept = rng.randint(committed, o)
                self.store.clear()
                self.store.update(tables[kept])
                del self.outputs[rng.randint(lengths[committed], len(self.outputs)):]
                self.core.forget()
                self.core.dirty.clear()
                del tables[committed + 1:], lengths[committed + 1:]
                o = committed
                continue
            self.outputs += self.core.process(samples[o], origin(o), encode_event(samples[o]), None)
            if rng is not None and rng.random() < 0.1:
                self.outputs += self.core.flush()
            o += 1
            tables.append(dict(self.store))
            lengths.append(len(self.outputs))
            if rng is not None and rng.random() < 0.03:
                committed = o
        self.core.mark_all_dirty()
        self.outputs += self.core.flush() + self.core.finish(now_ms=0)

    def view(self) -> tuple[dict[bytes, Any], dict[bytes, Any]]:
        rollups: dict[bytes, Any] = {}
        dead: dict[bytes, Any] = {}
        for emit in self.outputs:
            target = rollups if emit.stream is Stream.METRIC_ROLLUPS else dead
            target[emit.key or b""] = orjson.loads(emit.value or b"null")
        return rollups, dead


def metric_scenario(seed: int) -> list[MetricRecorded]:
    rng = random.Random(seed)
    events = generate_scenario(ScenarioConfig(seed=seed, executions=20, tenants=2, span_ms=30_000, start_ms=100_000,
                                              system_sample_interval_ms=500))
    samples = [e for e in events if isinstance(e, MetricRecorded)]
    samples += rng.sample(samples, 10)  # resends
    keyed = sorted(samples, key=lambda s: s.occurred_at + rng.uniform(-4_000, 4_000))  # some beyond the grace
    return keyed


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000))
def test_metrics_crashes_change_no_rollup_and_no_dead_letter(seed: int) -> None:
    samples = metric_scenario(seed % 5)
    clean = MetricsPipeline()
    clean.run(samples, None)
    crashed = MetricsPipeline()
    crashed.run(samples, random.Random(seed))
    clean_rollups, clean_dead = clean.view()
    crashed_rollups, crashed_dead = crashed.view()
    assert clean_dead and any(r["final"] for r in clean_rollups.values())
    assert crashed_dead == clean_dead
    assert crashed_rollups == clean_rollups


@settings(max_examples=150, deadline=None)
@given(metric_scenarios(), st.integers(0, 10_000))
def test_generated_samples_roll_up_to_the_oracle_under_crashes(samples: list[MetricRecorded], seed: int) -> None:
    """Generated series (tenants, unicode labels, values from tiny to large, of either sign),
    resent and out of order, some beyond the grace: every sample is rolled up once or
    dead-lettered as late, each window is what the oracle computes from its samples, and crashes
    change nothing."""
    clean = MetricsPipeline()
    clean.run(samples, None)
    rollups, dead = clean.view()
    assert {d["reason"] for d in dead.values()} <= {"late"}
    late = {d["offset"] for d in dead.values()}
    kept = [s for o, s in enumerate(samples) if o not in late]  # the oracle drops resends itself
    want = oracle.expected_rollups(kept, CONFIG.window_ms)
    got = {key.decode(): r for key, r in rollups.items()}
    assert set(got) == set(want)
    for key, r in got.items():
        w = want[key]
        assert (r["count"], r["min"], r["max"]) == (w["count"], w["min"], w["max"]), key
        assert math.isclose(r["sum"], w["sum"], rel_tol=1e-9, abs_tol=1e-9 * oracle.magnitude(kept)), key
        for name in oracle.QUANTILES:
            # the sketch's documented bound: 1% relative, magnitudes below 1e-9 count as zero
            assert abs(r[name] - w[name]) <= 0.01 * abs(w[name]) + 1e-9, (key, name, r[name], w[name])
    crashed = MetricsPipeline()
    crashed.run(samples, random.Random(seed))
    assert crashed.view() == (rollups, dead)


# -- liveness ----------------------------------------------------------------------------------


def test_a_quiet_execution_is_flagged_stale_and_its_next_event_clears_it() -> None:
    now = [1_000_000]
    store: dict[str, Any] = {}
    core = LifecycleCore(store, FoldConfig(), clock=lambda: now[0], stale_after_ms=60_000)  # type: ignore[arg-type]
    f = EventFactory()
    quiet, busy, done = (f.start_execution("wf", "flow", "t", "u", 3, execution_id=e) for e in ("quiet", "busy", "done"))
    feed(core, [quiet, busy, done, f.end_execution("execution.completed", "done")])
    assert core.check_stale(0, now[0]) == []  # builds the index: nothing is due
    now[0] += 30_000
    feed(core, [f.update_execution("busy", current_step="s1")], start=10)
    now[0] += 40_000  # quiet: 70 s without an event; busy: 40 s; done: finished
    emits = core.check_stale(0, now[0])
    states = values(emits, Stream.EXECUTION_STATE)
    alerts = values(emits, Stream.ALERTS)
    assert [(s["id"], s["stale_since"]) for s in states] == [("quiet", now[0])]
    assert [(a["execution_id"], a["status"], a["kind"], a["rule"]) for a in alerts] == [("quiet", "firing", "stale", "execution.stale")]
    assert core.check_stale(0, now[0] + 1_000) == []  # flagged once
    now[0] += 5_000
    emits = feed(core, [f.update_execution("quiet", current_step="s2")], start=20)
    assert "stale_since" not in values(emits, Stream.EXECUTION_STATE)[0]
    cleared = values(emits, Stream.ALERTS)
    assert [(a["id"], a["status"], a["resolved_at"]) for a in cleared] == [(alerts[0]["id"], "resolved", now[0])]


def test_after_a_restart_stale_alerts_are_published_again() -> None:
    now = [1_000_000]
    store: dict[str, Any] = {}
    core = LifecycleCore(store, FoldConfig(), clock=lambda: now[0], stale_after_ms=60_000)  # type: ignore[arg-type]
    f = EventFactory()
    feed(core, [f.start_execution("wf", "flow", "t", "u", 3, execution_id="quiet")])
    core.check_stale(0, now[0])
    now[0] += 61_000
    first = values(core.check_stale(0, now[0]), Stream.ALERTS)
    restarted = LifecycleCore(store, FoldConfig(), clock=lambda: now[0], stale_after_ms=60_000)  # type: ignore[arg-type]
    assert values(restarted.check_stale(0, now[0] + 5_000), Stream.ALERTS) == first
    assert LifecycleCore(store, FoldConfig()).check_stale(0, now[0]) == []  # no clock (replay): no liveness
