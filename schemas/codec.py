"""Decoding and encoding of contract events with orjson.

:func:`decode_event` takes any bytes and returns an :class:`~schemas.events.Event` or raises
:class:`~schemas.errors.InvalidEvent`; no other exception escapes it. Unknown extra fields are
kept in ``Event.extra`` and written back by :func:`encode_event`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from schemas.errors import InvalidEvent
from schemas.events import (
    CONTRACT_VERSION,
    EVENT_CLASSES,
    MAX_ID_LENGTH,
    MAX_SAFE_INTEGER,
    METRIC_TYPE_RE,
    Event,
    FieldSpec,
    Kind,
)

_ENVELOPE_KEYS = frozenset({"type", "version"})
_KNOWN_KEYS: dict[str, frozenset[str]] = {
    type_: frozenset(spec.name for spec in cls.FIELDS) | _ENVELOPE_KEYS
    for type_, cls in EVENT_CLASSES.items()
}


def decode_event(data: bytes | bytearray | memoryview | str) -> Event:
    """Parse and validate one event. Raises :class:`InvalidEvent`, and nothing else."""
    try:
        obj = orjson.loads(data)
    except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
        raise InvalidEvent("undecodable", f"not valid UTF-8 JSON: {exc}") from None
    return event_from_dict(obj)


def event_from_dict(obj: Any) -> Event:
    """Validate a parsed JSON value as an event. Raises :class:`InvalidEvent`, and nothing else."""
    if not isinstance(obj, dict):
        raise InvalidEvent("not_an_object", f"an event is a JSON object, not {_json_kind(obj)}")
    type_ = obj.get("type")
    if type_ is None:
        raise InvalidEvent("missing_field", "'type' is required", "type")
    cls = EVENT_CLASSES.get(type_) if isinstance(type_, str) else None
    if cls is None:
        raise InvalidEvent("unknown_type", f"unknown event type {_short(type_)}", "type")
    version = obj.get("version")
    if version is None:
        raise InvalidEvent("missing_field", "'version' is required", "version")
    if type(version) is not int or version != CONTRACT_VERSION:
        raise InvalidEvent(
            "unknown_version",
            f"{type_} version {_short(version)} is not supported (this is contract v{CONTRACT_VERSION})",
            "version",
        )
    values: dict[str, Any] = {}
    for spec in cls.FIELDS:
        raw = obj.get(spec.name)
        if raw is None:
            if spec.required:
                raise InvalidEvent("missing_field", f"{type_}: '{spec.name}' is required", spec.name)
            continue
        values[spec.name] = _check(type_, spec, raw)
    known = _KNOWN_KEYS[type_]
    extra = {k: v for k, v in obj.items() if k not in known}
    return cls(extra=extra, **values)


def event_to_dict(event: Event) -> dict[str, Any]:
    """The JSON object of an event: extra fields, then the envelope and the known fields
    (``None`` optionals omitted)."""
    out: dict[str, Any] = dict(event.extra)
    out["type"] = event.TYPE
    out["version"] = CONTRACT_VERSION
    for spec in event.FIELDS:
        value = getattr(event, spec.name)
        if value is not None:
            out[spec.name] = value
    return out


def encode_event(event: Event) -> bytes:
    """The event as compact UTF-8 JSON bytes."""
    return orjson.dumps(event_to_dict(event))


def _check(type_: str, spec: FieldSpec, value: Any) -> Any:
    """``value`` as the field's kind wants it, or :class:`InvalidEvent` (one dict lookup picks
    the check: this runs for every field of every event)."""
    return _CHECKS[spec.kind](type_, spec, value)


def _check_id(type_: str, spec: FieldSpec, value: Any) -> Any:
    if isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH:
        return value
    return _invalid(type_, spec, value, f"a non-empty string of at most {MAX_ID_LENGTH} characters")


def _check_text(type_: str, spec: FieldSpec, value: Any) -> Any:
    if isinstance(value, str):
        return value
    return _invalid(type_, spec, value, "a string")


def _check_whole(type_: str, spec: FieldSpec, value: Any) -> Any:
    if type(value) is int and 0 <= value <= MAX_SAFE_INTEGER:
        return value
    if type(value) is float and value.is_integer() and 0 <= value <= MAX_SAFE_INTEGER:
        return int(value)
    return _invalid(type_, spec, value, "a whole number >= 0")


def _check_amount(type_: str, spec: FieldSpec, value: Any) -> Any:
    if type(value) in (int, float) and math.isfinite(value) and value >= 0:
        return value
    return _invalid(type_, spec, value, "a finite number >= 0")


def _check_number(type_: str, spec: FieldSpec, value: Any) -> Any:
    if type(value) in (int, float) and math.isfinite(value):
        return value
    return _invalid(type_, spec, value, "a finite number")


def _check_object(type_: str, spec: FieldSpec, value: Any) -> Any:
    if isinstance(value, dict):
        return value
    return _invalid(type_, spec, value, "a JSON object")


def _check_labels(type_: str, spec: FieldSpec, value: Any) -> Any:
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        return value
    return _invalid(type_, spec, value, "a JSON object of string values")


def _check_metric_type(type_: str, spec: FieldSpec, value: Any) -> Any:
    if isinstance(value, str) and len(value) <= MAX_ID_LENGTH and METRIC_TYPE_RE.match(value):
        return value
    return _invalid(type_, spec, value, "a dotted lowercase name such as 'api.request.duration'")


_CHECKS: dict[Kind, Callable[[str, FieldSpec, Any], Any]] = {
    Kind.ID: _check_id,
    Kind.TEXT: _check_text,
    Kind.COUNT: _check_whole,
    Kind.EPOCH_MS: _check_whole,
    Kind.AMOUNT: _check_amount,
    Kind.NUMBER: _check_number,
    Kind.OBJECT: _check_object,
    Kind.LABELS: _check_labels,
    Kind.METRIC_TYPE: _check_metric_type,
}
assert set(_CHECKS) == set(Kind), "every kind has its check"


def _invalid(type_: str, spec: FieldSpec, value: Any, expected: str) -> Any:
    raise InvalidEvent(
        "invalid_field",
        f"{type_}: '{spec.name}' must be {expected}, got {_short(value)}",
        spec.name,
    )


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "null"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_event(fields: Mapping[str, Any]) -> Event:
    """Build a validated event from a mapping of field values (``type`` included, ``version``
    optional): the path the SDK and ``axmon produce`` take, identical to decoding."""
    obj = dict(fields)
    obj.setdefault("version", CONTRACT_VERSION)
    return event_from_dict(obj)
