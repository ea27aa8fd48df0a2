"""``axmon tail``: follow a topic and print its records, for people or for pipes.

Reads without a consumer group (nothing is committed, nothing is disturbed): from the end by
default, or from the beginning; optionally only one key.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaConnectionError

from processor.errors import BrokerError, ConfigError
from processor.runtime.admin import partition_counts


@dataclass(frozen=True, slots=True)
class TailRecord:
    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None

    def to_json(self) -> dict[str, Any]:
        """Stable keys; the key as text when it is UTF-8, the value parsed when it is JSON."""
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "timestamp": self.timestamp,
            "key": _text(self.key),
            "value": _value(self.value),
        }


def _text(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(raw).decode()


def _value(raw: bytes | None) -> Any:
    if raw is None:
        return None  # a tombstone
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _text(raw)


def render(record: TailRecord) -> str:
    """One record for people: time, partition/offset, key, then the value (pretty JSON)."""
    try:
        when = dt.datetime.fromtimestamp(record.timestamp / 1000).isoformat(timespec="milliseconds")
    except (OverflowError, ValueError, OSError):  # a producer may stamp any 64-bit time
        when = f"epoch {record.timestamp} ms"
    head = f"{when}  {record.topic}[{record.partition}]@{record.offset}  key={_text(record.key)}"
    value = _value(record.value)
    body = "(tombstone)" if value is None else orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
    return f"{head}\n{body}"


async def tail(
    bootstrap: str,
    topic: str,
    emit: Callable[[TailRecord], None],
    *,
    from_beginning: bool = False,
    key: str | None = None,
    limit: int | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Print records of ``topic`` as they arrive until ``stop`` is set or ``limit`` records
    were printed; returns how many were."""
    counts = await partition_counts(bootstrap, [topic])
    if topic not in counts:
        raise ConfigError(f"no topic {topic!r} at {bootstrap}")
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        await consumer.start()
    except KafkaConnectionError as exc:
        raise BrokerError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    wanted = key.encode() if key is not None else None
    shown = 0
    try:
        tps = [TopicPartition(topic, p) for p in range(counts[topic])]
        consumer.assign(tps)
        if from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            await consumer.seek_to_end(*tps)
        while stop is None or not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                for m in messages:
                    if wanted is not None and m.key != wanted:
                        continue
                    emit(TailRecord(m.topic, m.partition, m.offset, m.timestamp, m.key, m.value))
                    shown += 1
                    if limit is not None and shown >= limit:
                        return shown
        return shown
    finally:
        await consumer.stop()
