"""Kafka housekeeping: create the contract's topics with the right partition counts, and read
topics back. Thin I/O over aiokafka; nothing here decides what state is."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from processor.errors import BrokerError
from schemas.topics import Topics

COMPACTED = {"cleanup.policy": "compact"}


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    compacted: bool = False
    config: tuple[tuple[str, str], ...] = ()
    """More topic configuration."""


def contract_topics(topics: Topics, partitions: int) -> list[TopicSpec]:
    """Source topics (co-partitioned, ``partitions`` each), derived topics (compacted, the same
    partition count so that the processor's tables line up), the dead-letter topic and the
    processor's internal repartition topic."""
    return [
        TopicSpec(topics.workflow_events, partitions),
        TopicSpec(topics.metrics, partitions),
        TopicSpec(topics.logs, partitions),
        TopicSpec(topics.execution_state, partitions, compacted=True),
        TopicSpec(topics.workflow_stats, partitions, compacted=True),
        TopicSpec(topics.metric_rollups, partitions, compacted=True),
        TopicSpec(topics.dead_letter, partitions),
        TopicSpec(topics.stats_changes, partitions),
        TopicSpec(topics.alerts, partitions),
        TopicSpec(topics.alert_acks, partitions),
        TopicSpec(topics.liveness_ticks, partitions),
        # heartbeats: segments roll hourly so that compaction keeps the topic small
        TopicSpec(topics.worker_status, partitions, compacted=True, config=(("segment.ms", "3600000"),)),
    ]


async def ensure_topics(bootstrap: str, specs: Iterable[TopicSpec], timeout_ms: int = 30_000) -> list[str]:
    """Create the topics that do not exist yet; returns the names created. An existing topic
    with a different partition count raises :class:`BrokerError` (co-partitioning would break)."""
    wanted = list(specs)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms)
    try:
        await admin.start()
    except KafkaError as exc:
        raise BrokerError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    try:
        existing = await _partition_counts(admin, [s.name for s in wanted])
        for spec in wanted:
            have = existing.get(spec.name)
            if have is not None and have != spec.partitions:
                raise BrokerError(
                    f"topic {spec.name} has {have} partitions, axmon is configured for "
                    f"{spec.partitions}: use --partitions {have} (or a new topic prefix)"
                )
        missing = [s for s in wanted if s.name not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [
                        NewTopic(
                            s.name,
                            num_partitions=s.partitions,
                            replication_factor=1,
                            topic_configs={**(COMPACTED if s.compacted else {}), **dict(s.config)},
                        )
                        for s in missing
                    ],
                    timeout_ms=timeout_ms,
                )
            except TopicAlreadyExistsError:
                pass  # created concurrently by another process: fine
        return [s.name for s in missing]
    finally:
        await admin.close()


async def partition_counts(bootstrap: str, names: list[str]) -> dict[str, int]:
    """Topic -> partition count, for the named topics that exist."""
    async with _admin(bootstrap) as admin:
        return await _partition_counts(admin, names)


@asynccontextmanager
async def _admin(bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client, closed after; Kafka's errors become :class:`BrokerError`."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await admin.start()
    except KafkaError as exc:
        raise BrokerError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    try:
        yield admin
    except KafkaError as exc:
        raise BrokerError(f"Kafka at {bootstrap} did not answer: {exc}") from exc
    finally:
        await admin.close()


async def _partition_counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    wanted = set(names)
    # All topics, not just the named ones: a metadata request that names a missing topic
    # makes a broker with auto.create.topics.enable create it with its default partitions.
    metadata = await admin.describe_topics(None)
    for topic in metadata:
        if topic["topic"] in wanted and topic.get("error_code", 0) == 0 and topic.get("partitions"):
            counts[topic["topic"]] = len(topic["partitions"])
    return counts


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """Partition -> the offset the next record will get."""
    count = (await partition_counts(bootstrap, [topic])).get(topic, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        await consumer.start()
    except KafkaConnectionError as exc:
        raise BrokerError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    try:
        tps = [TopicPartition(topic, p) for p in range(count)]
        ends = await consumer.end_offsets(tps) if tps else {}
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def read_topic(
    bootstrap: str,
    topic: str,
    *,
    from_offsets: dict[int, int] | None = None,
    idle_timeout: float = 2.0,
    max_records: int | None = None,
) -> AsyncIterator[Record]:
    """Every record of ``topic`` from the earliest offset (or ``from_offsets``, per partition)
    up to its end as of the call (the high watermarks read at start), without a consumer
    group."""
    partitions = (await partition_counts(bootstrap, [topic])).get(topic, 0)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    try:
        await consumer.start()
    except KafkaConnectionError as exc:
        raise BrokerError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        if not tps:
            return
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        for tp in tps:
            if from_offsets and tp.partition in from_offsets:
                consumer.seek(tp, from_offsets[tp.partition])
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > (from_offsets or {}).get(tp.partition, 0)}
        count = 0
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=int(idle_timeout * 1000))
            if not batch:
                break
            for tp, messages in batch.items():
                for m in messages:
                    if m.offset >= ends[tp]:
                        continue
                    yield Record(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp)
                    count += 1
                    if max_records is not None and count >= max_records:
                        return
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()


async def group_offsets(
    bootstrap: str, group: str, topics: list[str]
) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
    """(committed, ends): per (topic, partition), the offset the consumer group has committed
    (0 when none) and the partition's end offset."""
    counts = await partition_counts(bootstrap, topics)
    tps = [TopicPartition(t, p) for t in topics if t in counts for p in range(counts[t])]
    if not tps:
        return {}, {}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        await admin.start()
        await consumer.start()
        committed = await admin.list_consumer_group_offsets(group, partitions=tps)
        ends = await consumer.end_offsets(tps)
    except KafkaError as exc:
        raise BrokerError(f"Kafka at {bootstrap} did not answer: {exc}") from exc
    finally:
        await consumer.stop()
        await admin.close()
    done: dict[tuple[str, int], int] = {}
    for tp in tps:
        meta = committed.get(tp)
        done[(tp.topic, tp.partition)] = meta.offset if meta is not None and meta.offset >= 0 else 0
    return done, {(tp.topic, tp.partition): ends[tp] for tp in tps}


async def group_lag(bootstrap: str, group: str, topics: list[str]) -> dict[tuple[str, int], int]:
    """(topic, partition) -> records the consumer group has not committed yet (the whole
    partition when it has committed nothing)."""
    committed, ends = await group_offsets(bootstrap, group, topics)
    return {tp: max(0, end - committed[tp]) for tp, end in ends.items()}


async def topic_max_message_bytes(bootstrap: str, names: list[str]) -> dict[str, int]:
    """Topic -> its ``max.message.bytes`` as the broker enforces it (the topic's own setting,
    else the broker's ``message.max.bytes``): the largest record batch it accepts."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    resources = [ConfigResource(ConfigResourceType.TOPIC, name, {"max.message.bytes": None}) for name in names]
    limits: dict[str, int] = {}
    async with _admin(bootstrap) as admin:
        for response in await admin.describe_configs(resources):
            for _code, _message, _type, name, entries in response.resources:
                for entry in entries:
                    if entry[0] == "max.message.bytes" and entry[1] is not None:
                        limits[name] = int(entry[1])
    return limits


def wait_for_broker(bootstrap: str, *, log_every_s: float = 10.0) -> None:
    """Block until the broker answers a metadata request."""
    waited = 0.0
    client_log = logging.getLogger("aiokafka")
    while True:
        level = client_log.level
        client_log.setLevel(logging.CRITICAL)  # one line every 10 s below, not aiokafka's every second
        try:
            asyncio.run(partition_counts(bootstrap, []))
            return
        except BrokerError as exc:
            if waited % log_every_s < 1.0:
                sys.stderr.write(f"axmon: waiting for Kafka at {bootstrap} ({exc})\n")
            time.sleep(1.0)
            waited += 1.0
        finally:
            client_log.setLevel(level)


@dataclass(frozen=True, slots=True)
class GroupMember:
    member_id: str
    client_id: str
    host: str
    assigned: tuple[tuple[str, int], ...]
    """(topic, partition), sorted: what the group's leader assigned it in this generation."""


@dataclass(frozen=True, slots=True)
class GroupDescription:
    state: str
    """The coordinator's word: ``Stable``, ``PreparingRebalance``, ``CompletingRebalance``,
    ``Empty`` or ``Dead``."""
    members: tuple[GroupMember, ...]


async def describe_group(bootstrap: str, group: str) -> GroupDescription:
    """The consumer group as its coordinator sees it: its state and each member's assignment."""
    from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

    async with _admin(bootstrap) as admin:
        responses = await admin.describe_consumer_groups([group])
    for response in responses:
        for described in response.to_object()["groups"]:
            if described["group"] != group:
                continue
            members = []
            for m in described["members"]:
                raw = m["member_assignment"]
                assigned = ConsumerProtocolMemberAssignment.decode(raw).assignment if raw else []
                members.append(GroupMember(m["member_id"], m["client_id"], m["client_host"],
                                           tuple(sorted((t, int(p)) for t, ps in assigned for p in ps))))
            return GroupDescription(described["state"], tuple(sorted(members, key=lambda m: m.member_id)))
    return GroupDescription("Dead", ())
