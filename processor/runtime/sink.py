"""``axmon sink``: the derived topics and the raw metric samples into SQLite, effectively once.

The commit protocol, in the order it happens:

1. On start, read ``sink_offsets`` from the database and seek every partition there (the
   beginning where none is stored). Kafka's committed offsets are not used for this.
2. Consume records into a :class:`~processor.store.sinkdb.SinkBatch` (coalescing snapshots by key)
   until it holds ``batch_size`` records or ``batch_ms`` has passed.
3. Write the batch and the next offsets in ONE SQLite transaction.
4. Commit the same offsets to Kafka under the group ``<prefix>sink``, only so that lag can be
   watched; losing this commit loses nothing.

A kill at any moment leaves the database at the end of some transaction, with the offsets that
match it: the next start resumes exactly there. Every write is an idempotent upsert of a
snapshot (or an insert-or-ignore by id), so even writing a batch twice would change nothing.

Raw samples get the same lateness rule as the worker's windows
(:func:`processor.folds.metrics_core.admission_limit`), judged by the stream time of the sample's lane of its
metrics partition (stored with the offsets: the raw lane's in ``sink_offsets``, the derived
lane's in ``sink_derived_times``), so the raw table holds exactly the samples the rollups count.

On PostgreSQL several sinks may share the database: they split the partitions through the
consumer group, and step 1 happens on every assignment (:mod:`processor.runtime.sink_group`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaConnectionError
from aiokafka.structs import OffsetAndMetadata

from processor.errors import BrokerError
from processor.folds.raw_gate import RawSampleGate
from processor.folds.records import Origin, Stream
from processor.runtime.admin import partition_counts
from processor.runtime.faust_app import FETCH_MAX_WAIT_MS
from processor.runtime.sink_group import Resync
from processor.runtime.supervise import Restarts, run_restarting
from processor.settings import Settings
from processor.store.conn import Connection
from processor.store.db import open_for_writing
from processor.store.pgconn import TransientError
from processor.store.retention import Retention, cleanup
from processor.store.sinkdb import (
    OffsetConflict,
    SinkBatch,
    stored_derived_times,
    stored_offsets,
    write_batch,
)
from processor.urls import DbLocation, is_postgres
from schemas.codec import decode_event
from schemas.errors import InvalidEvent
from schemas.events import MetricRecorded
from schemas.topics import Topics

if TYPE_CHECKING:
    from processor.runtime.metrics_export import MetricsAddress

log = logging.getLogger(__name__)

T = TypeVar("T")

_ATTEMPTS = 10
"""Writes of one batch tried at most when PostgreSQL ends them as deadlocked or unserializable."""

TABLE_OF_BATCH = {
    "executions": "workflow_executions_monitor", "rollups": "metric_rollups", "samples": "performance_metrics",
    "dead_letters": "dead_letters", "alerts": "alerts",
}
"""A :class:`SinkBatch`'s collections -> the tables they are written to (rows per table)."""


@dataclass
class SinkCounters:
    records: int = 0
    batches: int = 0
    late_samples: int = 0
    misrouted: int = 0
    invalid: int = 0
    unwritable: int = 0
    """Records left out of a batch because no write of them can succeed (see write_batch)."""
    by_topic: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    """Table -> rows written (upserted or inserted; an execution's steps are not counted apart)."""
    last_write_at_s: float | None = None
    """When the last transaction committed (epoch seconds)."""


class BatchBuilder:
    """Turns consumed records into a batch, in offset order per partition."""

    def __init__(self, topics: Topics, gate: RawSampleGate, counters: SinkCounters) -> None:
        self.topics = topics
        self.gate = gate
        self.counters = counters
        self._streams = {
            topics.execution_state: Stream.EXECUTION_STATE,
            topics.metric_rollups: Stream.METRIC_ROLLUPS,
            topics.dead_letter: Stream.DEAD_LETTER,
            topics.alerts: Stream.ALERTS,
        }

    def add(self, batch: SinkBatch, topic: str, partition: int, offset: int, value: bytes | None,
            key: bytes | None = None, timestamp: int | None = None) -> None:
        self.counters.records += 1
        self.counters.by_topic[topic] = self.counters.by_topic.get(topic, 0) + 1
        batch.records += 1
        stream_time = 0
        derived_time = None
        try:
            if topic == self.topics.metrics:
                self._sample(batch, partition, value)
                stream_time = self.gate.stream_times.get(partition, 0)
                derived_time = self.gate.derived_times.get(partition, 0)
            elif topic == self.topics.logs:
                if not batch.add_log_input(Origin(topic, partition, offset, timestamp), key, value):
                    self.counters.invalid += 1
            elif value is not None and topic in self._streams:  # a tombstone: the execution left the worker; its row stays
                batch.add(self._streams[topic], orjson.loads(value))
        except Exception as exc:  # noqa: BLE001 - one unreadable record never stops the sink
            self.counters.invalid += 1
            log.warning("skipping an unreadable record %s/%d/%d: %r", topic, partition, offset, exc)
        batch.consumed(topic, partition, offset + 1, stream_time, derived_time)

    def _sample(self, batch: SinkBatch, partition: int, value: bytes | None) -> None:
        try:
            event = decode_event(value or b"")
        except InvalidEvent:
            self.counters.invalid += 1  # the worker dead-letters it
            return
        if not isinstance(event, MetricRecorded):
            self.counters.invalid += 1
            return
        if self.gate.misrouted(partition, event):
            self.counters.misrouted += 1
        elif self.gate.admit(partition, event):
            batch.add_sample(event)
        else:
            self.counters.late_samples += 1


@dataclass(frozen=True, slots=True)
class SinkConfig:
    batch_size: int = 5_000
    """Records per transaction at most."""
    batch_ms: int = 20
    """A transaction at least this often while records arrive."""
    cleanup_every_s: float = 3_600.0
    retention: Retention = Retention()


class SinkRunner:
    """Consumes, batches and writes; see the module docstring for the protocol."""

    def __init__(self, settings: Settings, bootstrap: str, db_path: DbLocation, config: SinkConfig = SinkConfig()) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.db_path = db_path
        self.config = config
        self.topics = settings.topics
        self.counters = SinkCounters()
        self.on_transaction: Callable[[int, float], None] | None = None
        """Called after each transaction with (records, seconds it took): the metrics."""
        self._stopping = asyncio.Event()
        self._resync: Resync | None = None
        """Set while the sink shares a PostgreSQL database with others (group membership)."""

    @property
    def source_topics(self) -> list[str]:
        t = self.topics
        return [t.execution_state, t.metric_rollups, t.dead_letter, t.metrics, t.alerts, t.logs]

    def stop(self) -> None:
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self, *, until_idle_s: float | None = None, on_batch: Callable[[SinkCounters], None] | None = None) -> SinkCounters:
        """Run until :meth:`stop` (or, with ``until_idle_s``, until nothing arrived for that long)."""
        conn = open_for_writing(self.db_path)
        try:
            offsets = stored_offsets(conn)
            gate = RawSampleGate(
                self.settings.fold,
                {p: st for (t, p), (_, st) in offsets.items() if t == self.topics.metrics},
                {p: st for (t, p), st in stored_derived_times(conn).items() if t == self.topics.metrics},
            )
            builder = BatchBuilder(self.topics, gate, self.counters)
            shared = is_postgres(self.db_path)
            consumer = await self._consumer(offsets, assign=not shared)
            if shared:
                self._resync = Resync(conn, consumer, gate, self.topics.metrics)
                consumer.subscribe(self.source_topics, listener=self._resync)
            gate.partitions = (await partition_counts(self.bootstrap, [self.topics.metrics]))[self.topics.metrics]
            try:
                await self._loop(conn, consumer, builder, until_idle_s, on_batch)
            finally:
                await consumer.stop()
        finally:
            conn.close()
        return self.counters

    async def _consumer(self, offsets: dict[tuple[str, int], tuple[int, int]], *, assign: bool = True) -> AIOKafkaConsumer:
        """Started; with ``assign``, given every partition at its stored offset."""
        counts = await partition_counts(self.bootstrap, self.source_topics)
        missing = [t for t in self.source_topics if t not in counts]
        if missing:
            raise BrokerError(f"topics {', '.join(missing)} do not exist: start 'axmon worker' first (it creates them)")
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=f"{self.topics.prefix}sink",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,  # not aiokafka's 500: quiet topics held busy ones back
        )
        try:
            await consumer.start()
        except KafkaConnectionError as exc:
            raise BrokerError(f"cannot reach Kafka at {self.bootstrap}: {exc}") from exc
        if not assign:
            return consumer
        tps = [TopicPartition(t, p) for t in self.source_topics for p in range(counts[t])]
        consumer.assign(tps)
        for tp in tps:
            stored = offsets.get((tp.topic, tp.partition))
            if stored is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, stored[0])
        return consumer

    async def _loop(
        self,
        conn: Connection,
        consumer: AIOKafkaConsumer,
        builder: BatchBuilder,
        until_idle_s: float | None,
        on_batch: Callable[[SinkCounters], None] | None,
    ) -> None:
        cfg = self.config
        last_record = time.monotonic()
        last_cleanup = time.monotonic()
        while not self._stopping.is_set():
            batch = SinkBatch()
            deadline = time.monotonic() + cfg.batch_ms / 1000
            while batch.records < cfg.batch_size and not self._stopping.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                fetched = await consumer.getmany(timeout_ms=max(1, int(remaining * 1000)), max_records=cfg.batch_size - batch.records)
                if self._resync is not None and self._resync.changed:  # a rebalance: start again from the database
                    self._resync.changed = False
                    self._resync.resync()
                    batch = SinkBatch()
                    continue
                for tp, messages in fetched.items():
                    for m in messages:
                        builder.add(batch, tp.topic, tp.partition, m.offset, m.value, m.key, m.timestamp)
            if batch.records:
                started = time.perf_counter()
                try:
                    skipped = self._write(conn, batch)
                except OffsetConflict as exc:
                    log.info("%s: consuming again from the stored offsets", exc)
                    if self._resync is not None:
                        self._resync.resync()
                    continue
                for what in skipped:
                    self.counters.unwritable += 1
                    log.error("left out a record that cannot be stored: %s", what)
                self._count_transaction(batch, time.perf_counter() - started)
                last_record = time.monotonic()
                await self._commit_to_kafka(consumer, batch)
                if on_batch is not None:
                    on_batch(self.counters)
            elif until_idle_s is not None and time.monotonic() - last_record >= until_idle_s:
                return
            if time.monotonic() - last_cleanup >= cfg.cleanup_every_s:
                report = self._retried(lambda: cleanup(conn, int(time.time() * 1000), cfg.retention))
                log.info("retention: %s", report)
                last_cleanup = time.monotonic()

    def _write(self, conn: Connection, batch: SinkBatch) -> list[str]:
        """:func:`write_batch`, fenced when sinks share the database."""
        return self._retried(lambda: write_batch(conn, batch, fenced=self._resync is not None))

    @staticmethod
    def _retried(transaction: Callable[[], T]) -> T:
        """``transaction()``, again when PostgreSQL ended it as deadlocked (it was rolled back)."""
        for attempt in range(_ATTEMPTS - 1):
            try:
                return transaction()
            except TransientError:
                time.sleep(0.05 * (attempt + 1))
        return transaction()

    def _count_transaction(self, batch: SinkBatch, seconds: float) -> None:
        counters = self.counters
        counters.batches += 1
        counters.last_write_at_s = time.time()
        for name, table in TABLE_OF_BATCH.items():
            written = len(getattr(batch, name))
            if written:
                counters.rows[table] = counters.rows.get(table, 0) + written
        if self.on_transaction is not None:
            self.on_transaction(batch.records, seconds)

    async def _commit_to_kafka(self, consumer: AIOKafkaConsumer, batch: SinkBatch) -> None:
        try:
            await consumer.commit({TopicPartition(t, p): OffsetAndMetadata(o, "") for (t, p), (o, _) in batch.offsets.items()})
        except Exception as exc:  # informational only: the database holds the real offsets
            log.debug("could not commit offsets to Kafka: %r", exc)


def run_sink(settings: Settings, bootstrap: str, db_path: DbLocation, config: SinkConfig, *, report: Callable[[SinkCounters], None] | None = None,
             metrics_at: MetricsAddress | None = None) -> SinkCounters:
    """Run until SIGTERM/SIGINT; the batch in progress is written before exiting. With
    ``metrics_at``, serve its metrics and the consumer lag of every axmon group there."""

    async def main() -> SinkCounters:
        runner = SinkRunner(settings, bootstrap, db_path, config)
        restarts = Restarts()
        if metrics_at is not None:
            from processor.runtime.metrics_collectors import serve_sink_metrics

            serve_sink_metrics(runner, restarts, metrics_at)

        async def pause(seconds: float) -> bool:
            await asyncio.sleep(seconds)
            return False

        # the database is consistent at every commit: an attempt starts over from its offsets
        return await run_restarting("sink", runner, lambda: runner.run(on_batch=report), pause, restarts)

    return asyncio.run(main())
