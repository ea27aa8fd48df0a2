"""Builds validated contract events from the WorkflowMonitor / MetricsCollector calls.

Pure: no I/O. The async producer and the synchronous facade both call it, then send what it
returns. It remembers, for a bounded number of recent executions and steps, which tenant an
execution belongs to and which execution a step belongs to, so that ``complete_step(step_id)``
needs no more than the original API asked for.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from producers.tracecontext import TraceContext, current_trace_context
from schemas.codec import parse_event
from schemas.errors import AxmonError
from schemas.events import (
    Event,
    ExecutionCancelled,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionStarted,
    ExecutionUpdated,
    LifecycleEvent,
    LogRecorded,
    MetricRecorded,
    StepCompleted,
    StepFailed,
    StepRetried,
    StepStarted,
)
from schemas.ids import uuid7

E = TypeVar("E", bound=Event)


class UnknownExecutionError(AxmonError):
    """A lifecycle call names an execution (or step) this producer has not seen start, and
    the call did not say which tenant (or execution) it belongs to."""


_ENDINGS: dict[str, type[Event]] = {
    c.TYPE: c for c in (ExecutionCompleted, ExecutionFailed, ExecutionCancelled)
}
_STEP_OUTCOMES: dict[str, type[Event]] = {c.TYPE: c for c in (StepCompleted, StepFailed, StepRetried)}


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class _BoundedMap:
    """An insertion-ordered map that forgets its oldest entries beyond ``limit``."""

    def __init__(self, limit: int) -> None:
        self._items: OrderedDict[str, str] = OrderedDict()
        self._limit = limit

    def put(self, key: str, value: str) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._limit:
            self._items.popitem(last=False)

    def get(self, key: str) -> str | None:
        return self._items.get(key)

    def __len__(self) -> int:
        return len(self._items)


class EventFactory:
    """Turns SDK calls into events. Not thread-safe: callers serialise access."""

    def __init__(
        self,
        *,
        source: str | None = None,
        clock: Callable[[], int] = wall_clock_ms,
        remember: int = 100_000,
        trace_context: Callable[[], TraceContext | None] = current_trace_context,
    ) -> None:
        """``trace_context`` gives the W3C ids a lifecycle event carries when the call names
        none (``trace_id=``/``span_id=``): by default the current OpenTelemetry span's, when
        ``opentelemetry-api`` is installed; ``lambda: None`` turns that off."""
        self._source = source
        self._trace_context = trace_context
        self._clock = clock
        self._tenants = _BoundedMap(remember)  # execution_id -> tenant_id
        self._steps = _BoundedMap(remember)  # step_id -> execution_id

    def _event(self, cls: type[E], occurred_at: int | None, fields: Mapping[str, Any]) -> E:
        values = {k: v for k, v in fields.items() if v is not None}
        values["type"] = cls.TYPE
        if "trace_id" not in values and "span_id" not in values and issubclass(cls, (LifecycleEvent, LogRecorded)):
            context = self._trace_context()
            if context is not None:
                values["trace_id"], values["span_id"] = context
        values["event_id"] = uuid7()
        values["occurred_at"] = self._clock() if occurred_at is None else occurred_at
        if self._source is not None:
            values["source"] = self._source
        event = parse_event(values)
        if not isinstance(event, cls):  # pragma: no cover - parse_event dispatches on type
            raise TypeError(f"expected {cls.__name__}, built {type(event).__name__}")
        return event

    def tenant_of(self, execution_id: str, tenant_id: str | None) -> str:
        if tenant_id is not None:
            return tenant_id
        known = self._tenants.get(execution_id)
        if known is None:
            raise UnknownExecutionError(
                f"execution {execution_id!r} was not started by this producer: pass tenant_id="
            )
        return known

    def execution_of(self, step_id: str, execution_id: str | None) -> str:
        if execution_id is not None:
            return execution_id
        known = self._steps.get(step_id)
        if known is None:
            raise UnknownExecutionError(
                f"step {step_id!r} was not started by this producer: pass execution_id="
            )
        return known

    def start_execution(
        self,
        workflow_id: str,
        workflow_name: str,
        tenant_id: str,
        user_id: str,
        steps_total: int,
        metadata: Mapping[str, Any] | None = None,
        *,
        execution_id: str | None = None,
        occurred_at: int | None = None,
        trace_id: str | None = None,
        span_id: str | None = None,
    ) -> ExecutionStarted:
        event = self._event(
            ExecutionStarted,
            occurred_at,
            {
                "execution_id": execution_id or uuid7(),
                "tenant_id": tenant_id,
                "workflow_id": workflow_id,
                "workflow_name": workflow_name,
                "user_id": user_id,
                "steps_total": steps_total,
                "metadata": dict(metadata or {}),
                "trace_id": trace_id,
                "span_id": span_id,
            },
        )
        self._tenants.put(event.execution_id, event.tenant_id)
        return event

    def update_execution(
        self,
        execution_id: str,
        *,
        current_step: str | None = None,
        steps_total: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        tenant_id: str | None = None,
        occurred_at: int | None = None,
        trace_id: str | None = None,
        span_id: str | None = None,
    ) -> Event:
        return self._event(
            ExecutionUpdated,
            occurred_at,
            {
                "execution_id": execution_id,
                "tenant_id": self.tenant_of(execution_id, tenant_id),
                "current_step": current_step,
                "steps_total": steps_total,
                "metadata": None if metadata is None else dict(metadata),
                "trace_id": trace_id,
                "span_id": span_id,
            },
        )

    def end_execution(
        self,
        type_: str,
        execution_id: str,
        *,
        tenant_id: str | None = None,
        occurred_at: int | None = None,
        **fields: Any,
    ) -> Event:
        """``execution.completed``, ``execution.failed`` or ``execution.cancelled``."""
        cls = _ENDINGS.get(type_)
        if cls is None:
            raise ValueError(f"{type_!r} does not end an execution")
        return self._event(
            cls,
            occurred_at,
            {
                "execution_id": execution_id,
                "tenant_id": self.tenant_of(execution_id, tenant_id),
                **fields,
            },
        )

    def start_step(
        self,
        execution_id: str,
        step_key: str,
        step_name: str,
        *,
        step_id: str | None = None,
        tenant_id: str | None = None,
        occurred_at: int | None = None,
        trace_id: str | None = None,
        span_id: str | None = None,
    ) -> StepStarted:
        event = self._event(
            StepStarted,
            occurred_at,
            {
                "execution_id": execution_id,
                "tenant_id": self.tenant_of(execution_id, tenant_id),
                "step_id": step_id or uuid7(),
                "step_key": step_key,
                "step_name": step_name,
                "trace_id": trace_id,
                "span_id": span_id,
            },
        )
        self._steps.put(event.step_id, execution_id)
        return event

    def step_event(
        self,
        type_: str,
        step_id: str,
        *,
        execution_id: str | None = None,
        tenant_id: str | None = None,
        occurred_at: int | None = None,
        **fields: Any,
    ) -> Event:
        """``step.completed``, ``step.failed`` or ``step.retried``."""
        cls = _STEP_OUTCOMES.get(type_)
        if cls is None:
            raise ValueError(f"{type_!r} is not a step outcome")
        execution = self.execution_of(step_id, execution_id)
        return self._event(
            cls,
            occurred_at,
            {
                "execution_id": execution,
                "tenant_id": self.tenant_of(execution, tenant_id),
                "step_id": step_id,
                **fields,
            },
        )

    def log(
        self,
        level: str,
        message: str,
        *,
        execution_id: str | None = None,
        step_id: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        tenant_id: str | None = None,
        occurred_at: int | None = None,
        trace_id: str | None = None,
        span_id: str | None = None,
    ) -> LogRecorded:
        """A ``log.recorded``. The tenant and execution are looked up as for lifecycle calls
        when known (a step's execution, an execution's tenant); none is required. The trace
        context defaults to the current OpenTelemetry span's, as on lifecycle events."""
        if execution_id is None and step_id is not None:
            execution_id = self._steps.get(step_id)
        if tenant_id is None and execution_id is not None:
            tenant_id = self._tenants.get(execution_id)
        fields: dict[str, Any] = {
            "level": level, "message": message, "execution_id": execution_id, "step_id": step_id,
            "attributes": None if attributes is None else dict(attributes), "tenant_id": tenant_id,
            "trace_id": trace_id, "span_id": span_id,
        }
        return self._event(LogRecorded, occurred_at, fields)

    def record(
        self,
        metric_type: str,
        value: float,
        *,
        unit: str = "",
        labels: Mapping[str, str] | None = None,
        tenant_id: str | None = None,
        occurred_at: int | None = None,
    ) -> MetricRecorded:
        event = self._event(
            MetricRecorded,
            occurred_at,
            {
                "metric_type": metric_type,
                "value": value,
                "unit": unit,
                "labels": dict(labels or {}),
                "tenant_id": tenant_id,
            },
        )
        return event
