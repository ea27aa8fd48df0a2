"""Replay's compact table (:mod:`processor.runtime.replay_store`): a store like a dict, whose
entries are bytes with a few kept decoded; the cores fold over it exactly as over a dict."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.folds.config import FoldConfig
from processor.folds.lifecycle_core import LifecycleCore
from processor.folds.metrics_core import MetricsCore
from processor.folds.records import Origin
from processor.runtime.replay_store import CompactStore
from producers.simulator import ScenarioConfig, generate_scenario
from schemas.codec import encode_event
from schemas.events import LifecycleEvent, MetricRecorded
from tests.unit.scenarios import metric_scenarios

SMALL = FoldConfig(execution_horizon_ms=60_000, sweep_interval_ms=1_000, marker_ms=30_000, evicted_keep_ms=60_000,
                   window_ms=1_000, grace_ms=2_000)
"""Short horizons, so that the scenarios evict, close and drop markers."""


def test_a_compact_store_reads_back_what_was_written_and_forgets_what_was_deleted() -> None:
    store = CompactStore(hot=2)
    for n in range(5):
        store[f"k{n}"] = {"n": n, "xs": [n] * n}
    assert [store.get(f"k{n}") for n in range(5)] == [{"n": n, "xs": [n] * n} for n in range(5)]
    assert store.get("k4") is store.get("k4")  # a hot entry is the stored object itself
    del store["k1"]
    assert store.get("k1") is None and "k1" not in store and len(store) == 4
    assert dict(store.items()) == {f"k{n}": {"n": n, "xs": [n] * n} for n in (0, 2, 3, 4)}
    store.set_encoded("k0", b'{"n": 9}')
    assert store.get("k0") == {"n": 9}


def _entries(core: LifecycleCore | MetricsCore) -> object:
    """The core's table as JSON holds it (a live table and replay's compact one both keep JSON)."""
    return orjson.loads(orjson.dumps(dict(core.store.items())))


def _fold(core: LifecycleCore | MetricsCore, events: list[LifecycleEvent] | list[MetricRecorded]) -> list[object]:
    out: list[object] = []
    for offset, event in enumerate(events):
        raw = encode_event(event)
        out += core.process(event, Origin("t", 0, offset), raw, None)  # type: ignore[arg-type]
    return out


@settings(max_examples=3, deadline=None)
@given(st.integers(0, 1_000), st.sampled_from([1, 3, 10_000]))
def test_the_lifecycle_core_folds_the_same_over_a_compact_store(seed: int, hot: int) -> None:
    events = [e for e in generate_scenario(ScenarioConfig(seed=seed, executions=25, span_ms=600_000)) if isinstance(e, LifecycleEvent)]
    over_dict, over_compact = LifecycleCore({}, SMALL, derive=False), LifecycleCore(CompactStore(hot=hot), SMALL, derive=False)
    assert _fold(over_dict, events) == _fold(over_compact, events)
    assert _entries(over_dict) == _entries(over_compact)


@settings(max_examples=10, deadline=None)
@given(metric_scenarios(span_ms=20_000, jitter_ms=4_000), st.sampled_from([1, 3, 10_000]))
def test_the_metrics_core_folds_the_same_over_a_compact_store(samples: list[MetricRecorded], hot: int) -> None:
    over_dict, over_compact = MetricsCore({}, SMALL), MetricsCore(CompactStore(hot=hot), SMALL)
    assert _fold(over_dict, samples) == _fold(over_compact, samples)
    assert over_dict.finish(10**13) == over_compact.finish(10**13)
    assert _entries(over_dict) == _entries(over_compact)
