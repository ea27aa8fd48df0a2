"""Records on a partition their key does not hash to: the routing decision, forwarding home, and
the cores' redelivery check with forwarded copies (offsets of two partitions never compared)."""

from __future__ import annotations

import random
from functools import reduce
from typing import Any

import orjson
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.folds.config import FoldConfig
from processor.folds.decode import decode_input
from processor.folds.execution import apply, snapshot
from processor.folds.lifecycle_core import LifecycleCore
from processor.folds.metrics_core import MetricsCore
from processor.folds.raw_gate import RawSampleGate
from processor.folds.records import (
    FORWARDED_FROM,
    Emit,
    Origin,
    Stream,
    dead_letter,
    origin_of,
)
from processor.folds.routing import Router, contract_key, home_of
from processor.folds.windows import sample_series
from producers.factory import EventFactory
from schemas.codec import encode_event
from schemas.events import Event, LifecycleEvent
from schemas.ids import uuid7
from schemas.topics import series_key

CONFIG = FoldConfig(window_ms=1000, grace_ms=2000, execution_horizon_ms=10_000, sweep_interval_ms=500, marker_ms=10_000, evicted_keep_ms=10_000)
TOPIC = "t.workflow-events"


def execution_homed_at(partition: int, partitions: int) -> str:
    while True:
        eid = uuid7()
        if DefaultPartitioner()(eid.encode(), list(range(partitions)), list(range(partitions))) == partition:
            return eid


def execution(f: EventFactory, eid: str, at: int = 1_000, steps: int = 3) -> list[LifecycleEvent]:
    """``2 + 2 * steps`` events of one execution that completes."""
    events: list[Any] = [f.start_execution("wf", "W", "tenant", "u", steps, execution_id=eid, occurred_at=at)]
    for n in range(steps):
        started = f.start_step(eid, f"s{n}", f"step {n}", occurred_at=at + 10 * n + 1)
        events += [started, f.step_event("step.completed", started.step_id, occurred_at=at + 10 * n + 5)]
    events.append(f.end_execution("execution.completed", eid, occurred_at=at + 100))
    return events


def states(emits: list[Emit]) -> list[dict[str, Any]]:
    return [orjson.loads(e.value) for e in emits if e.stream is Stream.EXECUTION_STATE and e.value is not None]


# -- the decision ----------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(blacklist_characters="\x7f", blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40), st.integers(1, 16))
def test_the_home_of_a_lifecycle_event_is_kafkas_default_partition_of_its_execution_id(eid: str, partitions: int) -> None:
    event = EventFactory().start_execution("wf", "W", "t", "u", 1, execution_id=eid, occurred_at=1)
    expected = DefaultPartitioner()(eid.encode(), list(range(partitions)), list(range(partitions)))
    assert home_of(event, partitions) == expected


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8), max_size=3), st.integers(1, 16))
def test_the_home_of_a_sample_is_kafkas_default_partition_of_its_series_key(labels: dict[str, str], partitions: int) -> None:
    sample = EventFactory().record("api.request.duration", 1.0, labels=labels, tenant_id="t", occurred_at=1)
    key = series_key("t", "api.request.duration", labels)
    assert contract_key(sample) == key
    assert home_of(sample, partitions) == DefaultPartitioner()(key, list(range(partitions)), list(range(partitions)))


def test_a_samples_series_is_worked_out_once_and_never_taken_for_anothers() -> None:
    f = EventFactory()
    a = f.record("m.x", 1.0, labels={"x": "1"}, tenant_id="t", occurred_at=1)
    b = f.record("m.x", 1.0, labels={"x": "2"}, tenant_id="t", occurred_at=1)
    twin = f.record("m.x", 2.0, labels={"x": "1"}, tenant_id="t", occurred_at=2)  # equal series, another object
    for sample in (a, b, a, a, twin, b):
        series, sid = sample_series(sample)
        assert series == ("t", "m.x", tuple(sorted(sample.labels.items())))
        assert sid.encode() == contract_key(sample) == series_key("t", "m.x", sample.labels)


def test_a_record_is_routed_by_its_event_not_by_the_key_it_was_produced_with() -> None:
    eid = execution_homed_at(1, 4)
    event = EventFactory().start_execution("wf", "W", "t", "u", 1, execution_id=eid, occurred_at=1)
    core = LifecycleCore({}, CONFIG, router=Router(4))  # type: ignore[arg-type]
    for key in (None, b"some-other-key"):
        [forward] = core.process(event, Origin(TOPIC, 3, 7), encode_event(event), key)
        assert (forward.stream, forward.partition, forward.key) == (Stream.WORKFLOW_EVENTS, 1, eid.encode())
    assert core.store == {}
    assert core.counters == {"misrouted": 2}


# -- lifecycle -------------------------------------------------------------------------------


def test_an_event_on_another_partition_is_forwarded_and_its_copy_applied_not_taken_for_a_redelivery() -> None:
    """A completion at offset 3 of partition 1 after the start at offset 50 of partition 0."""
    f = EventFactory(source="engine-a")
    eid = execution_homed_at(0, 2)
    started, *_, done = execution(f, eid)
    core = LifecycleCore({}, CONFIG, router=Router(2))  # type: ignore[arg-type]
    core.process(started, Origin(TOPIC, 0, 50), encode_event(started), eid.encode())

    [forward] = core.process(done, Origin(TOPIC, 1, 3, 1234), encode_event(done), b"crc32-client")
    assert (forward.stream, forward.partition, forward.key, forward.value) == (Stream.WORKFLOW_EVENTS, 0, eid.encode(), encode_event(done))
    assert core.times.get(1) == 0 and all(v["p"] == 0 for _, v in core.store.items())  # partition 1 untouched

    copy = origin_of(TOPIC, 0, 51, None, forward.headers)
    assert copy.forwarded_from == Origin(TOPIC, 1, 3, 1234)
    [state] = states(core.process(done, copy, encode_event(done), forward.key))
    assert state["status"] == "completed"
    stored = core.store[eid]  # type: ignore[index]

    assert states(core.process(done, copy, encode_event(done), forward.key))[0]["status"] == "completed"  # redelivered copy
    again = origin_of(TOPIC, 0, 52, None, forward.headers)  # forwarded twice: the forwarding side crashed
    assert core.process(done, again, encode_event(done), forward.key) == []
    assert core.store[eid] == stored  # type: ignore[index]
    assert core.counters == {"applied": 2, "misrouted": 1, "redelivered": 2}


def test_a_dead_letter_of_a_forwarded_record_names_the_original() -> None:
    copy = origin_of(TOPIC, 0, 51, None, [(FORWARDED_FROM, orjson.dumps({"topic": TOPIC, "partition": 1, "offset": 3, "timestamp": 9}))])
    record = orjson.loads(dead_letter("late", "x", copy, b"k", b"v").value or b"")
    assert (record["topic"], record["partition"], record["offset"], record["timestamp"]) == (TOPIC, 1, 3, 9)
    assert origin_of(TOPIC, 0, 51, None, [(FORWARDED_FROM, b"not json")]) == Origin(TOPIC, 0, 51)


class Broker:
    """Partitions of one topic as lists of (key, value, headers); records are appended only."""

    def __init__(self, partitions: int) -> None:
        self.logs: list[list[tuple[bytes | None, bytes, tuple[tuple[str, bytes], ...]]]] = [[] for _ in range(partitions)]
        self.positions = [0] * partitions

    def pending(self) -> list[int]:
        return [p for p, log in enumerate(self.logs) if self.positions[p] < len(log)]


def run_split(
    events: list[Event], placement: list[int], partitions: int, rng: random.Random, crash_every: int = 0
) -> tuple[dict[str, dict[str, Any]], LifecycleCore]:
    """Produce ``events[i]`` on ``placement[i]``, then let one core consume the partitions in a
    random interleaving, appending what it forwards; with ``crash_every``, some records are
    processed twice (a redelivery after a crash: forwarded or applied again)."""
    broker = Broker(partitions)
    for event, p in zip(events, placement):
        broker.logs[p].append((None, encode_event(event), ()))
    core = LifecycleCore({}, CONFIG, router=Router(partitions))  # type: ignore[arg-type]
    latest: dict[str, dict[str, Any]] = {}
    steps = 0
    while pending := broker.pending():
        p = rng.choice(pending)
        o = broker.positions[p]
        key, value, headers = broker.logs[p][o]
        origin = origin_of(TOPIC, p, o, None, headers)
        event = decode_input(LifecycleEvent, value, origin, key)
        assert isinstance(event, LifecycleEvent)
        times = 2 if crash_every and steps % crash_every == 0 else 1
        for _ in range(times):
            for emit in core.process(event, origin, value, key):
                if emit.stream is Stream.WORKFLOW_EVENTS:
                    assert emit.partition is not None and emit.value is not None
                    broker.logs[emit.partition].append((emit.key, emit.value, emit.headers))
                elif emit.stream is Stream.EXECUTION_STATE and emit.value is not None:
                    latest[orjson.loads(emit.value)["id"]] = orjson.loads(emit.value)
        broker.positions[p] += 1
        steps += 1
    return latest, core


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 4), st.integers(0, 3))
def test_any_split_over_partitions_ends_as_if_one_murmur2_producer_had_sent_everything(seed: int, partitions: int, crash_every: int) -> None:
    rng = random.Random(seed)
    f = EventFactory(source="engine")
    runs = [execution(f, uuid7(), at=1_000 + 50 * n) for n in range(4)]
    events: list[Event] = [e for run in runs for e in run]
    placement = [rng.randrange(partitions) for _ in events]
    latest, core = run_split(events, placement, partitions, rng, crash_every)
    for run in runs:
        expected = snapshot(reduce(apply, run, None))  # type: ignore[arg-type]
        assert latest[run[0].execution_id] == expected
        home = home_of(run[0], partitions)
        assert core.store[run[0].execution_id]["p"] == home  # type: ignore[index]
    assert core.counters.get("misrouted", 0) >= sum(1 for e, p in zip(events, placement) if home_of(e, partitions) != p)
    for p in range(partitions):  # each partition's stream time is that of the events at home there
        home_times = [e.occurred_at for e in events if home_of(e, partitions) == p]
        assert core.times.get(p) == max(home_times, default=0)


# -- metrics ---------------------------------------------------------------------------------


def test_a_sample_on_another_partition_is_forwarded_and_skipped_by_the_raw_gate() -> None:
    f = EventFactory(source="librdkafka-engine")
    sample = f.record("api.request.duration", 5.0, labels={"endpoint": "/x"}, tenant_id="t", occurred_at=1_000)
    home = home_of(sample, 3)
    elsewhere = (home + 1) % 3
    core = MetricsCore({}, CONFIG, router=Router(3))  # type: ignore[arg-type]
    [forward] = core.process(sample, Origin("t.metrics", elsewhere, 9), encode_event(sample), None)
    assert (forward.stream, forward.partition) == (Stream.METRICS, home)
    assert core.store == {} and core.counters == {"misrouted": 1}
    copy = origin_of("t.metrics", home, 4, None, forward.headers)
    core.process(sample, copy, encode_event(sample), forward.key)
    assert core.counters == {"misrouted": 1, "applied": 1}
    gate = RawSampleGate(CONFIG, {}, partitions=3)
    assert gate.misrouted(elsewhere, sample) and not gate.misrouted(home, sample)
