"""``axmon replay``: rebuild the database from the source topics.

The topics are the truth. Replay reads ``axmon.workflow-events`` and ``axmon.metrics`` partition
by partition in offset order, folds them with the same cores the worker uses (lateness and
window closing judged by the same per-partition stream time) and writes through the same sink
code (:mod:`processor.store.sinkdb`). No Faust and no derived topics on this path.

- Execution state is always rebuilt from the whole history: a state needs all its events.
- ``from_ms`` limits the metric samples (and windows) kept, by event time; skipping older
  samples changes no lateness decision about the samples kept (they are newer than anything
  skipped).
- ``until_ms`` reads the topics as they stood then: records appended after it are not read.
- Derived samples (``axmon.processor``) are read back from the metrics topic, not derived again.
- A record on a partition its key does not hash to is skipped: the live worker forwarded it to
  its home partition, where replay folds the copy at the same offset (:mod:`processor.folds.routing`).
- The new database is built as ``<db>.partial`` and renamed when complete; an interrupted replay
  leaves no broken file. ``swap_into`` then copies it into the live database with SQLite's
  backup API, in one transaction: readers see the old or the new database, never a mix.

The rebuilt database also records where a live sink should continue: the metrics topic's
offsets and stream times where replay stopped, and the derived topics' end offsets as they were
before replay began (records after those are snapshots that only bring it up to date).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaConnectionError

from processor.errors import BrokerError, ConfigError
from processor.folds.alerting import Ack, AlertCore
from processor.folds.decode import decode_input
from processor.folds.lifecycle_core import LifecycleCore
from processor.folds.metrics_core import MetricsCore
from processor.folds.raw_gate import RawSampleGate
from processor.folds.records import Emit, Origin, dead_letter, origin_of
from processor.folds.routing import Router
from processor.folds.rules import RuleSet
from processor.folds.windows import window_start
from processor.runtime.admin import partition_counts
from processor.settings import Settings
from processor.store.db import open_for_writing
from processor.store.sinkdb import SinkBatch, write_batch
from schemas.events import LifecycleEvent, MetricRecorded

FLUSH_EVERY = 20_000
"""Records per transaction while replaying."""

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    db_path: Path
    from_ms: int | None = None
    until_ms: int | None = None
    rules: RuleSet = RuleSet()
    """The worker's alert rules: alerts are rebuilt from the metrics and the acks."""


@dataclass(frozen=True, slots=True)
class ReplayProgress:
    done: int
    total: int
    elapsed_s: float

    @property
    def rate(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass(frozen=True, slots=True)
class ReplayResult:
    records: int
    executions: int
    samples: int
    rollups: int
    dead_letters: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


class _Rebuild:
    """Cores with in-memory stores, and the batch they fill."""

    def __init__(self, settings: Settings, plan: ReplayPlan, conn: sqlite3.Connection) -> None:
        self.topics = settings.topics
        self.plan = plan
        self.conn = conn
        self.router = Router(None)
        self.lifecycle = LifecycleCore({}, settings.fold, derive=False, router=self.router)  # type: ignore[arg-type]
        self.alerts = AlertCore({}, plan.rules)  # type: ignore[arg-type]
        self.metrics = MetricsCore({}, settings.fold, self.alerts, router=self.router)  # type: ignore[arg-type]
        self.gate = RawSampleGate(settings.fold, {})
        self.window_ms = settings.window_ms
        self.batch = SinkBatch()
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

    def _before_from(self, sample: MetricRecorded) -> bool:
        return self.plan.from_ms is not None and window_start(sample.occurred_at, self.window_ms) < self.plan.from_ms

    def _take(self, emits: list[Emit]) -> None:
        for emit in emits:
            if emit.value is not None:
                self.batch.add(emit.stream, orjson.loads(emit.value))
        self.batch.records += 1
        if self.batch.records >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        self.counts["executions"] += len(self.batch.executions)
        self.counts["samples"] += len(self.batch.samples)
        self.counts["rollups"] += len(self.batch.rollups)
        self.counts["dead_letters"] += len(self.batch.dead_letters)
        for skipped in write_batch(self.conn, self.batch):
            log.error("left out a record that cannot be stored: %s", skipped)
        self.batch = SinkBatch()

    def finish(self, now_ms: int, derived_ends: dict[tuple[str, int], int]) -> None:
        self._take(self.metrics.finish(now_ms))
        for (topic, partition), offset in derived_ends.items():
            self.batch.consumed(topic, partition, offset, 0)
        self.flush()


async def replay(
    settings: Settings,
    bootstrap: str,
    plan: ReplayPlan,
    *,
    on_progress: Callable[[ReplayProgress], None] | None = None,
) -> ReplayResult:
    """Rebuild ``plan.db_path`` from the source topics. It must not exist yet."""
    target = plan.db_path
    if target.exists():
        raise ConfigError(f"{target} exists: replay builds a new database (choose another --db, or --swap to replace the live one)")
    partial = target.with_name(target.name + ".partial")
    for leftover in _sqlite_files(partial):
        leftover.unlink(missing_ok=True)
    began = time.monotonic()
    try:
        conn = open_for_writing(partial)
        try:
            rebuild = _Rebuild(settings, plan, conn)
            records = await _read_sources(settings, bootstrap, plan, rebuild, on_progress, began)
            conn.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
        finally:
            conn.close()
        os.replace(partial, target)
    except BaseException:
        for leftover in _sqlite_files(partial):
            leftover.unlink(missing_ok=True)
        raise
    c = rebuild.counts
    return ReplayResult(records, c["executions"], c["samples"], c["rollups"], c["dead_letters"], time.monotonic() - began)


def _sqlite_files(path: Path) -> list[Path]:
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"), path.with_name(path.name + "-journal")]


async def _read_sources(
    settings: Settings,
    bootstrap: str,
    plan: ReplayPlan,
    rebuild: _Rebuild,
    on_progress: Callable[[ReplayProgress], None] | None,
    began: float,
) -> int:
    t = settings.topics
    derived = [t.execution_state, t.metric_rollups, t.dead_letter, t.alerts]
    counts = await partition_counts(bootstrap, [*t.sources, *derived, t.alert_acks, t.logs])
    missing = [name for name in t.sources if name not in counts]
    if missing:
        raise BrokerError(f"source topics {', '.join(missing)} do not exist at {bootstrap}")
    rebuild.route(counts)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024)
    try:
        await consumer.start()
    except KafkaConnectionError as exc:
        raise BrokerError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    try:
        derived_tps = [TopicPartition(name, p) for name in derived if name in counts for p in range(counts[name])]
        derived_ends = {(tp.topic, tp.partition): o for tp, o in (await consumer.end_offsets(derived_tps)).items()} if derived_tps else {}
        sources = [TopicPartition(name, p) for name in t.sources for p in range(counts[name])]
        sources += [TopicPartition(t.logs, p) for p in range(counts.get(t.logs, 0))]  # none before logs existed
        starts = await consumer.beginning_offsets(sources)
        ends = await _until_offsets(consumer, sources, plan.until_ms)
        total = sum(max(0, ends[tp] - starts[tp]) for tp in sources)
        done = 0
        for tp in sources:  # one partition at a time, in offset order
            acks: list[Any] = []
            if tp.topic == t.metrics and t.alert_acks in counts and tp.partition < counts[t.alert_acks]:
                acks = await _read_all(consumer, TopicPartition(t.alert_acks, tp.partition), plan.until_ms)
            if ends[tp] <= starts[tp]:
                for ack in acks:
                    rebuild.ack_record(Origin(ack.topic, ack.partition, ack.offset, ack.timestamp), ack.key, ack.value)
                continue
            handle = {t.workflow_events: rebuild.lifecycle_record, t.logs: rebuild.log_record}.get(tp.topic, rebuild.metrics_record)
            consumer.assign([tp])
            consumer.seek(tp, starts[tp])
            position = starts[tp]
            while position < ends[tp]:
                fetched = await consumer.getmany(tp, timeout_ms=2_000, max_records=10_000)
                for message in fetched.get(tp, ()):
                    if message.offset >= ends[tp]:
                        break
                    # acks in the order the live worker most likely met them: by log time
                    while acks and acks[0].timestamp <= message.timestamp:
                        ack = acks.pop(0)
                        rebuild.ack_record(Origin(ack.topic, ack.partition, ack.offset, ack.timestamp), ack.key, ack.value)
                    handle(origin_of(tp.topic, tp.partition, message.offset, message.timestamp, message.headers), message.key, message.value)
                    done += 1
                position = await consumer.position(tp)
                if on_progress is not None:
                    on_progress(ReplayProgress(done, total, time.monotonic() - began))
            for ack in acks:
                rebuild.ack_record(Origin(ack.topic, ack.partition, ack.offset, ack.timestamp), ack.key, ack.value)
        rebuild.finish(int(time.time() * 1000), derived_ends)
        return done
    finally:
        await consumer.stop()


async def _read_all(consumer: AIOKafkaConsumer, tp: TopicPartition, until_ms: int | None) -> list[Any]:
    """Every record of one (small) partition, up to ``until_ms``."""
    start = (await consumer.beginning_offsets([tp]))[tp]
    end = (await _until_offsets(consumer, [tp], until_ms))[tp]
    records: list[Any] = []
    if end <= start:
        return records
    consumer.assign([tp])
    consumer.seek(tp, start)
    while not records or records[-1].offset < end - 1:
        fetched = await consumer.getmany(tp, timeout_ms=2_000, max_records=10_000)
        records += [m for m in fetched.get(tp, ()) if m.offset < end]
    return records


async def _until_offsets(consumer: AIOKafkaConsumer, tps: list[TopicPartition], until_ms: int | None) -> dict[TopicPartition, int]:
    ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
    if until_ms is None:
        return ends
    found = await consumer.offsets_for_times({tp: until_ms for tp in tps})
    return {tp: (found[tp].offset if found.get(tp) is not None else ends[tp]) for tp in tps}


def swap_into(new_db: Path, live_db: Path) -> None:
    """Copy ``new_db`` over ``live_db`` in one SQLite transaction (the backup API), so readers
    see either the old or the new database. Stop the live sink first: its offsets are replaced
    with the new database's, and it resumes from them."""
    source = sqlite3.connect(f"file:{new_db}?mode=ro", uri=True)
    try:
        dest = open_for_writing(live_db)
        try:
            source.backup(dest)
        finally:
            dest.close()
    finally:
        source.close()


def summary(result: ReplayResult) -> dict[str, Any]:
    return {name: getattr(result, name) for name in ReplayResult.__slots__} | {"rate": result.rate}
