"""Decoding and encoding of contract events with orjson.

:func:`decode_event` takes any bytes and returns an :class:`~schemas.events.Event` or raises
:class:`~schemas.errors.InvalidEvent`; no other exception escapes it. Unknown extra fields are
kept in ``Event.extra`` and written back by :func:`encode_event`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from schemas.errors import InvalidEvent
from schemas.events import (
    CONTRACT_VERSION,
    EVENT_CLASSES,
    LOG_LEVELS,
    METRIC_TYPE_RE,
    Event,
    FieldSpec,
    Kind,
)
from schemas.limits import (
    ID_PATTERN,
    MAX_ABS_VALUE,
    MAX_DEPTH,
    MAX_EVENT_BYTES,
    MAX_ID_LENGTH,
    MAX_LABEL_NAME_LENGTH,
    MAX_LABEL_VALUE_LENGTH,
    MAX_LABELS,
    MAX_SAFE_INTEGER,
    SPAN_ID_PATTERN,
    TRACE_ID_PATTERN,
)

_ID_RE = re.compile(ID_PATTERN)
_TRACE_ID_RE = re.compile(TRACE_ID_PATTERN)
_SPAN_ID_RE = re.compile(SPAN_ID_PATTERN)

_ENVELOPE_KEYS = frozenset({"type", "version"})
_KNOWN_KEYS: dict[str, frozenset[str]] = {
    type_: frozenset(spec.name for spec in cls.FIELDS) | _ENVELOPE_KEYS
    for type_, cls in EVENT_CLASSES.items()
}


def decode_event(data: bytes | bytearray | memoryview | str) -> Event:
    """Parse and validate one event. Raises :class:`InvalidEvent`, and nothing else."""
    size = len(data) if not isinstance(data, str) else len(data.encode("utf-8", "surrogatepass"))
    if size > MAX_EVENT_BYTES:
        raise InvalidEvent("too_large", f"an event is at most {MAX_EVENT_BYTES} bytes of JSON, this one has {size}")
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
    for name, required, spec, check in _FIELD_PLANS[type_]:
        raw = obj.get(name)
        if raw is None:
            if required:
                raise InvalidEvent("missing_field", f"{type_}: '{name}' is required", name)
            continue
        values[name] = check(type_, spec, raw)
    if "span_id" in values and "trace_id" not in values:
        raise InvalidEvent("missing_field", f"{type_}: 'span_id' needs 'trace_id'", "trace_id")
    check_depth(obj)
    known = _KNOWN_KEYS[type_]
    extra = {k: v for k, v in obj.items() if k not in known}
    return cls(extra=extra, **values)


def check_depth(obj: Any) -> None:
    """Raise ``too_deep`` when JSON containers in ``obj`` nest deeper than :data:`MAX_DEPTH`
    (``obj`` itself is level 1). Iterative: no recursion limit of its own."""
    level: list[tuple[Any, int]] = [(obj, 1)]
    while level:
        value, depth = level.pop()
        children = value.values() if isinstance(value, dict) else value
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > MAX_DEPTH:
                    raise InvalidEvent("too_deep", f"an event nests JSON objects and arrays at most {MAX_DEPTH} levels deep")
                if child:
                    level.append((child, depth + 1))


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
    """The event as compact UTF-8 JSON bytes. Raises :class:`InvalidEvent` (``too_large``, or
    ``too_deep``/``unencodable`` for an event built around the decoder) when the contract's
    limits would refuse to decode them."""
    try:
        data = orjson.dumps(event_to_dict(event))
    except TypeError as exc:  # nested beyond orjson's limit, or a value JSON cannot hold
        check_depth(event_to_dict(event))
        raise InvalidEvent("unencodable", f"{event.TYPE}: not encodable as JSON: {exc}") from None
    if len(data) > MAX_EVENT_BYTES:
        raise InvalidEvent("too_large", f"an event is at most {MAX_EVENT_BYTES} bytes of JSON, this one has {len(data)}")
    return data


def _check_id(type_: str, spec: FieldSpec, value: Any) -> Any:
    if isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH and _ID_RE.fullmatch(value):
        return value
    return _invalid(type_, spec, value, f"a non-empty string of at most {MAX_ID_LENGTH} characters, no control characters")


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
    if type(value) in (int, float) and 0 <= value <= MAX_ABS_VALUE:
        return value
    if _finite(value) and value > 0:
        return _out_of_range(type_, spec, value, f"[0, {MAX_ABS_VALUE:g}]")
    return _invalid(type_, spec, value, "a finite number >= 0")


def _check_number(type_: str, spec: FieldSpec, value: Any) -> Any:
    if type(value) in (int, float) and -MAX_ABS_VALUE <= value <= MAX_ABS_VALUE:
        return value
    if _finite(value):
        return _out_of_range(type_, spec, value, f"[{-MAX_ABS_VALUE:g}, {MAX_ABS_VALUE:g}]")
    return _invalid(type_, spec, value, "a finite number")


def _check_object(type_: str, spec: FieldSpec, value: Any) -> Any:
    if isinstance(value, dict):
        return value
    return _invalid(type_, spec, value, "a JSON object")


def _check_labels(type_: str, spec: FieldSpec, value: Any) -> Any:
    if (
        isinstance(value, dict)
        and len(value) <= MAX_LABELS
        and all(
            isinstance(v, str) and len(v) <= MAX_LABEL_VALUE_LENGTH and 0 < len(k) <= MAX_LABEL_NAME_LENGTH
            for k, v in value.items()
        )
    ):
        return value
    return _invalid(
        type_, spec, value,
        f"a JSON object of at most {MAX_LABELS} string values (names of 1 to {MAX_LABEL_NAME_LENGTH} characters, "
        f"values of at most {MAX_LABEL_VALUE_LENGTH})",
    )


def _check_metric_type(type_: str, spec: FieldSpec, value: Any) -> Any:
    if isinstance(value, str) and len(value) <= MAX_ID_LENGTH and METRIC_TYPE_RE.fullmatch(value):
        return value
    return _invalid(type_, spec, value, "a dotted lowercase name such as 'api.request.duration'")


def _check_trace_id(type_: str, spec: FieldSpec, value: Any) -> Any:
    if isinstance(value, str) and _TRACE_ID_RE.fullmatch(value):
        return value
    return _invalid(type_, spec, value, "a W3C trace id: 32 lowercase hex digits, not all zero")


def _check_span_id(type_: str, spec: FieldSpec, value: Any) -> Any:
    if isinstance(value, str) and _SPAN_ID_RE.fullmatch(value):
        return value
    return _invalid(type_, spec, value, "a W3C span id: 16 lowercase hex digits, not all zero")


def _check_log_level(type_: str, spec: FieldSpec, value: Any) -> Any:
    if isinstance(value, str) and value in LOG_LEVELS:
        return value
    return _invalid(type_, spec, value, f"one of {', '.join(LOG_LEVELS)}")


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
    Kind.TRACE_ID: _check_trace_id,
    Kind.SPAN_ID: _check_span_id,
    Kind.LOG_LEVEL: _check_log_level,
}
assert set(_CHECKS) == set(Kind), "every kind has its check"
_FIELD_PLANS: dict[str, tuple[tuple[str, bool, FieldSpec, Callable[[str, FieldSpec, Any], Any]], ...]] = {
    type_: tuple((spec.name, spec.required, spec, _CHECKS[spec.kind]) for spec in cls.FIELDS)
    for type_, cls in EVENT_CLASSES.items()
}
"""Per event type, each field's name, whether it is required, its spec and its check, looked up
once: looking the check up by kind per field (an enum's hash is a Python call) cost a fifth of
decoding."""


def _finite(value: Any) -> bool:
    """A JSON number other than inf and NaN (an int of any size is finite)."""
    return type(value) is int or (type(value) is float and math.isfinite(value))


def _out_of_range(type_: str, spec: FieldSpec, value: Any, bounds: str) -> Any:
    raise InvalidEvent("out_of_range", f"{type_}: '{spec.name}' must be within {bounds}, got {_short(value)}", spec.name)


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
    try:
        text = repr(value)
    except ValueError:  # an int of more digits than Python converts to text
        text = f"<a number of {value.bit_length()} bits>" if isinstance(value, int) else "<unprintable>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_event(fields: Mapping[str, Any]) -> Event:
    """Build a validated event from a mapping of field values (``type`` included, ``version``
    optional): the path the SDK and ``axmon produce`` take, identical to decoding."""
    obj = dict(fields)
    obj.setdefault("version", CONTRACT_VERSION)
    return event_from_dict(obj)
