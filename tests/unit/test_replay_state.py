"""Replay's spilling tables (:mod:`processor.runtime.replay_state`): a store like a dict, whose
entries the folds are done with live in a scratch SQLite file; the cores fold over it exactly as
over a dict, with lateness, eviction, rehydration and reopened windows."""

from __future__ import annotations

import gc
import random
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.folds.config import FoldConfig
from processor.folds.derived import derived_samples
from processor.folds.execution import ExecutionState, apply
from processor.folds.lifecycle_core import LifecycleCore
from processor.folds.metrics_core import MetricsCore
from processor.folds.records import Origin
from processor.runtime.replay_state import SpillFile, lifecycle_cold, metrics_cold
from producers.simulator import ScenarioConfig, generate_scenario
from schemas.codec import encode_event
from schemas.events import LifecycleEvent, MetricRecorded
from tests.unit.scenarios import metric_scenarios

SMALL = FoldConfig(execution_horizon_ms=60_000, sweep_interval_ms=1_000, marker_ms=30_000, evicted_keep_ms=60_000,
                   window_ms=1_000, grace_ms=2_000)
"""Short horizons, so that the scenarios evict, close, rehydrate and drop markers."""


@pytest.fixture
def spill(tmp_path: Path) -> Iterator[SpillFile]:
    file = SpillFile(tmp_path / "state")
    yield file
    file.close()
    assert not (tmp_path / "state").exists()


def test_a_spill_store_keeps_cold_entries_on_disk_and_reads_them_back(spill: SpillFile) -> None:
    store = spill.store(lambda entry: "old" in entry)
    store["a"] = {"n": 1}
    store["b"] = {"n": 2, "old": True}
    store["\x00late/0/1"] = {"n": 3, "old": True}  # never spilled
    assert store.hot == 2 and store.spilled == 1 and len(store) == 3
    assert store.get("b") == {"n": 2, "old": True} and store.get("missing") is None
    hot = store.get("a")
    assert store.get("a") is hot  # a hot entry is the stored object itself
    store["b"] = {"n": 4, "old": True}
    assert store.get("b") == {"n": 4, "old": True} and store.spilled == 1
    store["a"] = {"n": 5, "old": True}
    store["b"] = {"n": 6}  # back in memory: gone from disk
    assert store.spilled == 1 and store.hot == 2
    assert dict(store.items()) == {"a": {"n": 5, "old": True}, "b": {"n": 6}, "\x00late/0/1": {"n": 3, "old": True}}
    del store["a"]
    del store["b"]
    assert store.get("a") is None and store.get("b") is None and len(store) == 1
    with pytest.raises(KeyError):
        del store["a"]
    store.set_encoded("c", b'{"old": 1}')
    spill.commit()
    assert store.get("c") == {"old": 1} and store.spilled == 1


def _entries(core: LifecycleCore | MetricsCore) -> object:
    """The core's table as JSON holds it."""
    return orjson.loads(orjson.dumps(dict(sorted(core.store.items()))))


def _fold(core: LifecycleCore | MetricsCore, events: list[LifecycleEvent] | list[MetricRecorded]) -> list[object]:
    out: list[object] = []
    for offset, event in enumerate(events):
        out += core.process(event, Origin("t", 0, offset), encode_event(event), None)  # type: ignore[arg-type]
    return out


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 1_000), st.sampled_from([0, 5, 40]))
def test_the_lifecycle_core_folds_the_same_over_a_spill_store(spill: SpillFile, seed: int, shuffled: int) -> None:
    events = [e for e in generate_scenario(ScenarioConfig(seed=seed, executions=25, span_ms=600_000)) if isinstance(e, LifecycleEvent)]
    late = random.Random(seed)
    for _ in range(shuffled):  # some events far from their place: late, rehydrating, dead-lettered
        i, j = late.randrange(len(events)), late.randrange(len(events))
        events[i], events[j] = events[j], events[i]
    over_dict = LifecycleCore({}, SMALL, derive=False)  # type: ignore[arg-type]
    over_spill = LifecycleCore(spill.store(lifecycle_cold), SMALL, derive=False)
    assert _fold(over_dict, events) == _fold(over_spill, events)
    assert _entries(over_dict) == _entries(over_spill)
    assert over_dict.counters == over_spill.counters
    assert over_spill.store.inner.spilled > 0  # type: ignore[attr-defined]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(metric_scenarios(span_ms=20_000, jitter_ms=4_000))
def test_the_metrics_core_folds_the_same_over_a_spill_store(spill: SpillFile, samples: list[MetricRecorded]) -> None:
    over_dict, over_spill = MetricsCore({}, SMALL), MetricsCore(spill.store(metrics_cold), SMALL)  # type: ignore[arg-type]
    assert _fold(over_dict, samples) == _fold(over_spill, samples)
    assert over_dict.finish(10**13) == over_spill.finish(10**13)
    assert _entries(over_dict) == _entries(over_spill)
    assert over_dict.counters == over_spill.counters


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 1_000), st.sampled_from([0, 10, 60]))
def test_the_derived_lane_reopens_the_same_windows_over_a_spill_store(spill: SpillFile, seed: int, shuffled: int) -> None:
    states: dict[str, ExecutionState] = {}
    for event in generate_scenario(ScenarioConfig(seed=seed, executions=25, span_ms=600_000)):
        if isinstance(event, LifecycleEvent):
            states[event.execution_id] = apply(states.get(event.execution_id), event)
    samples = sorted((s for state in states.values() for s in derived_samples(state)), key=lambda s: s.occurred_at)
    late = random.Random(seed)
    for _ in range(shuffled):  # some samples long after their window closed: reopened, or late_derived
        i, j = late.randrange(len(samples)), late.randrange(len(samples))
        samples[i], samples[j] = samples[j], samples[i]
    over_dict, over_spill = MetricsCore({}, SMALL), MetricsCore(spill.store(metrics_cold), SMALL)  # type: ignore[arg-type]
    assert _fold(over_dict, samples) == _fold(over_spill, samples)
    assert over_dict.finish(10**13) == over_spill.finish(10**13)
    assert _entries(over_dict) == _entries(over_spill)
    assert over_dict.counters == over_spill.counters
    assert over_spill.store.inner.spilled > 0  # type: ignore[attr-defined]


def test_replay_collects_cycles_less_often_while_it_reads_and_restores_the_thresholds() -> None:
    from processor.runtime.collector import FOLDING_THRESHOLDS, fewer_collections

    before = gc.get_threshold()
    with pytest.raises(RuntimeError), fewer_collections():
        assert gc.get_threshold() == FOLDING_THRESHOLDS
        raise RuntimeError("a failed replay")
    assert gc.get_threshold() == before
