"""The contract's optional W3C trace context: validated, optional (old events stay valid), and
taken by the SDK from the call or from the current OpenTelemetry span."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from producers import tracecontext
from producers.factory import EventFactory
from schemas.codec import decode_event, encode_event, event_from_dict
from schemas.errors import InvalidEvent

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
BASE = {"type": "step.retried", "version": 1, "event_id": "e1", "occurred_at": 1, "tenant_id": "t",
        "execution_id": "x", "step_id": "s"}


def test_an_event_without_a_trace_context_is_as_valid_as_before() -> None:
    event = event_from_dict(BASE)
    assert (event.trace_id, event.span_id) == (None, None)  # type: ignore[attr-defined]
    assert b"trace_id" not in encode_event(event)


def test_a_trace_context_round_trips() -> None:
    event = event_from_dict({**BASE, "trace_id": TRACE, "span_id": SPAN})
    assert decode_event(encode_event(event)) == event
    assert (event.trace_id, event.span_id, event.extra) == (TRACE, SPAN, {})  # type: ignore[attr-defined]
    assert event_from_dict({**BASE, "trace_id": TRACE}).span_id is None  # type: ignore[attr-defined]


@pytest.mark.parametrize("fields", [
    {"trace_id": TRACE.upper()}, {"trace_id": "0" * 32}, {"trace_id": TRACE[:-1]}, {"trace_id": 12},
    {"trace_id": TRACE, "span_id": "0" * 16}, {"trace_id": TRACE, "span_id": SPAN + "00"},
    {"span_id": SPAN},
])
def test_a_bad_trace_context_is_refused(fields: dict[str, object]) -> None:
    with pytest.raises(InvalidEvent) as info:
        event_from_dict({**BASE, **fields})
    assert info.value.field in ("trace_id", "span_id")


def test_metric_samples_have_no_trace_context_field() -> None:
    sample = event_from_dict({"type": "metric.recorded", "version": 1, "event_id": "m", "occurred_at": 1,
                              "metric_type": "cpu.usage", "value": 1, "trace_id": TRACE})
    assert sample.extra == {"trace_id": TRACE}  # kept as an unknown field, like any other


def test_the_sdk_takes_the_ids_it_is_given() -> None:
    f = EventFactory(trace_context=lambda: None)
    started = f.start_execution("wf", "W", "t", "u", 1, trace_id=TRACE, span_id=SPAN)
    step = f.start_step(started.execution_id, "k", "K", trace_id=TRACE)
    done = f.step_event("step.completed", step.step_id, trace_id=TRACE, span_id=SPAN)
    assert (started.trace_id, started.span_id, step.trace_id, step.span_id, done.span_id) == (TRACE, SPAN, TRACE, None, SPAN)
    assert f.end_execution("execution.completed", started.execution_id).trace_id is None


def test_the_sdk_takes_the_current_opentelemetry_span() -> None:
    f = EventFactory()
    context = SpanContext(int(TRACE, 16), int(SPAN, 16), is_remote=False, trace_flags=TraceFlags(1))
    with trace.use_span(NonRecordingSpan(context)):
        started = f.start_execution("wf", "W", "t", "u", 1)
        sample = f.record("cpu.usage", 1.0)
        explicit = f.update_execution(started.execution_id, trace_id="0af7651916cd43dd8448eb211c80319c")
    assert (started.trace_id, started.span_id) == (TRACE, SPAN)
    assert "trace_id" not in sample.extra
    assert (explicit.trace_id, explicit.span_id) == ("0af7651916cd43dd8448eb211c80319c", None)  # type: ignore[attr-defined]
    assert f.start_execution("wf", "W", "t", "u", 1).trace_id is None  # no current span


def test_without_the_api_package_there_is_no_context(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracecontext, "_looked", True)
    monkeypatch.setattr(tracecontext, "_get_current_span", None)
    context = SpanContext(int(TRACE, 16), int(SPAN, 16), is_remote=False)
    with trace.use_span(NonRecordingSpan(context)):
        assert tracecontext.current_trace_context() is None
