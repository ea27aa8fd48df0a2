"""The event contract, version 1, as immutable Python records.

Every event shares an envelope (``type``, ``version``, ``event_id``, ``occurred_at``,
``tenant_id``, ``source``). Lifecycle events add ``execution_id`` (and steps ``step_id``);
metric samples add ``metric_type``, ``value``, ``unit`` and ``labels``.

Each record class lists its fields once in ``FIELDS``: the decoder (:mod:`schemas.codec`) and
the language-neutral JSON Schema files (:mod:`schemas.jsonschema`) are both derived from that
list, so they cannot drift apart. Fields the contract does not know are kept in ``extra``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from schemas.limits import MAX_ABS_VALUE as MAX_ABS_VALUE
from schemas.limits import MAX_ID_LENGTH as MAX_ID_LENGTH
from schemas.limits import MAX_SAFE_INTEGER as MAX_SAFE_INTEGER

CONTRACT_VERSION = 1

KNOWN_METRIC_TYPES: tuple[str, ...] = (
    "workflow.execution.duration",
    "workflow.execution.count",
    "workflow.step.duration",
    "workflow.step.count",
    "workflow.queue.length",
    "workflow.queue.wait_time",
    "worker.pool.utilization",
    "worker.pool.count",
    "cache.hit_rate",
    "cache.size",
    "database.query.duration",
    "database.query.count",
    "api.request.duration",
    "api.request.count",
    "quota.usage",
    "cpu.usage",
    "memory.usage",
    "disk.usage",
)
"""The 18 metric types of the original design; custom types follow :data:`METRIC_TYPE_PATTERN`."""

METRIC_TYPE_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"
"""A metric type is a dotted lowercase name with at least two parts, e.g. ``llm.tokens.prompt``."""

METRIC_TYPE_RE = re.compile(METRIC_TYPE_PATTERN)

LOG_LEVELS: dict[str, int] = {"trace": 1, "debug": 5, "info": 9, "warn": 13, "error": 17, "fatal": 21}
"""A log record's level -> its OpenTelemetry severity number (the first of its range: TRACE 1-4,
DEBUG 5-8, INFO 9-12, WARN 13-16, ERROR 17-20, FATAL 21-24)."""



class Kind(enum.Enum):
    """How a field's value is checked, in Python and in the JSON Schema."""

    ID = "id"
    """A non-empty string of at most :data:`MAX_ID_LENGTH` characters, no control characters."""
    TEXT = "text"
    """Any string."""
    COUNT = "count"
    """A whole number >= 0 (JSON integer; no booleans, no fractions)."""
    EPOCH_MS = "epoch_ms"
    """Milliseconds since the Unix epoch, a whole number >= 0."""
    AMOUNT = "amount"
    """A number in ``[0, MAX_ABS_VALUE]`` (cost)."""
    NUMBER = "number"
    """A number in ``[-MAX_ABS_VALUE, MAX_ABS_VALUE]`` (a metric value)."""
    OBJECT = "object"
    """A JSON object with any values (metadata), nested at most :data:`~schemas.limits.MAX_DEPTH`."""
    LABELS = "labels"
    """A JSON object of at most :data:`~schemas.limits.MAX_LABELS` string values."""
    METRIC_TYPE = "metric_type"
    """A known metric type or a custom dotted lowercase name."""
    TRACE_ID = "trace_id"
    """A W3C Trace Context trace id: 32 lowercase hex digits, not all zero."""
    SPAN_ID = "span_id"
    """A W3C Trace Context span (parent) id: 16 lowercase hex digits, not all zero."""
    LOG_LEVEL = "log_level"
    """One of :data:`LOG_LEVELS`."""


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    kind: Kind
    required: bool
    description: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """The envelope every event carries."""

    TYPE: ClassVar[str] = ""
    FIELDS: ClassVar[tuple[FieldSpec, ...]] = ()

    event_id: str
    """Unique per event, time-ordered (UUIDv7). A resent event keeps its id: that is how
    duplicates are recognised."""
    occurred_at: int
    """Event time in epoch milliseconds, set by the producer when the thing happened."""
    tenant_id: str | None = None
    source: str | None = None
    """Name of the producing service, free text."""
    extra: dict[str, Any] = field(default_factory=dict, compare=True)
    """Fields the contract does not know, kept as they came so that nothing is lost."""

    @property
    def type(self) -> str:
        return self.TYPE


ENVELOPE_FIELDS = (
    FieldSpec("event_id", Kind.ID, True, "Unique, time-ordered id (e.g. UUIDv7); resends keep it."),
    FieldSpec("occurred_at", Kind.EPOCH_MS, True, "Event time, epoch milliseconds."),
    FieldSpec("source", Kind.TEXT, False, "Name of the producing service."),
)
_TENANT_REQUIRED = FieldSpec("tenant_id", Kind.ID, True, "Tenant that owns the execution.")
_TENANT_OPTIONAL = FieldSpec("tenant_id", Kind.ID, False, "Tenant the sample belongs to, if any.")
_EXECUTION_ID = FieldSpec("execution_id", Kind.ID, True, "The execution; the message key.")
_STEP_ID = FieldSpec("step_id", Kind.ID, True, "The step execution, unique within the execution.")
_TRACE_ID = FieldSpec(
    "trace_id", Kind.TRACE_ID, False,
    "W3C trace id (32 lowercase hex) of the engine's trace this event belongs to; axmon's spans "
    "of the execution join that trace.",
)
_SPAN_ID = FieldSpec(
    "span_id", Kind.SPAN_ID, False,
    "W3C span id (16 lowercase hex) of the engine's span the event was recorded in; requires "
    "trace_id. axmon's span of the execution (or step) refers to it as its parent (or link).",
)
_LIFECYCLE = (*ENVELOPE_FIELDS, _TENANT_REQUIRED, _EXECUTION_ID, _TRACE_ID, _SPAN_ID)
_STEP = (*_LIFECYCLE, _STEP_ID)


@dataclass(frozen=True, slots=True, kw_only=True)
class LifecycleEvent(Event):
    """An event in the life of one workflow execution; keyed by ``execution_id``."""

    tenant_id: str
    execution_id: str
    trace_id: str | None = None
    """The engine's W3C trace id, when it sent one."""
    span_id: str | None = None
    """The engine's W3C span id (the span the event was recorded in), when it sent one."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionStarted(LifecycleEvent):
    """An execution of a workflow began."""

    TYPE: ClassVar[str] = "execution.started"
    FIELDS: ClassVar[tuple[FieldSpec, ...]] = (
        *_LIFECYCLE,
        FieldSpec("workflow_id", Kind.ID, True),
        FieldSpec("workflow_name", Kind.TEXT, True),
        FieldSpec("user_id", Kind.ID, True),
        FieldSpec("steps_total", Kind.COUNT, True, "Number of steps the workflow defines."),
        FieldSpec("metadata", Kind.OBJECT, False, "Free-form JSON object."),
    )
    workflow_id: str
    workflow_name: str
    user_id: str
    steps_total: int
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionUpdated(LifecycleEvent):
    """Progress of a running execution; every field is optional, absent means unchanged."""

    TYPE: ClassVar[str] = "execution.updated"
    FIELDS: ClassVar[tuple[FieldSpec, ...]] = (
        *_LIFECYCLE,
        FieldSpec("current_step", Kind.TEXT, False, "Key of the step now running."),
        FieldSpec("steps_total", Kind.COUNT, False),
        FieldSpec("metadata", Kind.OBJECT, False, "Replaces the execution's metadata."),
    )
    current_step: str | None = None
    steps_total: int | None = None
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionCompleted(LifecycleEvent):
    """The execution finished successfully."""

    TYPE: ClassVar[str] = "execution.completed"
    FIELDS: ClassVar[tuple[FieldSpec, ...]] = _LIFECYCLE


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionFailed(LifecycleEvent):
    """The execution ended with an error."""

    TYPE: ClassVar[str] = "execution.failed"
    FIELDS: ClassVar[tuple[FieldSpec, ...]] = (
        *_LIFECYCLE,
        FieldSpec("error_message", Kind.TEXT, True),
    )
    error_message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionCancelled(LifecycleEvent):
    """The execution was stopped before it finished."""

    TYPE: ClassVar[str] = "execution.cancelled"
    FIELDS: ClassVar[tuple[FieldSpec, ...]] = (
        *_LIFECYCLE,
        FieldSpec("reason", Kind.TEXT, False),
    )
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StepEvent(LifecycleEvent):
    """An event of one step execution within an execution."""

    step_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StepStarted(StepEvent):
    """A step execution began (also each new attempt after a retry)."""

    TYPE: ClassVar[str] = "step.started"
    FIELDS: ClassVar[tuple[FieldSpec, ...]] = (
        *_STEP,
        FieldSpec("step_key", Kind.TEXT, True, "The step's key in the workflow definition."),
        FieldSpec("step_name", Kind.TEXT, True),
    )
    step_key: str
    step_name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StepCompleted(StepEvent):
    """A step execution finished, with what it spent and moved."""

    TYPE: ClassVar[str] = "step.completed"
    FIELDS: ClassVar[tuple[FieldSpec, ...]] = (
        *_STEP,
        FieldSpec("tokens_used", Kind.COUNT, False, "Model tokens the step spent."),
        FieldSpec("cost", Kind.AMOUNT, False, "Money the step spent (the engine's currency)."),
        FieldSpec("input_size", Kind.COUNT, False, "Bytes in."),
        FieldSpec("output_size", Kind.COUNT, False, "Bytes out."),
    )
    tokens_used: int | None = None
    cost: float | None = None
    input_size: int | None = None
    output_size: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StepFailed(StepEvent):
    """A step execution ended with an error."""

    TYPE: ClassVar[str] = "step.failed"
    FIELDS: ClassVar[tuple[FieldSpec, ...]] = (
        *_STEP,
        FieldSpec("error_message", Kind.TEXT, True),
    )
    error_message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StepRetried(StepEvent):
    """The step is run again; each retry event counts once (by event_id)."""

    TYPE: ClassVar[str] = "step.retried"
    FIELDS: ClassVar[tuple[FieldSpec, ...]] = _STEP


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricRecorded(Event):
    """One metric sample; keyed by its series (tenant, metric type, sorted labels)."""

    TYPE: ClassVar[str] = "metric.recorded"
    FIELDS: ClassVar[tuple[FieldSpec, ...]] = (
        *ENVELOPE_FIELDS,
        _TENANT_OPTIONAL,
        FieldSpec("metric_type", Kind.METRIC_TYPE, True),
        FieldSpec("value", Kind.NUMBER, True),
        FieldSpec("unit", Kind.TEXT, False, "Unit of the value, e.g. ms, percent, bytes."),
        FieldSpec("labels", Kind.LABELS, False, "String labels; part of the series identity."),
    )
    metric_type: str
    value: float
    unit: str = ""
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class LogRecorded(Event):
    """A log line of the engine, optionally of one execution and step; keyed by ``execution_id``
    (else ``tenant_id``)."""

    TYPE: ClassVar[str] = "log.recorded"
    FIELDS: ClassVar[tuple[FieldSpec, ...]] = (
        *ENVELOPE_FIELDS,
        FieldSpec("tenant_id", Kind.ID, False, "Tenant the log line belongs to, if any."),
        FieldSpec("level", Kind.LOG_LEVEL, True, "trace, debug, info, warn, error or fatal "
                  "(OpenTelemetry severity 1, 5, 9, 13, 17, 21)."),
        FieldSpec("message", Kind.TEXT, True, "The log line (OpenTelemetry: the body)."),
        FieldSpec("execution_id", Kind.ID, False, "The execution the line is about, if any."),
        FieldSpec("step_id", Kind.ID, False, "The step execution the line is about, if any."),
        FieldSpec("attributes", Kind.OBJECT, False, "Free-form JSON object."),
        _TRACE_ID,
        _SPAN_ID,
    )
    level: str
    message: str
    execution_id: str | None = None
    step_id: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    trace_id: str | None = None
    span_id: str | None = None

    @property
    def severity_number(self) -> int:
        return LOG_LEVELS[self.level]


EVENT_CLASSES: dict[str, type[Event]] = {
    cls.TYPE: cls
    for cls in (
        ExecutionStarted,
        ExecutionUpdated,
        ExecutionCompleted,
        ExecutionFailed,
        ExecutionCancelled,
        StepStarted,
        StepCompleted,
        StepFailed,
        StepRetried,
        MetricRecorded,
        LogRecorded,
    )
}
"""Every event type of contract v1, by its ``type`` string."""

LIFECYCLE_TYPES = frozenset(t for t, cls in EVENT_CLASSES.items() if issubclass(cls, LifecycleEvent))
