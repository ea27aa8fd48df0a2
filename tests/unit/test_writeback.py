"""The worker's batches (processor.runtime.writeback): each key written once per batch, to the partition
of the records that wrote it, and a partition's writes all or nothing across a crash at any
point of a flush. Without a broker: the table is a dict that logs its writes per partition as
the changelog would, and a crash keeps any prefix of each partition's log."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from processor.folds.config import FoldConfig
from processor.folds.lifecycle_core import LifecycleCore
from processor.folds.records import Emit, Origin, Stream
from processor.folds.routing import home_of
from processor.folds.stats_core import StatsCore
from processor.runtime.coalesce import coalesce, merge_ops
from processor.runtime.writeback import FLUSH_BYTES, WriteBack, wal_key
from schemas.codec import encode_event
from schemas.events import LifecycleEvent
from tests.unit.scenarios import lifecycle_scenarios

PARTITIONS = 2
TOPIC = "t.workflow-events"
CONFIG = FoldConfig(execution_horizon_ms=2_000, sweep_interval_ms=1_000, marker_ms=120_000, evicted_keep_ms=120_000)
"""A small horizon: scenarios evict and rehydrate. Markers outlive a scenario (spans up to 60 s):
the crash test restarts from any earlier commit, and a redelivery must not reach further back
than ``marker_ms`` (see :class:`FoldConfig`; the worker commits every second)."""


def memory_table() -> Any:
    """A table that logs every write with its partition, as its changelog would."""
    return _MemoryTable()


class _MemoryTable:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.partition: int | None = None
        self.log: list[tuple[int | None, str, bytes | None]] = []
        """Every write as (partition, key, raw or None), in order: a changelog."""

    def get(self, key: str) -> Any:
        raw = self.data.get(key)
        return None if raw is None else orjson.loads(raw)

    def __setitem__(self, key: str, value: Any) -> None:
        self.set_encoded(key, orjson.dumps(value))

    def set_encoded(self, key: str, raw: bytes, value: Any = None) -> None:
        self.data[key] = raw
        self.log.append((self.partition, key, raw))

    def __delitem__(self, key: str) -> None:
        del self.data[key]
        self.log.append((self.partition, key, None))

    def items(self) -> Iterator[tuple[str, Any]]:
        for key, raw in list(self.data.items()):
            yield key, orjson.loads(raw)


def placed(events: list[LifecycleEvent]) -> list[tuple[int, int, LifecycleEvent]]:
    """(partition, offset, event) in topic order: each event on its home partition."""
    offsets = [0] * PARTITIONS
    out = []
    for event in events:
        p = home_of(event, PARTITIONS)
        out.append((p, offsets[p], event))
        offsets[p] += 1
    return out


def fold_batch(core: LifecycleCore, writes: WriteBack, records: list[tuple[int, int, LifecycleEvent]]) -> list[Emit]:
    emits: list[Emit] = []
    for p, o, event in records:
        writes.recover((p,))
        writes.begin(p)
        raw = encode_event(event)
        emits += core.process(event, Origin(TOPIC, p, o), raw, event.execution_id.encode())
    return emits


def table_state(table: Any) -> dict[str, Any]:
    return {key: orjson.loads(raw) for key, raw in table.data.items()}


def replayed(log: list[tuple[int | None, str, bytes | None]]) -> Any:
    """A table recovered from a changelog."""
    table = memory_table()
    for p, key, raw in log:
        table.partition = p
        if raw is None:
            table.data.pop(key, None)
        else:
            table.data[key] = raw
    return table


def run(records: list[tuple[int, int, LifecycleEvent]], batch: int, table: Any | None = None) -> Any:
    table = table if table is not None else memory_table()
    writes = WriteBack(table)
    core = LifecycleCore(writes, CONFIG)
    for start in range(0, len(records), batch):
        fold_batch(core, writes, records[start:start + batch])
        writes.flush()
    return table


def test_a_key_is_written_once_per_batch_framed_and_to_its_records_partition() -> None:
    table = memory_table()
    writes = WriteBack(table)
    writes.begin(1)
    writes["a"] = {"p": 1, "n": 1}
    writes["a"] = {"p": 1, "n": 2}
    writes["b"] = {"p": 1, "n": 3}
    writes.begin(0)
    writes["c"] = {"p": 0}
    assert writes.get("a") == {"p": 1, "n": 2} and table.get("a") is None  # reads see the batch
    writes.flush()
    by_partition = [(p, key) for p, key, _ in table.log]
    assert by_partition == [(0, "c"), (1, wal_key(1)), (1, "a"), (1, "b"), (1, wal_key(1))]
    assert table.log[-1][2] is None  # the frame is deleted last
    assert orjson.loads(table.log[1][2] or b"") == {"wal": [["a", {"p": 1, "n": 2}], ["b", {"p": 1, "n": 3}]]}
    assert table_state(table) == {"a": {"p": 1, "n": 2}, "b": {"p": 1, "n": 3}, "c": {"p": 0}}


def test_a_key_made_and_deleted_in_one_batch_leaves_nothing() -> None:
    table = memory_table()
    writes = WriteBack(table)
    writes.begin(0)
    writes["x"] = {"p": 0}
    del writes["x"]
    assert writes.get("x") is None and list(writes.items()) == []
    writes.flush()
    assert table.data == {}


def test_a_write_outside_a_record_is_refused() -> None:
    with pytest.raises(RuntimeError, match="no partition"):
        WriteBack(memory_table())["k"] = {}


def test_a_frame_too_large_for_a_record_gives_the_writes_in_the_order_made() -> None:
    table = memory_table()
    writes = WriteBack(table, frame_limit=10)
    writes.begin(0)
    writes["w"] = {"n": 1}
    writes["meta"] = {"n": 2}
    writes["w"] = {"n": 3}
    writes.flush()
    assert [key for _, key, _ in table.log] == ["w", "meta", "w"]  # each record's writes persist as a prefix
    assert table_state(table) == {"w": {"n": 3}, "meta": {"n": 2}}


def test_the_batch_is_flushed_early_once_enough_waits() -> None:
    writes = WriteBack(memory_table())
    writes.begin(0)
    writes["big"] = {"v": "x" * FLUSH_BYTES}
    assert writes.full


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(lifecycle_scenarios(), st.integers(1, 12), st.integers(1, 12), st.data())
def test_a_crash_anywhere_in_a_flush_ends_in_the_state_of_no_crash(
    events: list[LifecycleEvent], batch: int, batch_after: int, data: st.DataObject
) -> None:
    """Fold in batches; crash during the flush of a batch, each partition's changelog keeping
    any prefix of that flush's writes; restart from the last commit (offsets are committed
    between batches only, after the flush): the same table as without a crash."""
    records = placed(events)
    assume(records)
    expected = table_state(run(records, batch))
    batches = [records[i:i + batch] for i in range(0, len(records), batch)]
    crash_at = data.draw(st.integers(0, len(batches) - 1), label="crashing batch")
    committed = data.draw(st.integers(0, crash_at), label="batches committed")
    table = memory_table()
    writes = WriteBack(table)
    core = LifecycleCore(writes, CONFIG)
    for _number, records_of_batch in enumerate(batches[:crash_at + 1]):
        fold_batch(core, writes, records_of_batch)
        before = len(table.log)
        writes.flush()
    flushed = table.log[before:]
    kept: list[tuple[int | None, str, bytes | None]] = []
    for p in range(PARTITIONS):
        of_p = [entry for entry in flushed if entry[0] == p]
        kept += of_p[:data.draw(st.integers(0, len(of_p)), label=f"writes of partition {p} kept")]
    survived = replayed(table.log[:before] + kept)
    redelivered = [r for b in batches[committed:] for r in b]
    after = table_state(run(redelivered, batch_after, table=survived))
    assert after == expected
    assert not any(key.startswith("\x00wal/") for key in after)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(lifecycle_scenarios(), st.integers(1, 12))
def test_batches_fold_to_the_state_record_by_record_folding_gives(events: list[LifecycleEvent], batch: int) -> None:
    records = placed(events)
    assert table_state(run(records, batch)) == table_state(run(records, 1))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(lifecycle_scenarios(), st.integers(1, 12))
def test_every_write_goes_to_the_partition_its_entry_names(events: list[LifecycleEvent], batch: int) -> None:
    table = run(placed(events), batch)
    for p, key, raw in table.log:
        if raw is not None and not key.startswith("\x00wal/"):
            assert orjson.loads(raw)["p"] == p, key


# -- coalescing --------------------------------------------------------------------------------


def _state(key: str, value: int | None) -> Emit:
    return Emit(Stream.EXECUTION_STATE, key.encode(), None if value is None else str(value).encode())


def test_compacted_records_keep_the_last_value_per_key_and_a_later_tombstone() -> None:
    emits = [_state("a", 1), _state("b", 1), _state("a", 2), _state("b", None), _state("c", None),
             Emit(Stream.METRICS, b"s", b"1"), Emit(Stream.METRICS, b"s", b"2"), _state("d", None), _state("d", 4)]
    assert coalesce(emits) == [_state("b", 1), _state("a", 2), _state("b", None), _state("c", None),
                               Emit(Stream.METRICS, b"s", b"1"), Emit(Stream.METRICS, b"s", b"2"), _state("d", 4)]


def _op(tenant: str, eid: str, o: int, status: str = "running") -> bytes:
    return orjson.dumps({"op": "set", "tenant": tenant, "execution_id": eid, "status": status, "duration": None,
                         "p": 0, "o": o, "seq": 0})


def test_stats_ops_are_merged_per_tenant_and_fold_as_they_would_one_by_one() -> None:
    ops = [(_op("t1", "e1", 0)), (_op("t2", "e2", 1)), (_op("t1", "e1", 2, "completed")), (_op("t1", "e3", 3))]
    emits = [Emit(Stream.STATS_CHANGES, orjson.loads(op)["tenant"].encode(), op) for op in ops]
    merged = coalesce(emits)
    assert [e.key for e in merged] == [b"t1", b"t2"]
    one_by_one, batched = StatsCore(memory_table()), StatsCore(memory_table())
    for i, emit in enumerate(emits):
        one_by_one.process(emit.value or b"", Origin("s", 0, i), emit.key)
    for i, emit in enumerate(merged):
        batched.process(emit.value or b"", Origin("s", 0, i), emit.key)
    assert dict(batched.store.items()) == dict(one_by_one.store.items())
    again = batched.process(merged[0].value or b"", Origin("s", 0, 0), b"t1")  # redelivered: counts nothing twice
    assert dict(batched.store.items()) == dict(one_by_one.store.items()) and again[-1].stream is Stream.WORKFLOW_STATS


def test_merged_stats_records_stay_small() -> None:
    ops = [_op("t", f"e{i}", i) for i in range(5000)]
    records = merge_ops(b"t", ops)
    assert len(records) > 1 and all(len(r) <= 256 * 1024 for r in records)
    assert sum(len(orjson.loads(r)["ops"]) for r in records) == 5000


def test_an_invalid_op_in_a_merged_record_is_dead_lettered_and_the_others_count() -> None:
    core = StatsCore(memory_table())
    raw = b'{"tenant":"t","ops":[' + _op("t", "e1", 0) + b',{"op":"nope"}]}'
    emits = core.process(raw, Origin("s", 0, 0), b"t")
    assert [e.stream for e in emits] == [Stream.DEAD_LETTER, Stream.WORKFLOW_STATS]
    assert orjson.loads(emits[1].value or b"")["running"] == 1
