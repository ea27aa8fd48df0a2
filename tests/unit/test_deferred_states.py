"""The worker's lifecycle core makes each execution's state record once per batch
(``defer_states``, ``take_states``): what a batch publishes, coalesced, is what it published when
every event made its record - the same newest state per execution, the tombstone of an
evicted execution after its last state, the same other records - whatever the batches, the
evictions and rehydrations in them, and a fold that fails mid-batch."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from processor.folds.config import FoldConfig
from processor.folds.lifecycle_core import LifecycleCore
from processor.folds.records import Emit, Origin, Stream
from processor.runtime.coalesce import coalesce
from schemas.codec import encode_event, event_from_dict
from schemas.events import LifecycleEvent
from tests.unit.scenarios import lifecycle_scenarios

CONFIG = FoldConfig(window_ms=1000, grace_ms=2000, execution_horizon_ms=1_500, sweep_interval_ms=200,
                    marker_ms=10_000, evicted_keep_ms=10_000)
"""A short horizon: executions are evicted, and rehydrated by their later events, inside batches."""


def _run(events: list[LifecycleEvent], cuts: list[int], *, defer: bool, fail_at: set[int]) -> list[list[Emit]]:
    core = LifecycleCore({}, CONFIG, defer_states=defer)
    out: list[list[Emit]] = []
    emits: list[Emit] = []
    for o, event in enumerate(events):
        if o in fail_at:  # a fold that raises after its writes: all of them dropped, a dead letter
            original = core._process

            def failing(*args: Any, _original: Any = original) -> list[Emit]:
                _original(*args)
                raise RuntimeError("injected")

            core._process = failing  # type: ignore[method-assign]
            emits += core.process(event, Origin("t", 0, o), encode_event(event), None)
            core._process = original  # type: ignore[method-assign]
        else:
            emits += core.process(event, Origin("t", 0, o), encode_event(event), None)
        if o + 1 in cuts or o + 1 == len(events):
            out.append(coalesce(emits + core.take_states()))
            emits = []
    return out


def _by_stream(batch: list[Emit]) -> dict[Stream, list[tuple[bytes | None, bytes | None]]]:
    grouped: dict[Stream, list[tuple[bytes | None, bytes | None]]] = {}
    for emit in batch:
        grouped.setdefault(emit.stream, []).append((emit.key, emit.value))
    return grouped


def _state_records(batch: list[Emit]) -> dict[bytes | None, list[bytes | None]]:
    """Per execution, its state records in order (a value, then maybe a tombstone, maybe a value)."""
    per_key: dict[bytes | None, list[bytes | None]] = {}
    for emit in batch:
        if emit.stream is Stream.EXECUTION_STATE:
            per_key.setdefault(emit.key, []).append(emit.value)
    return per_key


@settings(max_examples=200, deadline=None)
@given(lifecycle_scenarios(), st.integers(0, 10_000))
def test_deferred_state_records_publish_what_per_event_records_did(events: list[LifecycleEvent], seed: int) -> None:
    rng = random.Random(seed)
    # late copies of some events far ahead in the log: stream time has moved on, executions were
    # evicted, and these bring them back (rehydration) inside a batch
    tail = [*events, *rng.sample(events, min(len(events), 3))]
    cuts = sorted(rng.sample(range(1, len(tail) + 1), min(len(tail), rng.randint(0, 4))))
    fail_at = set(rng.sample(range(len(tail)), min(len(tail), rng.randint(0, 2))))
    each = _run(tail, cuts, defer=False, fail_at=fail_at)
    deferred = _run(tail, cuts, defer=True, fail_at=fail_at)
    assert len(each) == len(deferred)
    for per_event, per_batch in zip(each, deferred):
        a, b = _by_stream(per_event), _by_stream(per_batch)
        assert {s: v for s, v in a.items() if s is not Stream.EXECUTION_STATE} == \
               {s: v for s, v in b.items() if s is not Stream.EXECUTION_STATE}
        # the same newest state and tombstones per execution; a batch may publish an unchanged
        # state once more (a failed fold's execution: its state as it was)
        sa, sb = _state_records(per_event), _state_records(per_batch)
        assert set(sa) <= set(sb)
        for key, records in sa.items():
            assert sb[key] == records, key
        for key in set(sb) - set(sa):
            assert len(sb[key]) == 1 and sb[key][0] is not None


def _event(type_: str, execution: str, at: int, **fields: Any) -> LifecycleEvent:
    event = event_from_dict({"type": type_, "version": 1, "event_id": f"{execution}-{type_}", "occurred_at": at,
                             "tenant_id": "t", "execution_id": execution, **fields})
    assert isinstance(event, LifecycleEvent)
    return event


def test_an_execution_evicted_in_its_batch_publishes_its_last_state_before_its_tombstone() -> None:
    started = _event("execution.started", "e1", 100_000, workflow_id="w", workflow_name="W", user_id="u", steps_total=0)
    done = _event("execution.completed", "e1", 100_010)
    later = _event("execution.started", "e2", 200_000, workflow_id="w", workflow_name="W", user_id="u", steps_total=0)  # evicts e1
    [batch] = _run([started, done, later], [], defer=True, fail_at=set())
    records = _state_records(batch)[b"e1"]
    assert len(records) == 2 and records[1] is None
    assert b'"completed"' in (records[0] or b"")
    assert _state_records(batch)[b"e2"] == [_state_records(_run([started, done, later], [], defer=False,
                                                                fail_at=set())[0])[b"e2"][0]]
