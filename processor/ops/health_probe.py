"""What ``axmon health`` looks at: the broker, the offsets and the database, gathered into a
:class:`processor.ops.observations.Observations` for the pure rules to judge.

Every failure becomes part of the observation (an error string), never an exception: a probe
that crashes tells nothing. Every Kafka request is bounded by ``timeout_s``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    GroupCoordinatorNotAvailableError,
    GroupLoadInProgressError,
    KafkaConnectionError,
    NotCoordinatorForGroupError,
)

from processor.ops.observations import (
    DatabaseObservation,
    Group,
    KafkaObservation,
    Observations,
    TopicPartitionKey,
    WorkersObservation,
)
from processor.ops.settle import sink_topics
from processor.runtime.admin import contract_topics
from processor.runtime.worker_status import WorkerStatus, decode_status
from processor.store.conn import Connection
from processor.store.db import SCHEMA_VERSION, open_read_only
from processor.urls import DbLocation, display_url
from schemas.topics import Topics

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 5.0
STATUS_TAIL = 5_000
"""Records of ``<prefix>worker-status`` read per partition: with one worker beating every 5 s,
about seven hours."""


def groups_of(topics: Topics) -> tuple[Group, ...]:
    """The consumer groups axmon runs: the Faust worker's and the sink's."""
    return (
        Group("worker", f"{topics.prefix}worker", (*topics.sources, topics.stats_changes)),
        Group("sink", f"{topics.prefix}sink", tuple(sink_topics(topics))),
    )


def describe(exc: BaseException) -> str:
    """One line: the message, led by the exception's name unless the message has it."""
    name = type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if not text:
        return name
    return text if name in text else f"{name}: {text}"


async def _bounded(work: Awaitable[T], timeout_s: float, what: str) -> T:
    try:
        return await asyncio.wait_for(work, timeout_s)
    except TimeoutError:
        raise TimeoutError(f"no answer to {what} within {timeout_s:g} s") from None


async def observe_kafka(bootstrap: str, expected: tuple[str, ...], groups: tuple[Group, ...], timeout_s: float) -> KafkaObservation:
    """Metadata (is the broker there, which topics exist), then end and committed offsets."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    consumer: AIOKafkaConsumer | None = None
    try:
        began = time.monotonic()
        try:
            await _bounded(admin.start(), timeout_s, "the bootstrap request")
            metadata = await _bounded(admin.describe_topics(None), timeout_s, "the metadata request")
        except KafkaConnectionError:
            return KafkaObservation(bootstrap, error=f"cannot connect to {bootstrap}")
        except Exception as exc:
            return KafkaObservation(bootstrap, error=describe(exc))
        metadata_ms = (time.monotonic() - began) * 1000
        # all topics, not just ours: naming a missing topic could make the broker create it
        partitions = {
            t["topic"]: len(t["partitions"])
            for t in metadata
            if t["topic"] in expected and t.get("error_code", 0) == 0 and t.get("partitions")
        }
        wanted = sorted({topic for g in groups for topic in g.topics if topic in partitions})
        tps = [TopicPartition(topic, p) for topic in wanted for p in range(partitions[topic])]
        ends: dict[TopicPartitionKey, int] = {}
        committed: dict[str, dict[TopicPartitionKey, int]] = {}
        try:
            if tps:
                consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                            request_timeout_ms=max(int(timeout_s * 1000), 10_000))
                await _bounded(consumer.start(), timeout_s, "the consumer's bootstrap")
                found = await _bounded(consumer.end_offsets(tps), timeout_s, "the end offsets request")
                ends = {(tp.topic, tp.partition): int(offset) for tp, offset in found.items()}
            for group in groups:
                mine = [tp for tp in tps if tp.topic in group.topics]
                if not mine:
                    committed[group.group_id] = {}
                    continue
                answer = await _bounded(
                    _committed(admin, group.group_id, mine), timeout_s,
                    f"the committed offsets request of {group.group_id}",
                )
                committed[group.group_id] = {
                    (tp.topic, tp.partition): int(meta.offset) for tp, meta in answer.items() if meta.offset >= 0
                }
        except Exception as exc:
            return KafkaObservation(bootstrap, metadata_ms=metadata_ms, partitions=partitions,
                                    offsets_error=describe(exc))
        return KafkaObservation(bootstrap, metadata_ms=metadata_ms, partitions=partitions, ends=ends, committed=committed)
    finally:
        await _close(consumer.stop() if consumer is not None else None, timeout_s)
        await _close(admin.close(), timeout_s)


_RETRIABLE = (GroupCoordinatorNotAvailableError, NotCoordinatorForGroupError, GroupLoadInProgressError)


async def _committed(admin: AIOKafkaAdminClient, group_id: str, tps: list[TopicPartition]) -> dict[TopicPartition, Any]:
    """The group's committed offsets. A broker that has never seen a consumer group has no
    coordinator yet (it creates ``__consumer_offsets`` on the first request): ask again until
    the caller's timeout."""
    while True:
        try:
            answer: dict[TopicPartition, Any] = await admin.list_consumer_group_offsets(group_id, partitions=tps)
            return answer
        except _RETRIABLE:
            await asyncio.sleep(0.2)


async def _close(closing: Awaitable[Any] | None, timeout_s: float) -> None:
    if closing is None:
        return
    try:
        await asyncio.wait_for(closing, timeout_s)
    except Exception:  # closing a client of a broker that went away: nothing to do about it
        pass


def observe_database(path: DbLocation) -> DatabaseObservation:
    """Read-only: existence, size, schema version, ``PRAGMA quick_check``, the sink's stored
    offsets and its last write. On PostgreSQL (a URL) there is no file: its size is unknown and
    the check is that the server answers."""
    shown = display_url(path) if isinstance(path, str) else str(path)
    size: int | None = None
    wal: int | None = None
    if isinstance(path, Path):
        if not path.exists():
            return DatabaseObservation(shown, exists=False)
        size, wal = _size(path), _size(path.with_name(path.name + "-wal"))
    try:
        conn = open_read_only(path)
    except Exception as exc:
        return DatabaseObservation(shown, exists=True, error=_database_error(exc, shown), size_bytes=size, wal_bytes=wal)
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        check = tuple(str(row[0]) for row in conn.execute("PRAGMA quick_check").fetchall())
        offsets = _optional_table(conn, "SELECT topic, partition, next_offset FROM sink_offsets")
        status = _optional_table(conn, "SELECT last_write_at FROM sink_status WHERE id = 1")
    except sqlite3.DatabaseError as exc:
        return DatabaseObservation(shown, exists=True, error=describe(exc), size_bytes=size, wal_bytes=wal)
    finally:
        conn.close()
    last_write: int | None = None
    source: str | None = None
    if status is None and isinstance(path, Path):  # written before the sink recorded its writes
        last_write, source = _mtime_ms(path), "file mtime"
    elif status:
        last_write, source = int(status[0][0]), "sink_status"
    return DatabaseObservation(
        shown, exists=True, schema_version=version, quick_check=check, size_bytes=size, wal_bytes=wal,
        sink_offsets=None if offsets is None else {(str(r[0]), int(r[1])): int(r[2]) for r in offsets},
        last_write_ms=last_write, last_write_source=source,
    )


def _database_error(exc: Exception, path: str) -> str:
    text = str(exc)
    return text[len(path) + 2:] if text.startswith(f"{path}: ") else text or describe(exc)


def _optional_table(conn: Connection, sql: str) -> list[Any] | None:
    """The rows, or ``None`` when the table does not exist."""
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _mtime_ms(path: Path) -> int | None:
    times = []
    for candidate in (path, path.with_name(path.name + "-wal")):
        try:
            times.append(int(candidate.stat().st_mtime * 1000))
        except OSError:
            pass
    return max(times, default=None)


async def observe(
    topics: Topics,
    bootstrap: str | None,
    db_path: DbLocation,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    bootstrap_error: str | None = None,
) -> Observations:
    """Everything :func:`processor.ops.health.evaluate` needs. ``bootstrap`` ``None``: there is no
    broker to ask (``bootstrap_error`` says why)."""
    expected = tuple(spec.name for spec in contract_topics(topics, 1))
    groups = groups_of(topics)
    if bootstrap is None:
        kafka = KafkaObservation(None, error=bootstrap_error or "no bootstrap address")
    else:
        kafka = await observe_kafka(bootstrap, expected, groups, timeout_s)
    workers = WorkersObservation()
    if kafka.reachable and bootstrap is not None:
        workers = await observe_workers(bootstrap, topics.worker_status, kafka.partitions.get(topics.worker_status), timeout_s)
    database = observe_database(db_path)
    return Observations(
        now_ms=int(time.time() * 1000),
        topic_prefix=topics.prefix,
        expected_topics=expected,
        source_topics=topics.sources,
        groups=groups,
        kafka=kafka,
        database=database,
        expected_schema_version=SCHEMA_VERSION,
        workers=workers,
    )


async def observe_workers(bootstrap: str, topic: str, partitions: int | None, timeout_s: float) -> WorkersObservation:
    """The latest status of every worker: ``topic`` (compacted, one key per worker process)
    read up to its end as of now, from at most :data:`STATUS_TAIL` records before it per
    partition (heartbeats pile up until compaction: the tail holds every worker that beat in
    the last hours). ``partitions`` ``None``: it does not exist."""
    if partitions is None:
        return WorkersObservation(topic_missing=True)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                                request_timeout_ms=max(int(timeout_s * 1000), 10_000))
    latest: dict[bytes, WorkerStatus | None] = {}
    try:
        await _bounded(consumer.start(), timeout_s, "the consumer's bootstrap")
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        ends = await _bounded(consumer.end_offsets(tps), timeout_s, f"the end offsets of {topic}")
        begins = await _bounded(consumer.beginning_offsets(tps), timeout_s, f"the start offsets of {topic}")
        for tp in tps:
            consumer.seek(tp, max(begins[tp], ends[tp] - STATUS_TAIL))

        async def read() -> None:
            remaining = {tp for tp in tps if ends[tp] > 0}
            while remaining:
                batch = await consumer.getmany(*remaining, timeout_ms=500)
                for tp, records in batch.items():
                    for record in records:
                        if record.offset < ends[tp] and record.key is not None:
                            latest[record.key] = decode_status(record.value)
                for tp in list(remaining):
                    if await consumer.position(tp) >= ends[tp]:
                        remaining.discard(tp)

        await _bounded(read(), timeout_s, f"reading {topic}")
    except Exception as exc:
        return WorkersObservation(error=describe(exc))
    finally:
        await _close(consumer.stop(), timeout_s)
    return WorkersObservation(tuple(s for s in latest.values() if s is not None))
