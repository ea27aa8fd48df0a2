"""The fold side of a replay (:mod:`processor.runtime.replay`): the worker's cores over spilling
tables, fed the source partitions one at a time in offset order, filling sink batches.

:func:`read_sources` reads a share of the source partitions (all of them, or those of one fold
process: :mod:`processor.runtime.replay_workers`) ``CHUNK_RECORDS`` at a time and folds each
record with :class:`Rebuild`; at each chunk's end each window and execution the chunk changed
is written once; every ``FLUSH_EVERY`` records the batch goes to the writer. Partitions are
independent here: every key is folded on its home partition only, stream times are per
partition, and an alert ack is read with the metrics partition of its number.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaConnectionError

from processor.errors import BrokerError
from processor.folds.alerting import Ack, AlertCore
from processor.folds.decode import decode_input
from processor.folds.lifecycle_core import LifecycleCore
from processor.folds.metrics_core import MetricsCore
from processor.folds.raw_gate import RawSampleGate
from processor.folds.records import Emit, Origin, Stream, dead_letter, origin_of
from processor.folds.routing import Router
from processor.folds.windows import window_start
from processor.runtime.admin import partition_counts
from processor.runtime.replay_plan import ReplayPlan, ReplayProgress
from processor.runtime.replay_state import SpillFile, lifecycle_cold, metrics_cold
from processor.settings import Settings
from processor.store.sinkdb import SinkBatch
from schemas.events import LifecycleEvent, MetricRecorded

FLUSH_EVERY = 10_000
"""Records per transaction while replaying."""
CHUNK_RECORDS = 5_000
"""Records fetched from one partition at a time."""
FETCH_BYTES = 4 * 1024 * 1024
"""The consumer's fetch size per partition (at most two partitions are assigned at once)."""

class Rebuild:
    """Cores over spilling stores (:mod:`processor.runtime.replay_state`: in memory what the
    folds work on, on disk what only a late record reads again), and the batch they fill."""

    def __init__(self, settings: Settings, plan: ReplayPlan, write: Callable[[SinkBatch], None], spill: SpillFile) -> None:
        self.topics = settings.topics
        self.plan = plan
        self.write = write
        """Takes each full batch (which nothing changes after)."""
        self.spill = spill
        self.router = Router(None)
        self.lifecycle = LifecycleCore(spill.store(lifecycle_cold), settings.fold, derive=False, router=self.router,
                                       defer_states=True)
        self.alerts = AlertCore({}, plan.rules)  # type: ignore[arg-type]
        self.metrics = MetricsCore(spill.store(metrics_cold), settings.fold, self.alerts, router=self.router,
                                   defer_windows=Unframed())
        self.gate = RawSampleGate(settings.fold, {})
        self.window_ms = settings.window_ms
        self.batch = SinkBatch()
        self.snapshots: dict[bytes | None, bytes] = {}
        """The batch's execution-state records, still encoded: only the last of each execution
        is decoded (at :meth:`flush`), as the batch keeps only that one."""
        self.counts = {"executions": 0, "samples": 0, "rollups": 0, "dead_letters": 0}

    def route(self, counts: dict[str, int]) -> None:
        """Route by the source topics' partition counts, as the worker does."""
        self.router.partitions = self.gate.partitions = counts[self.topics.workflow_events]

    def lifecycle_record(self, origin: Origin, key: bytes | None, value: bytes | None) -> None:
        event = decode_input(LifecycleEvent, value, origin, key)
        if isinstance(event, LifecycleEvent):
            self._take(self.lifecycle.process(event, origin, value or b"", key))
        else:
            self._take([event] if isinstance(event, Emit) else [])

    def metrics_record(self, origin: Origin, key: bytes | None, value: bytes | None) -> None:
        event = decode_input(MetricRecorded, value, origin, key)
        if isinstance(event, Emit):
            self._take([event])
        elif isinstance(event, MetricRecorded) and not self._before_from(event):
            self._take(self.metrics.process(event, origin, value or b"", key))
            if not self.gate.misrouted(origin.partition, event) and self.gate.admit(origin.partition, event):
                self.batch.add_sample(event)
        self.batch.consumed(origin.topic, origin.partition, origin.offset + 1, self.gate.stream_times.get(origin.partition, 0),
                            self.gate.derived_times.get(origin.partition, 0))

    def log_record(self, origin: Origin, key: bytes | None, value: bytes | None) -> None:
        self.batch.add_log_input(origin, key, value)
        self.batch.consumed(origin.topic, origin.partition, origin.offset + 1, 0)
        self.batch.records += 1
        if self.batch.records >= FLUSH_EVERY:
            self.flush()

    def ack_record(self, origin: Origin, key: bytes | None, value: bytes | None) -> None:
        try:
            ack = Ack.from_json(orjson.loads(value or b""))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            self._take([dead_letter("invalid_ack", f"not an alert ack: {exc}", origin, key, value)])
            return
        self._take(self.alerts.guard.run(lambda: self.alerts.ack(ack), origin, key, value))

    def end_chunk(self) -> None:
        """The end of a chunk of one partition: each window the chunk changed is written to its
        table once, and each execution it changed makes its state record once (as the worker
        does per batch; an evicted execution made its record before its tombstone)."""
        self.metrics.take_windows()
        self._take(self.lifecycle.take_states(), records=0)

    def _before_from(self, sample: MetricRecorded) -> bool:
        return self.plan.from_ms is not None and window_start(sample.occurred_at, self.window_ms) < self.plan.from_ms

    def _take(self, emits: list[Emit], records: int = 1) -> None:
        for emit in emits:
            if emit.value is None:
                continue
            if emit.stream is Stream.EXECUTION_STATE:
                self.snapshots[emit.key] = emit.value
            else:
                self.batch.add(emit.stream, orjson.loads(emit.value))
        self.batch.records += records
        if self.batch.records >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        for value in self.snapshots.values():
            self.batch.add_execution(orjson.loads(value))
        self.snapshots.clear()
        self.counts["executions"] += len(self.batch.executions)
        self.counts["samples"] += len(self.batch.samples)
        self.counts["rollups"] += len(self.batch.rollups)
        self.counts["dead_letters"] += len(self.batch.dead_letters)
        self.write(self.batch)
        self.batch = SinkBatch()
        self.spill.commit()

    def finish(self, now_ms: int, derived_ends: dict[tuple[str, int], int]) -> None:
        self._take(self.metrics.finish(now_ms))
        self._take(self.lifecycle.take_states(), records=0)
        for (topic, partition), offset in derived_ends.items():
            self.batch.consumed(topic, partition, offset, 0)
        self.flush()


async def read_sources(
    settings: Settings,
    bootstrap: str,
    plan: ReplayPlan,
    rebuild: Rebuild,
    on_progress: Callable[[ReplayProgress], None] | None,
    began: float,
    share: tuple[int, int] = (0, 1),
) -> int:
    """Fold the source partitions of ``share`` (``(k, n)``: the partitions ``p`` with
    ``p % n == k`` of every source topic, with the alert acks of the same numbers) one at a time,
    in offset order, and flush; the records read. Share 0 also records the derived topics' end
    offsets as they are before it reads anything (see :mod:`processor.runtime.replay`)."""
    k, n = share
    t = settings.topics
    derived = [t.execution_state, t.metric_rollups, t.dead_letter, t.alerts]
    counts = await partition_counts(bootstrap, [*t.sources, *derived, t.alert_acks, t.logs])
    missing = [name for name in t.sources if name not in counts]
    if missing:
        raise BrokerError(f"source topics {', '.join(missing)} do not exist at {bootstrap}")
    rebuild.route(counts)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=FETCH_BYTES, fetch_max_bytes=2 * FETCH_BYTES)
    try:
        await consumer.start()
    except KafkaConnectionError as exc:
        raise BrokerError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    try:
        derived_tps = [TopicPartition(name, p) for name in derived if name in counts for p in range(counts[name]) if k == 0]
        derived_ends = {(tp.topic, tp.partition): o for tp, o in (await consumer.end_offsets(derived_tps)).items()} if derived_tps else {}
        sources = [TopicPartition(name, p) for name in t.sources for p in range(counts[name])]
        sources += [TopicPartition(t.logs, p) for p in range(counts.get(t.logs, 0))]  # none before logs existed
        sources = [tp for tp in sources if tp.partition % n == k]
        starts = await consumer.beginning_offsets(sources)
        ends = await until_offsets(consumer, sources, plan.until_ms)
        total = sum(max(0, ends[tp] - starts[tp]) for tp in sources)
        done = 0
        for tp in sources:  # one partition at a time, in offset order
            source = Chunks(consumer, tp, starts[tp], ends[tp])
            readers = [source]
            acks: Chunks | None = None
            if tp.topic == t.metrics and t.alert_acks in counts and tp.partition < counts[t.alert_acks]:
                ack_tp = TopicPartition(t.alert_acks, tp.partition)
                ack_start = (await consumer.beginning_offsets([ack_tp]))[ack_tp]
                acks = Chunks(consumer, ack_tp, ack_start, (await until_offsets(consumer, [ack_tp], plan.until_ms))[ack_tp])
                readers.append(acks)
            readers = [r for r in readers if r.position < r.end]
            if not readers:
                continue  # nothing to read (assigned, an empty partition's fetch can outlive its consumer's stop)
            consumer.assign([r.tp for r in readers])
            for r in readers:
                consumer.seek(r.tp, r.position)
            handle = {t.workflow_events: rebuild.lifecycle_record, t.logs: rebuild.log_record}.get(tp.topic, rebuild.metrics_record)
            topic, partition = tp.topic, tp.partition
            ack = None if acks is None else await acks.first()
            while chunk := await source.next():
                for message in chunk:
                    # acks in the order the live worker most likely met them: by log time
                    while ack is not None and ack.timestamp <= message.timestamp:
                        rebuild.ack_record(Origin(ack.topic, ack.partition, ack.offset, ack.timestamp), ack.key, ack.value)
                        ack = await acks.after()  # type: ignore[union-attr]
                    handle(origin_of(topic, partition, message.offset, message.timestamp, message.headers), message.key, message.value)
                rebuild.end_chunk()
                done += len(chunk)
                if on_progress is not None:
                    on_progress(ReplayProgress(done, total, time.monotonic() - began))
            while ack is not None:
                rebuild.ack_record(Origin(ack.topic, ack.partition, ack.offset, ack.timestamp), ack.key, ack.value)
                ack = await acks.after()  # type: ignore[union-attr]
        rebuild.finish(int(time.time() * 1000), derived_ends)
        return done
    finally:
        await consumer.stop()


class Unframed:
    """Where replay's deferred windows go: straight to the spilling store (replay has no
    changelog to keep consistent across a crash; it starts again from scratch)."""

    pending_bytes = 0

    def begin(self, partition: int) -> None:
        pass

    def begin_reordered(self, partition: int) -> None:
        pass

    def flush(self) -> int:
        return 0


class Chunks:
    """The records of one partition in ``[start, end)``, fetched ``CHUNK_RECORDS`` at a time: all
    that replay holds of a partition at once (besides the consumer's fetch buffer)."""

    def __init__(self, consumer: AIOKafkaConsumer, tp: TopicPartition, start: int, end: int) -> None:
        self.consumer = consumer
        self.tp = tp
        self.position = start
        self.end = end
        self._chunk: list[Any] = []
        self._index = 0

    async def next(self) -> list[Any]:
        """The next records in offset order; ``[]`` once ``end`` is reached."""
        while self.position < self.end:
            fetched = await self.consumer.getmany(self.tp, timeout_ms=2_000, max_records=CHUNK_RECORDS)
            records = fetched.get(self.tp, [])
            self.position = await self.consumer.position(self.tp)
            if records and records[-1].offset >= self.end:
                records = [m for m in records if m.offset < self.end]
            if records:
                return records
        return []

    async def first(self) -> Any:
        """The first record, one at a time from here on (:meth:`after`); ``None``: none."""
        self._chunk, self._index = await self.next(), 0
        return self._chunk[0] if self._chunk else None

    async def after(self) -> Any:
        """The record after the last one :meth:`first` or :meth:`after` returned, or ``None``."""
        self._index += 1
        if self._index >= len(self._chunk):
            self._chunk, self._index = await self.next(), 0
        return self._chunk[self._index] if self._chunk else None


async def until_offsets(consumer: AIOKafkaConsumer, tps: list[TopicPartition], until_ms: int | None) -> dict[TopicPartition, int]:
    ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
    if until_ms is None:
        return ends
    found = await consumer.offsets_for_times({tp: until_ms for tp in tps})
    return {tp: (found[tp].offset if found.get(tp) is not None else ends[tp]) for tp in tps}
