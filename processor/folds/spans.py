"""A finished execution as OpenTelemetry spans. Pure: no I/O, no protobuf.

The execution is the root span and each step a child span. The same function serves the live
exporter (snapshots from ``axmon.execution-state``) and ``axmon traces export`` (rows from
SQLite): both give it the execution's fields and its steps with the same names, so a trace
exported twice, from either source, is the same trace.

Ids are derived, never random: the trace id from the execution id, the span ids from the
execution and step ids (SHA-256, truncated). When the engine sent a W3C trace context on its
lifecycle events, the trace id is the engine's and the root span is a child of the engine's
span, so axmon's spans join the engine's trace; a step whose events carried a context of their
own links to that span. axmon never reuses the engine's span ids as its own: an engine that
exports its spans too would otherwise produce two spans with one id.

Attributes follow the OpenTelemetry GenAI conventions (status "Development") where they have a
name for the thing, and an ``axmon.`` namespace where they have none: the conventions know
input and output tokens but axmon receives one total per step, and they have no cost yet.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

AttributeValue = str | bool | int | float
Attributes = tuple[tuple[str, AttributeValue], ...]

# GenAI semantic conventions (their names, defined here: the constants package marks them moved)
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_WORKFLOW_NAME = "gen_ai.workflow.name"
ERROR_TYPE = "error.type"
USER_ID = "user.id"
OPERATION_INVOKE_WORKFLOW = "invoke_workflow"

# axmon's own names, where the conventions have none
AXMON_EXECUTION_ID = "axmon.execution.id"
AXMON_EXECUTION_STATUS = "axmon.execution.status"
AXMON_WORKFLOW_ID = "axmon.workflow.id"
AXMON_TENANT_ID = "axmon.tenant.id"
AXMON_STEPS_TOTAL = "axmon.steps.total"
AXMON_STEPS_COMPLETED = "axmon.steps.completed"
AXMON_STEPS_FAILED = "axmon.steps.failed"
AXMON_CANCEL_REASON = "axmon.execution.cancel_reason"
AXMON_STEP_ID = "axmon.step.id"
AXMON_STEP_KEY = "axmon.step.key"
AXMON_STEP_NAME = "axmon.step.name"
AXMON_STEP_STATUS = "axmon.step.status"
AXMON_STEP_RETRY_COUNT = "axmon.step.retry_count"
AXMON_STEP_INPUT_SIZE = "axmon.step.input_size"
AXMON_STEP_OUTPUT_SIZE = "axmon.step.output_size"
AXMON_USAGE_TOTAL_TOKENS = "axmon.usage.total_tokens"
AXMON_USAGE_COST = "axmon.usage.cost"
AXMON_RETRY_NUMBER = "axmon.retry.number"
AXMON_LINK_ROLE = "axmon.link.role"

RETRY_EVENT = "axmon.step.retry"
"""The span event of each retry of a step, at the retry's event time."""

FINISHED_STATUSES = frozenset({"completed", "failed", "cancelled"})
_MS = 1_000_000
"""Nanoseconds per millisecond: the contract's times are epoch ms, OTLP's epoch ns."""


class StatusCode:
    UNSET = 0
    OK = 1
    ERROR = 2


@dataclass(frozen=True, slots=True)
class SpanEvent:
    name: str
    time_ns: int
    attributes: Attributes = ()


@dataclass(frozen=True, slots=True)
class SpanLink:
    trace_id: bytes
    span_id: bytes
    attributes: Attributes = ()


@dataclass(frozen=True, slots=True)
class Span:
    """One span, as OTLP carries it (kind is always INTERNAL: axmon saw the work, it did not
    call anything)."""

    trace_id: bytes
    """16 bytes."""
    span_id: bytes
    """8 bytes."""
    parent_span_id: bytes | None
    name: str
    start_ns: int
    end_ns: int
    attributes: Attributes
    events: tuple[SpanEvent, ...] = ()
    links: tuple[SpanLink, ...] = ()
    status_code: int = StatusCode.UNSET
    status_message: str = ""


def _digest(*parts: str) -> bytes:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.digest()


def _nonzero(raw: bytes) -> bytes:
    """W3C forbids the all-zero id; a digest that truncates to it (never seen) gets a 1."""
    return raw if any(raw) else raw[:-1] + b"\x01"


def derived_trace_id(execution_id: str) -> bytes:
    return _nonzero(_digest("axmon.trace", execution_id)[:16])


def execution_span_id(execution_id: str) -> bytes:
    return _nonzero(_digest("axmon.execution", execution_id)[:8])


def step_span_id(execution_id: str, step_id: str) -> bytes:
    return _nonzero(_digest("axmon.step", execution_id, step_id)[:8])


def is_finished(execution: Mapping[str, Any]) -> bool:
    return execution.get("status") in FINISHED_STATUSES


def _attrs(*pairs: tuple[str, Any]) -> Attributes:
    """The pairs whose value is known (``None`` and ``''`` left out), in the order given."""
    return tuple((k, v) for k, v in pairs if v is not None and v != "")


def _retry_times(step: Mapping[str, Any]) -> list[int]:
    raw = step.get("retried_at")
    if isinstance(raw, str):  # the SQLite column holds JSON
        raw = json.loads(raw)
    return [int(t) for t in raw or ()]


def execution_spans(execution: Mapping[str, Any], steps: Sequence[Mapping[str, Any]]) -> list[Span]:
    """The root span of ``execution`` and one child span per step, in the steps' order.

    ``execution`` has the columns of ``workflow_executions_monitor`` (or the snapshot's keys),
    ``steps`` those of ``workflow_step_executions``. Times: a step without a start starts when
    it ended; a step still running when the execution ended ends with the execution."""
    execution_id = str(execution["id"])
    engine_trace = execution.get("trace_id")
    trace_id = bytes.fromhex(engine_trace) if engine_trace else derived_trace_id(execution_id)
    engine_span = execution.get("span_id") if engine_trace else None
    root_id = execution_span_id(execution_id)
    started = execution.get("started_at")
    if started is None:
        started = execution["last_event_at"]
    ended = execution.get("completed_at")
    if ended is None:
        ended = max(execution["last_event_at"], started)
    status = str(execution["status"])
    message = execution.get("error_message") or ""
    code, status_message, error_type = StatusCode.UNSET, "", None
    if status == "failed":
        code, status_message, error_type = StatusCode.ERROR, message, "execution_failed"
    elif status == "completed":
        code = StatusCode.OK
    workflow_name = execution.get("workflow_name") or ""
    root = Span(
        trace_id=trace_id,
        span_id=root_id,
        parent_span_id=bytes.fromhex(engine_span) if engine_span else None,
        name=f"{OPERATION_INVOKE_WORKFLOW} {workflow_name}".strip(),
        start_ns=int(started) * _MS,
        end_ns=int(ended) * _MS,
        attributes=_attrs(
            (GEN_AI_OPERATION_NAME, OPERATION_INVOKE_WORKFLOW),
            (GEN_AI_WORKFLOW_NAME, workflow_name),
            (AXMON_EXECUTION_ID, execution_id),
            (AXMON_WORKFLOW_ID, execution.get("workflow_id")),
            (AXMON_TENANT_ID, execution.get("tenant_id")),
            (USER_ID, execution.get("user_id")),
            (AXMON_EXECUTION_STATUS, status),
            (ERROR_TYPE, error_type),
            (AXMON_CANCEL_REASON, message if status == "cancelled" else None),
            (AXMON_STEPS_TOTAL, execution.get("steps_total")),
            (AXMON_STEPS_COMPLETED, execution.get("steps_completed")),
            (AXMON_STEPS_FAILED, execution.get("steps_failed")),
            (AXMON_USAGE_TOTAL_TOKENS, execution.get("tokens_used")),
            (AXMON_USAGE_COST, execution.get("cost")),
        ),
        status_code=code,
        status_message=status_message,
    )
    return [root, *(_step_span(trace_id, root_id, execution_id, int(ended), s) for s in steps)]


def _step_span(trace_id: bytes, root_id: bytes, execution_id: str, execution_end: int, step: Mapping[str, Any]) -> Span:
    step_id = str(step["id"])
    completed = step.get("completed_at")
    started = step.get("started_at")
    if not started:  # unknown (the sink stores 0 for a step neither started nor ended)
        started = completed if completed is not None else execution_end
    ended = completed if completed is not None else max(execution_end, int(started))
    status = str(step["status"])
    code, message, error_type = StatusCode.UNSET, "", None
    if status == "failed":
        code, message, error_type = StatusCode.ERROR, step.get("error_message") or "", "step_failed"
    elif status == "completed":
        code = StatusCode.OK
    name = step.get("step_name") or step.get("step_key") or step_id
    links: tuple[SpanLink, ...] = ()
    if step.get("trace_id") and step.get("span_id"):
        links = (SpanLink(bytes.fromhex(step["trace_id"]), bytes.fromhex(step["span_id"]),
                          ((AXMON_LINK_ROLE, "engine_step_span"),)),)
    events = tuple(
        SpanEvent(RETRY_EVENT, at * _MS, ((AXMON_RETRY_NUMBER, n),))
        for n, at in enumerate(sorted(_retry_times(step)), start=1)
    )
    return Span(
        trace_id=trace_id,
        span_id=step_span_id(execution_id, step_id),
        parent_span_id=root_id,
        name=f"step {name}",
        start_ns=int(started) * _MS,
        end_ns=int(ended) * _MS,
        attributes=_attrs(
            (AXMON_EXECUTION_ID, execution_id),
            (AXMON_STEP_ID, step_id),
            (AXMON_STEP_KEY, step.get("step_key")),
            (AXMON_STEP_NAME, step.get("step_name")),
            (AXMON_STEP_STATUS, status),
            (ERROR_TYPE, error_type),
            (AXMON_STEP_RETRY_COUNT, step.get("retry_count")),
            (AXMON_STEP_INPUT_SIZE, step.get("input_size")),
            (AXMON_STEP_OUTPUT_SIZE, step.get("output_size")),
            (AXMON_USAGE_TOTAL_TOKENS, step.get("tokens_used")),
            (AXMON_USAGE_COST, step.get("cost")),
        ),
        events=events,
        links=links,
        status_code=code,
        status_message=message,
    )
