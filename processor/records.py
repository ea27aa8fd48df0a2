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
    """Derived samples go back to the source metrics topic."""
    STATS_CHANGES = "stats_changes"
    """Internal: execution contributions, keyed by tenant."""
    ALERTS = "alerts"
    """Alert transitions, keyed by alert id."""


@dataclass(frozen=True, slots=True)
class Emit:
    stream: Stream
    key: bytes | None
    value: bytes | None
    """``None`` is a tombstone (on compacted topics)."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an input record came from."""

    topic: str
    partition: int
    offset: int
    timestamp: int | None = None


def dead_letter(reason: str, detail: str, origin: Origin, key: bytes | None, value: bytes | None) -> Emit:
    """A dead letter: the reason, the original bytes (base64) and where they came from. Bytes
    beyond the contract's event size are cut (the detail says so), so that the dead letter
    itself always fits in a Kafka record."""
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
