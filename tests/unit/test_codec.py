"""The contract's decoder: any bytes give an event or a typed error; the Python validator and
the committed JSON Schema files agree."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import (
    EVENT_CLASSES,
    KNOWN_METRIC_TYPES,
    InvalidEvent,
    MetricRecorded,
    StepCompleted,
    decode_event,
    encode_event,
    event_to_dict,
)
from schemas.jsonschema import SCHEMA_DIR, all_schemas, render

REASONS = {"undecodable", "not_an_object", "unknown_type", "unknown_version", "missing_field", "invalid_field"}


def minimal(type_: str, **fields: Any) -> dict[str, Any]:
    """A valid event of ``type_`` with every required field."""
    base: dict[str, Any] = {
        "type": type_,
        "version": 1,
        "event_id": "0190a1b2-0000-7000-8000-000000000001",
        "occurred_at": 1_700_000_000_000,
    }
    cls = EVENT_CLASSES[type_]
    samples = {
        "tenant_id": "tenant_a",
        "execution_id": "exec-1",
        "step_id": "step-1",
        "workflow_id": "wf",
        "workflow_name": "Workflow",
        "user_id": "u1",
        "steps_total": 3,
        "error_message": "boom",
        "step_key": "k",
        "step_name": "Name",
        "metric_type": "api.request.duration",
        "value": 12.5,
        "level": "info",
        "message": "hello",
    }
    for spec in cls.FIELDS:
        if spec.required and spec.name not in base:
            base[spec.name] = samples[spec.name]
    base.update(fields)
    return base


@pytest.mark.parametrize("type_", sorted(EVENT_CLASSES))
def test_every_type_round_trips(type_: str) -> None:
    obj = minimal(type_, custom_field={"kept": True})
    event = decode_event(orjson.dumps(obj))
    assert event.TYPE == type_
    assert event.extra == {"custom_field": {"kept": True}}
    assert decode_event(encode_event(event)) == event
    assert event_to_dict(event)["custom_field"] == {"kept": True}


def test_known_metric_types_are_the_original_eighteen() -> None:
    assert len(KNOWN_METRIC_TYPES) == 18
    for metric_type in KNOWN_METRIC_TYPES:
        assert isinstance(decode_event(orjson.dumps(minimal("metric.recorded", metric_type=metric_type))), MetricRecorded)


@pytest.mark.parametrize(
    ("raw", "reason", "field"),
    [
        (b"", "undecodable", None),
        (b"\xff\xfe", "undecodable", None),
        (b"[1,2]", "not_an_object", None),
        (b'"text"', "not_an_object", None),
        (b'{"version":1}', "missing_field", "type"),
        (b'{"type":"execution.exploded","version":1}', "unknown_type", "type"),
        (b'{"type":"step.retried","version":2}', "unknown_version", "version"),
        (b'{"type":"step.retried","version":"1"}', "unknown_version", "version"),
        (b'{"type":"step.retried"}', "missing_field", "version"),
    ],
)
def test_errors_say_what_is_wrong(raw: bytes, reason: str, field: str | None) -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode_event(raw)
    assert caught.value.reason == reason
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("type_", "field", "value"),
    [
        ("execution.started", "steps_total", -1),
        ("execution.started", "steps_total", 2.5),
        ("execution.started", "steps_total", True),
        ("execution.started", "tenant_id", ""),
        ("execution.started", "occurred_at", "yesterday"),
        ("execution.started", "metadata", [1]),
        ("step.completed", "cost", -0.01),
        ("step.completed", "tokens_used", "many"),
        ("metric.recorded", "metric_type", "CPU"),
        ("metric.recorded", "metric_type", "cpu"),
        ("metric.recorded", "value", "3"),
        ("metric.recorded", "labels", {"a": 1}),
    ],
)
def test_invalid_fields_are_named(type_: str, field: str, value: Any) -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode_event(orjson.dumps(minimal(type_, **{field: value})))
    assert caught.value.reason == "invalid_field"
    assert caught.value.field == field
    assert field in str(caught.value)


def test_lifecycle_events_need_a_tenant_metrics_do_not() -> None:
    obj = minimal("step.completed")
    del obj["tenant_id"]
    with pytest.raises(InvalidEvent, match="tenant_id"):
        decode_event(orjson.dumps(obj))
    metric = minimal("metric.recorded")
    assert decode_event(orjson.dumps(metric)).tenant_id is None


def test_optional_fields_may_be_null_or_absent() -> None:
    event = decode_event(orjson.dumps(minimal("step.completed", cost=None)))
    assert isinstance(event, StepCompleted)
    assert event.cost is None and event.tokens_used is None


@given(st.binary(max_size=300))
def test_any_bytes_give_an_event_or_a_typed_error(raw: bytes) -> None:
    try:
        decode_event(raw)
    except InvalidEvent as exc:
        assert exc.reason in REASONS


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8) | st.builds(list) | st.builds(dict),
    lambda inner: st.lists(inner, min_size=1, max_size=3) | st.dictionaries(st.text(max_size=6), inner, min_size=1, max_size=3),
    max_leaves=6,
)


@st.composite
def mutated_events(draw: st.DrawFn) -> dict[str, Any]:
    """Valid events with some fields replaced by arbitrary JSON, removed or added."""
    type_ = draw(st.sampled_from(sorted(EVENT_CLASSES)))
    obj = minimal(type_)
    names = sorted({s.name for s in EVENT_CLASSES[type_].FIELDS} | {"type", "version"})
    for name in draw(st.lists(st.sampled_from(names), max_size=3, unique=True)):
        action = draw(st.sampled_from(["replace", "delete"]))
        if action == "delete":
            obj.pop(name, None)
        else:
            obj[name] = draw(json_values)
    return obj


_VALIDATORS = {
    type_: jsonschema.Draft202012Validator(schema)
    for type_, schema in ((t, all_schemas()[f"{t}.schema.json"]) for t in EVENT_CLASSES)
}


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_events())
def test_python_decoder_and_json_schema_agree(obj: dict[str, Any]) -> None:
    type_ = obj.get("type")
    schema_ok = isinstance(type_, str) and type_ in _VALIDATORS and _VALIDATORS[type_].is_valid(obj)
    try:
        decode_event(orjson.dumps(obj))
        python_ok = True
    except InvalidEvent:
        python_ok = False
    assert python_ok == schema_ok, obj


def test_committed_schema_files_are_up_to_date() -> None:
    for name, schema in all_schemas().items():
        path = SCHEMA_DIR / name
        assert path.exists(), f"{path} missing: run python -m schemas.jsonschema"
        assert path.read_bytes() == render(schema), f"{path} is stale: run python -m schemas.jsonschema"
        jsonschema.Draft202012Validator.check_schema(json.loads(path.read_bytes()))
