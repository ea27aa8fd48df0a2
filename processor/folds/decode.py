"""A source record's event, or the dead letter that says why there is none."""

from __future__ import annotations

from processor.folds.records import Emit, Origin, dead_letter
from schemas.codec import decode_event
from schemas.errors import InvalidEvent
from schemas.events import Event


def decode_input(expected: type[Event], raw: bytes | None, origin: Origin, key: bytes | None) -> Event | Emit:
    """The event in a source record, or the dead letter that says why there is none."""
    try:
        event = decode_event(raw or b"")
    except InvalidEvent as exc:
        return dead_letter(exc.reason, exc.detail, origin, key, raw)
    if not isinstance(event, expected):
        return dead_letter("wrong_topic", f"{event.TYPE} does not belong on {origin.topic}", origin, key, raw)
    return event
