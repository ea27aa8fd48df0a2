"""The worker's metrics core writes each changed window's entry once per batch
(``defer_windows``, ``take_windows``) instead of once per sample: after every batch its store
holds what the per-sample core's holds, each entry written to its own partition, and it
publishes the same records in the same order - whatever the batches, the lanes, the sweeps and
late samples in them, redeliveries, and folds that fail mid-batch."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.folds.config import FoldConfig
from processor.folds.deferred_windows import FLUSH_BYTES
from processor.folds.metrics_core import MetricsCore
from processor.folds.records import Emit, Origin, Stream
from processor.runtime.writeback import WriteBack
from schemas.codec import encode_event
from schemas.events import MetricRecorded
from tests.unit.test_writeback import memory_table, replayed, table_state

CONFIG = FoldConfig(window_ms=1000, grace_ms=500, sweep_interval_ms=200, marker_ms=3_000, execution_horizon_ms=1_500)
CRASH_CONFIG = dataclasses.replace(CONFIG, marker_ms=120_000)


@pytest.fixture(autouse=True, scope="module")
def small_segments() -> Any:
    """Windows of a few samples seal segments here (a tail of 3 ids), so that every scenario
    writes, reads back, crashes between and drops sealed segments."""
    from processor.folds import windows

    before, windows.SEGMENT_IDS = windows.SEGMENT_IDS, 3
    yield
    windows.SEGMENT_IDS = before
"""Markers outlive a scenario: a redelivery must not reach further back than ``marker_ms``
(see :class:`FoldConfig`; the worker commits every second)."""


class PartitionedStore(dict):  # type: ignore[type-arg]
    """A dict that checks every window entry is written while its own partition is begun."""

    def __init__(self) -> None:
        super().__init__()
        self.partition: int | None = None
        self.misattributed: list[str] = []
        self.writes: list[str] = []

        self.pending_bytes = 0

    def begin(self, partition: int) -> None:
        self.partition = partition

    def begin_reordered(self, partition: int) -> None:
        self.partition = partition

    def flush(self) -> int:
        return 0

    def __setitem__(self, key: str, value: Any) -> None:
        if isinstance(value, dict) and "start" in value and value.get("p") != self.partition:
            self.misattributed.append(key)
        self.writes.append(key)
        super().__setitem__(key, value)


SERIES = [("t1", "api.request.duration", {"model": "a"}), ("t2", "api.request.duration", {}),
          ("t1", "workflow.execution.duration", {"workflow": "w", "status": "completed"})]  # the last: derived lane


@st.composite
def samples(draw: Any) -> list[tuple[int, int, MetricRecorded]]:
    """(partition, offset, sample): series by partition (as routing does), times mostly ahead,
    some far behind (late), some ids again (client resends)."""
    n = draw(st.integers(1, 60))
    out: list[tuple[int, int, MetricRecorded]] = []
    offsets = [0, 0]
    t = 10_000
    for i in range(n):
        s = draw(st.integers(0, len(SERIES) - 1))
        tenant, metric_type, labels = SERIES[s]
        t += draw(st.integers(0, 400))
        at = t - draw(st.sampled_from([0, 0, 0, 300, 2_500, 6_000]))
        event_id = f"s{draw(st.integers(0, i))}" if draw(st.booleans()) and i else f"s{i}"
        p = s % 2
        sample = MetricRecorded(event_id=event_id, occurred_at=at, tenant_id=tenant, metric_type=metric_type,
                                value=draw(st.floats(-5, 1e6, allow_nan=False)), labels=labels)
        out.append((p, offsets[p], sample))
        offsets[p] += 1
    return out


def _run(records: list[tuple[int, int, MetricRecorded]], cuts: list[int], *, defer: bool,
         fail_at: set[int]) -> tuple[list[list[Emit]], list[dict[str, Any]], PartitionedStore]:
    store = PartitionedStore()
    core = MetricsCore(store, CONFIG, defer_windows=store if defer else None)
    batches: list[list[Emit]] = []
    states: list[dict[str, Any]] = []
    emits: list[Emit] = []
    for i, (p, o, sample) in enumerate(records):
        store.begin(p)
        origin = Origin("metrics", p, o)
        if i in fail_at:  # a fold that raises after its writes: all of them dropped, a dead letter
            original = core._process

            def failing(*args: Any, _original: Any = original) -> list[Emit]:
                _original(*args)
                raise RuntimeError("injected")

            core._process = failing  # type: ignore[method-assign]
            emits += core.process(sample, origin, encode_event(sample), None)
            core._process = original  # type: ignore[method-assign]
        else:
            emits += core.process(sample, origin, encode_event(sample), None)
        if i + 1 in cuts or i + 1 == len(records):
            core.take_windows()
            states.append(dict(store))
            batches.append(emits + core.flush())
            emits = []
    return batches, states, store


def _per_key(batch: list[Emit]) -> dict[tuple[Any, bytes | None], list[bytes | None]]:
    grouped: dict[tuple[Any, bytes | None], list[bytes | None]] = {}
    for emit in batch:
        grouped.setdefault((emit.stream, emit.key), []).append(emit.value)
    return grouped


@settings(max_examples=100, deadline=None)
@given(samples(), st.integers(0, 10_000))
def test_windows_written_once_per_batch_leave_the_store_and_records_of_per_sample_writes(
        records: list[tuple[int, int, MetricRecorded]], seed: int) -> None:
    rng = random.Random(seed)
    tail = [*records, *rng.sample(records, min(len(records), 3))]  # redeliveries, late in the log
    cuts = sorted(rng.sample(range(1, len(tail) + 1), min(len(tail), rng.randint(0, 5))))
    fail_at = set(rng.sample(range(len(tail)), min(len(tail), rng.randint(0, 2))))
    each, each_states, _ = _run(tail, cuts, defer=False, fail_at=fail_at)
    deferred, deferred_states, store = _run(tail, cuts, defer=True, fail_at=fail_at)
    assert deferred_states == each_states
    # the same records, in the same order per key (a compacted topic's order); across keys a
    # repair lists the closed windows in the store's order, which is the order of first writes
    assert [_per_key(b) for b in deferred] == [_per_key(b) for b in each]
    assert store.misattributed == []


def test_a_window_is_written_once_a_batch_and_read_back_within_it() -> None:
    store = PartitionedStore()
    writes = store.writes
    core = MetricsCore(store, FoldConfig(window_ms=1000, grace_ms=500, sweep_interval_ms=100_000), defer_windows=store)
    for o in range(50):
        sample = MetricRecorded(event_id=f"e{o}", occurred_at=10_000 + o, tenant_id="t", metric_type="m", value=float(o))
        store.begin(0)
        assert core.process(sample, Origin("metrics", 0, o), encode_event(sample), None) == []
    again = MetricRecorded(event_id="e3", occurred_at=10_003, tenant_id="t", metric_type="m", value=3.0)
    core.process(again, Origin("metrics", 0, 50), encode_event(again), None)  # a resend: counted once
    assert writes == []
    core.take_windows()
    *segments, key = writes  # the 16 segments sealed (3 ids each) first, then the entry
    assert store[key]["agg"]["count"] == 50 and store[key]["o"] == 49 and store[key]["segs"] == 16
    assert segments == [f"{key}#{i}" for i in range(16)]


def test_a_windows_sealed_segments_dedupe_after_a_restart_and_go_with_its_closing() -> None:
    """A new core over the stored entries (a restart) reads the sealed ids back: a resend of
    any sample is a duplicate. Closing a raw window deletes its segments; a derived window
    keeps them in its closed marker until the marker goes, and a late derived sample reopens it
    with all its ids."""
    config = FoldConfig(window_ms=1000, grace_ms=500, sweep_interval_ms=100, marker_ms=500, evicted_keep_ms=1_000,
                        execution_horizon_ms=500)  # a derived closed window kept 2,000 ms
    store = PartitionedStore()
    first = MetricsCore(store, config, defer_windows=store)
    series = {"raw": ("api.request.duration", {}), "derived": ("workflow.execution.duration", {"workflow": "w", "status": "completed"})}

    def sample(lane: str, n: int, at: int) -> MetricRecorded:
        metric_type, labels = series[lane]
        return MetricRecorded(event_id=f"{lane}{n}", occurred_at=at, tenant_id="t", metric_type=metric_type, value=float(n),
                              labels=labels)

    o = 0
    for n in range(20):
        for lane in series:
            store.begin(0)
            first.process(sample(lane, n, 10_000 + n), Origin("metrics", 0, o), b"", None)
            o += 1
    first.take_windows()
    assert sum("#" in k for k in store) == 2 * 6
    again = MetricsCore(store, config, defer_windows=store)  # a restart: nothing cached
    for lane in series:
        store.begin(0)
        again.process(sample(lane, 4, 10_004), Origin("metrics", 0, o), b"", None)
        o += 1
    assert again.counters.get("duplicate") == 2
    for lane in series:  # each lane's stream time passes the window's end + grace: both close
        store.begin(0)
        again.process(sample(lane, 100, 11_600), Origin("metrics", 0, o), b"", None)
        o += 1
    again.take_windows()
    assert {k.rsplit("@", 1)[0] for k in store if "#" in k} == {window_series(series["derived"])}
    store.begin(0)  # a late derived sample reopens its closed window: its ids are all there
    again.process(sample("derived", 7, 10_007), Origin("metrics", 0, o), b"", None)
    store.begin(0)
    again.process(sample("derived", 50, 10_050), Origin("metrics", 0, o + 1), b"", None)
    assert again.counters.get("duplicate") == 3 and again.counters.get("reopened") == 1
    o += 2
    store.begin(0)  # past the marker's keep: the marker and its segments go
    again.process(sample("derived", 101, 14_000), Origin("metrics", 0, o), b"", None)
    again.take_windows()
    assert not any("#" in k and k.startswith(window_series(series["derived"]) + "@10000") for k in store)


def window_series(metric: tuple[str, dict[str, str]]) -> str:
    from processor.folds.windows import series_id

    return series_id(("t", metric[0], tuple(sorted(metric[1].items()))))


def _fold(core: MetricsCore, writes: WriteBack, records: list[tuple[int, int, MetricRecorded]]) -> list[Emit]:
    emits: list[Emit] = []
    for p, o, sample in records:
        writes.recover((p,))
        writes.begin(p)
        emits += core.process(sample, Origin("metrics", p, o), encode_event(sample), None)
    core.take_windows()
    return emits


def _folded(records: list[tuple[int, int, MetricRecorded]], batch: int, table: Any, *, defer: bool) -> list[Emit]:
    writes = WriteBack(table)
    core = MetricsCore(writes, CRASH_CONFIG, defer_windows=writes if defer else None)
    emits: list[Emit] = []
    for start in range(0, len(records), batch):
        emits += _fold(core, writes, records[start:start + batch])
        writes.flush()
    return emits


def _ahead(records: list[tuple[int, int, MetricRecorded]], steps: range) -> list[tuple[int, int, MetricRecorded]]:
    """Samples after ``records`` on each partition, far ahead in stream time: they close every
    window (and a closing left to a later sweep by a crash)."""
    offsets = {p: o + 1 for p, o, _ in records}
    end = max(s.occurred_at for _, _, s in records)
    tail = []
    for step in steps:
        for p in (0, 1):
            o = offsets.get(p, 0)
            offsets[p] = o + 1
            tail.append((p, o, MetricRecorded(event_id=f"z{p}/{step}", occurred_at=end + 10_000 * step,
                                              tenant_id=f"z{p}", metric_type="z", value=0.0)))
    return tail


def _outcome(emits: list[Emit]) -> tuple[dict[bytes | None, Any], set[bytes | None]]:
    """What a consumer of the compacted topics ends with: each window's last rollup, and the
    dead letters' keys."""
    rollups = {e.key: orjson.loads(e.value or b"null") for e in emits if e.stream is Stream.METRIC_ROLLUPS}
    return rollups, {e.key for e in emits if e.stream is Stream.DEAD_LETTER}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(samples(), st.integers(1, 15), st.integers(1, 15), st.data())
def test_a_crash_anywhere_in_a_batch_of_deferred_windows_ends_in_the_rollups_of_no_crash(
        records: list[tuple[int, int, MetricRecorded]], batch: int, batch_after: int, data: st.DataObject) -> None:
    """Fold samples in batches (windows written once per batch, or per sample); crash within a
    batch, each partition's changelog keeping any prefix of what the batch wrote (its flushes
    within, before sweeps and late markers, and at its end), its records unsent; restart from
    the last commit: the same final rollups and dead letters as without a crash. Deferred writes
    come after later records' writes, so this holds only because the write-back frames such a
    partition's batch whole, and frames the writes of a record that writes at once (a sweep's).
    (Per-sample writes, ``defer_windows=None``, leave a sweep's writes unframed: a crash that
    keeps its own window but not its partition record can make a redelivered duplicate before
    it a late dead letter.)"""
    defer = True
    records = [*records, *_ahead(records, range(1, 3))]
    epilogue = _ahead(records, range(3, 5))  # after the crash's redeliveries
    expected = _outcome(_folded([*records, *epilogue], batch, memory_table(), defer=defer))
    batches = [records[i:i + batch] for i in range(0, len(records), batch)]
    crash_at = data.draw(st.integers(0, len(batches) - 1), label="crashing batch")
    committed = data.draw(st.integers(0, crash_at), label="batches committed")
    table = memory_table()
    writes = WriteBack(table)
    core = MetricsCore(writes, CRASH_CONFIG, defer_windows=writes if defer else None)
    sent: list[Emit] = []
    before = 0
    for number, records_of_batch in enumerate(batches[:crash_at + 1]):
        before = len(table.log)
        emits = _fold(core, writes, records_of_batch)
        writes.flush()
        if number < crash_at:
            sent += emits
    written = table.log[before:]
    kept: list[tuple[int | None, str, bytes | None]] = []
    for p in (0, 1):
        of_p = [entry for entry in written if entry[0] == p]
        kept += of_p[:data.draw(st.integers(0, len(of_p)), label=f"writes of partition {p} kept")]
    survived = replayed(table.log[:before] + kept)
    redelivered = [r for b in batches[committed:] for r in b]
    sent += _folded([*redelivered, *epilogue], batch_after, survived, defer=defer)
    assert _outcome(sent) == expected
    assert not any(key.startswith("\x00wal/") for key in table_state(survived))


def test_deferred_windows_are_flushed_before_they_would_outgrow_a_frame() -> None:
    table = memory_table()
    writes = WriteBack(table)
    core = MetricsCore(writes, FoldConfig(window_ms=60_000, grace_ms=500, sweep_interval_ms=10**9), defer_windows=writes)
    flushes = 0
    for o in range(3_000):  # 3,000 series, one window each, on two partitions
        p = o % 2
        sample = MetricRecorded(event_id=f"e{o}", occurred_at=10_000, tenant_id="t", metric_type="m", value=1.0,
                                labels={"n": str(o)})
        writes.begin(p)
        written = len(table.log)
        core.process(sample, Origin("metrics", p, o // 2), encode_event(sample), None)
        flushes += len(table.log) > written
        assert core.deferred is not None and core.deferred.bytes + writes.pending_bytes < FLUSH_BYTES + 8_192
    core.take_windows()
    writes.flush()
    assert flushes >= 3_000 * 4096 // FLUSH_BYTES - 1
    windows = [(p, orjson.loads(raw)) for p, key, raw in table.log if raw is not None and not key.startswith("\x00")]
    assert len(windows) == 3_000
    assert all(entry["p"] == p for p, entry in windows)  # each to its own partition's changelog


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "store", "decode", "summary"]), st.integers(0, 300)), max_size=300))
def test_a_windows_entry_and_segments_hold_exactly_its_ids(steps: list[tuple[str, int]]) -> None:
    """However a window is built (samples added, stored, decoded with its segments again), its
    entry's tail and its sealed segments hold exactly its ids, ascending, each once; a window
    decoded from its entry alone gives the same entry and rollup but refuses to count."""
    from processor.folds.windows import SEGMENT_IDS, MetricWindow

    window = MetricWindow(("t", "m", ()), 0, 1000)
    stored: dict[int, dict[str, Any]] = {}
    for step, n in steps:
        if step == "add":
            sample = MetricRecorded(event_id=f"e{n}", occurred_at=1, tenant_id="t", metric_type="m", value=float(n))
            if not window.has(sample.event_id):
                window = window.add(sample)
        elif step == "store":
            for i, ids in enumerate(window.unwritten, start=window.written):
                stored[i] = MetricWindow.segment_json(ids)
            window = window.stored()
        elif step == "decode" and window.written == window.segment_count:
            window = MetricWindow.from_json(window.to_json(), [stored[i] for i in range(window.segment_count)])
        elif step == "summary":
            summary = MetricWindow.from_json(window.to_json())
            assert summary.to_json() == window.to_json() and summary.rollup(final=True) == window.rollup(final=True)
            if window.segment_count:
                with pytest.raises(RuntimeError):
                    summary.has("e0")
        entry = window.to_json()
        assert entry["ids"] == sorted(window.tail) and len(entry["ids"]) < SEGMENT_IDS
        assert entry.get("segs", 0) == window.segment_count == len(window.segments)
        held = [i for s in window.segments for i in sorted(s)] + entry["ids"]
        assert sorted(held) == sorted(window.ids) and len(held) == len(set(held)) == window.aggregate.count
