"""What the processing core hands to its transport: records for the derived topics, dead
letters, and the small protocol of a key-value store. Pure."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

import orjson

from schemas.limits import MAX_EVENT_BYTES


class Stream(Enum):
    """Where an emitted record goes; the runtime maps each to a topic name."""

    EXECUTION_STATE = "execution_state"
    WORKFLOW_STATS = "workflow_stats"
    METRIC_ROLLUPS = "metric_rollups"
    DEAD_LETTER = "dead_letter"
    METRICS = "metrics"
    """Derived samples go back to the source metrics topic, and so do samples forwarded to
    the partition of their series."""
    STATS_CHANGES = "stats_changes"
    """Internal: execution contributions, keyed by tenant."""
    ALERTS = "alerts"
    """Alert transitions, keyed by alert id."""
    WORKFLOW_EVENTS = "workflow_events"
    """A lifecycle event forwarded to the partition its key belongs to."""


@dataclass(frozen=True, slots=True)
class Emit:
    stream: Stream
    key: bytes | None
    value: bytes | None
    """``None`` is a tombstone (on compacted topics)."""
    partition: int | None = None
    """``None``: the partition Kafka's default partitioner gives the key."""
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an input record came from."""

    topic: str
    partition: int
    offset: int
    timestamp: int | None = None
    forwarded_from: Origin | None = None
    """For a record the worker forwarded from the partition it was first produced on (see
    :mod:`processor.folds.routing`): where that original is."""

    @property
    def first(self) -> Origin:
        """Where the record was first produced."""
        return self.forwarded_from or self


FORWARDED_FROM = "axmon-forwarded-from"
"""The header that marks a forwarded record and names its original: JSON
``{"topic", "partition", "offset", "timestamp"}``."""


def forwarded_header(origin: Origin) -> tuple[str, bytes]:
    first = origin.first
    return FORWARDED_FROM, orjson.dumps(
        {"topic": first.topic, "partition": first.partition, "offset": first.offset, "timestamp": first.timestamp}
    )


def origin_of(topic: str, partition: int, offset: int, timestamp: int | None, headers: Any) -> Origin:
    """The origin of a consumed record (``headers`` as Kafka clients give them: pairs or a
    mapping); a malformed forwarding header is ignored (the record is then its own original)."""
    pairs = headers.items() if isinstance(headers, dict) else (headers or ())
    for name, raw in pairs:
        if name != FORWARDED_FROM:
            continue
        try:
            first = orjson.loads(raw)
            ts = first.get("timestamp")
            forwarded = Origin(str(first["topic"]), int(first["partition"]), int(first["offset"]), None if ts is None else int(ts))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            break
        return Origin(topic, partition, offset, timestamp, forwarded)
    return Origin(topic, partition, offset, timestamp)


def dead_letter(reason: str, detail: str, origin: Origin, key: bytes | None, value: bytes | None) -> Emit:
    """A dead letter: the reason, the original bytes (base64) and where they came from (the
    original's coordinates for a forwarded record, so that every copy names the same one).
    Bytes beyond the contract's event size are cut (the detail says so), so that the dead
    letter itself always fits in a Kafka record."""
    origin = origin.first
    if value is not None and len(value) > MAX_EVENT_BYTES:
        detail = f"{detail} (value cut to its first {MAX_EVENT_BYTES} of {len(value)} bytes)"
        value = value[:MAX_EVENT_BYTES]
    if key is not None and len(key) > MAX_EVENT_BYTES:
        key = key[:MAX_EVENT_BYTES]
    record = {
        "reason": reason,
        "detail": detail,
        "topic": origin.topic,
        "partition": origin.partition,
        "offset": origin.offset,
        "timestamp": origin.timestamp,
        "key": None if key is None else base64.b64encode(key).decode(),
        "value": None if value is None else base64.b64encode(value).decode(),
    }
    return Emit(
        Stream.DEAD_LETTER,
        f"{origin.topic}/{origin.partition}/{origin.offset}".encode(),
        orjson.dumps(record),
    )


def json_emit(stream: Stream, key: str | bytes, value: Any) -> Emit:
    return Emit(stream, key.encode() if isinstance(key, str) else key, None if value is None else orjson.dumps(value))


class Store(Protocol):
    """The key-value table a core keeps its state in: a Faust table live, a dict in replay.
    Values are JSON-able dicts; a stored value is never mutated, only replaced."""

    def get(self, key: str) -> Any: ...

    def __setitem__(self, key: str, value: Any) -> None: ...

    def __delitem__(self, key: str) -> None: ...

    def items(self) -> Iterable[tuple[str, Any]]: ...


class Keyspace:
    """The keys of ``inner`` under ``prefix``, as a :class:`Store` of their own (``items`` yields
    only them, without the prefix); with ``prefix=""``, every key not under one of ``exclude``.

    Two cores whose writes must persist in one order (the metric windows and the alert states
    evaluated when a window closes) keep them in one table, each in its own keyspace: a table's
    changelog partition persists its writes as a prefix, two tables' partitions do not."""

    def __init__(self, inner: Store, prefix: str = "", exclude: tuple[str, ...] = ()) -> None:
        self.inner = inner
        self.prefix = prefix
        self.exclude = exclude

    def get(self, key: str) -> Any:
        return self.inner.get(self.prefix + key)

    def __setitem__(self, key: str, value: Any) -> None:
        self.inner[self.prefix + key] = value

    def set_encoded(self, key: str, raw: bytes, value: Any = None) -> None:
        set_encoded = getattr(self.inner, "set_encoded", None)
        if set_encoded is None:
            self.inner[self.prefix + key] = orjson.loads(raw) if value is None else value
        else:
            set_encoded(self.prefix + key, raw, value)

    def __delitem__(self, key: str) -> None:
        del self.inner[self.prefix + key]

    def items(self) -> Iterable[tuple[str, Any]]:
        n = len(self.prefix)
        for key, value in self.inner.items():
            if key.startswith(self.prefix) and not key.startswith(self.exclude):
                yield key[n:], value
