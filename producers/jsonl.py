"""Producing JSON lines: the path for shells and services in any language.

Each non-blank line is one event object. Lines that do not satisfy the contract are reported
with their line number and reason and skipped; every valid line is published.

Unless ``strict``, a line may leave out the envelope's bookkeeping: ``version`` defaults to the
contract version, ``event_id`` to a new UUIDv7 and ``occurred_at`` to now. (A resent line then
gets a new id: give ``event_id`` yourself where a resend must be recognised.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import orjson

from producers.client import AxmonProducer
from producers.factory import wall_clock_ms
from schemas.codec import encode_event, event_from_dict
from schemas.errors import InvalidEvent
from schemas.events import CONTRACT_VERSION, Event
from schemas.ids import uuid7


@dataclass(frozen=True, slots=True)
class LineError:
    line: int
    """1-based line number in the input."""
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class ProduceReport:
    published: int
    invalid: tuple[LineError, ...]


def parse_line(
    raw: bytes | str, *, strict: bool = False, clock: Callable[[], int] = wall_clock_ms
) -> Event:
    """One line to a validated event; raises :class:`InvalidEvent` and nothing else."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("undecodable", f"not valid JSON: {exc}") from None
    if not strict and isinstance(obj, dict):
        obj.setdefault("version", CONTRACT_VERSION)
        if obj.get("event_id") is None:
            obj["event_id"] = uuid7()
        if obj.get("occurred_at") is None:
            obj["occurred_at"] = clock()
    event = event_from_dict(obj)
    encode_event(event)  # the size limit applies to what is published, defaults filled in
    return event


def parse_lines(
    lines: Iterable[bytes | str], *, strict: bool = False, clock: Callable[[], int] = wall_clock_ms
) -> Iterator[tuple[int, Event | LineError]]:
    """``(line number, event or error)`` for every non-blank line."""
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            yield number, parse_line(raw, strict=strict, clock=clock)
        except InvalidEvent as exc:
            yield number, LineError(number, exc.reason, exc.detail)


async def produce_lines(
    producer: AxmonProducer,
    lines: Iterable[bytes | str],
    *,
    strict: bool = False,
    on_error: Callable[[LineError], None] | None = None,
) -> ProduceReport:
    """Publish every valid line, flush, and report what was skipped."""
    published = 0
    invalid: list[LineError] = []
    for _, item in parse_lines(lines, strict=strict):
        if isinstance(item, LineError):
            invalid.append(item)
            if on_error is not None:
                on_error(item)
            continue
        await producer.publish(item)
        published += 1
    await producer.flush()
    return ProduceReport(published, tuple(invalid))


