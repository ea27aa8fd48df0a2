"""The fold of lifecycle events into an execution's state. Pure: no I/O.

Every field is a last-writer-wins register stamped ``(occurred_at, event_id)``: where two events
disagree the later ``occurred_at`` wins and ``event_id`` breaks ties. Retries are a set of event
ids. Registers and sets merge by max and union, which are commutative, associative and
idempotent, so the state is a function of the SET of events: any order, any duplicate, any
redelivery folds to the same state. A step that completes before its start arrives, or an
execution that completes before its last step events, ends in the right state.

:class:`ExecutionState` is what the processor keeps; :func:`snapshot` is the view that is
published (``axmon.execution-state``) and stored (the original design's columns).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from processor.folds.frozen import replacer
from schemas.events import (
    ExecutionCancelled,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionStarted,
    ExecutionUpdated,
    LifecycleEvent,
    StepCompleted,
    StepEvent,
    StepFailed,
    StepRetried,
    StepStarted,
)

Stamp = tuple[int, str]
"""``(occurred_at, event_id)``: the order in which registers let events win."""


@dataclass(frozen=True, slots=True)
class Reg:
    """A last-writer-wins register."""

    at: int
    event_id: str
    value: Any

    @property
    def stamp(self) -> Stamp:
        return (self.at, self.event_id)


def _lww(current: Reg | None, at: int, event_id: str, value: Any) -> Reg:
    if current is None or (at, event_id) > current.stamp:
        return Reg(at, event_id, value)
    return current


def _fww(current: Reg | None, at: int, event_id: str, value: Any) -> Reg:
    """A first-writer-wins register: the earliest stamp holds (a trace context is the one the
    execution or step began in)."""
    if current is None or (at, event_id) < current.stamp:
        return Reg(at, event_id, value)
    return current


def _trace(current: Reg | None, event: LifecycleEvent) -> Reg | None:
    """``current`` after ``event``'s trace context, if it carries one."""
    if event.trace_id is None:
        return current
    return _fww(current, event.occurred_at, event.event_id, [event.trace_id, event.span_id])


TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
EXECUTION_STATUSES = ("pending", "running", "completed", "failed", "cancelled")


@dataclass(frozen=True, slots=True)
class StepState:
    step_id: str
    start: Reg | None = None
    """value: ``[step_key, step_name]``"""
    outcome: Reg | None = None
    """value: ``"completed"``, ``"failed"`` or ``"retried"`` (running again)."""
    failure: Reg | None = None
    """value: the latest failure's error message (kept after a successful retry)."""
    completion: Reg | None = None
    """value: ``[tokens_used, cost, input_size, output_size]``"""
    retries: frozenset[str] = frozenset()
    """event ids of ``step.retried``: the retry count is their number."""
    attempts: frozenset[tuple[int, str, str]] = frozenset()
    """Every ``step.completed`` and ``step.failed`` as ``(occurred_at, event_id, outcome)``:
    the attempts that derived step metrics count."""
    trace: Reg | None = None
    """value: ``[trace_id, span_id or None]``, the engine's trace context of the step's first
    event that carried one."""
    retry_times: frozenset[tuple[int, str]] = frozenset()
    """``(occurred_at, event_id)`` of each ``step.retried`` (states folded before this field
    existed have the ids in ``retries`` only)."""

    @property
    def status(self) -> str:
        if self.outcome is None or self.outcome.value == "retried":
            return "running"
        return str(self.outcome.value)


@dataclass(frozen=True, slots=True)
class ExecutionState:
    execution_id: str
    tenant: Reg | None = None
    start: Reg | None = None
    """value: ``[workflow_id, workflow_name, user_id]``"""
    steps_total: Reg | None = None
    metadata: Reg | None = None
    current_step: Reg | None = None
    end: Reg | None = None
    """value: ``[status, message]`` for completed, failed (error) or cancelled (reason)."""
    steps: Mapping[str, StepState] = field(default_factory=dict)
    endings: frozenset[tuple[int, str, str]] = frozenset()
    """Every terminal event as ``(occurred_at, event_id, status)`` (normally one)."""
    last_event_at: int = 0
    """Largest ``occurred_at`` among the execution's events."""
    trace: Reg | None = None
    """value: ``[trace_id, span_id or None]``, the engine's trace context of the first
    execution-level event that carried one."""

    @property
    def status(self) -> str:
        if self.end is not None:
            return str(self.end.value[0])
        return "running" if self.start is not None else "pending"

    @property
    def terminal(self) -> bool:
        return self.end is not None

    @property
    def tenant_id(self) -> str:
        return str(self.tenant.value) if self.tenant else ""


_replace_state = replacer(ExecutionState)
_replace_step = replacer(StepState)


def apply(state: ExecutionState | None, event: LifecycleEvent) -> ExecutionState:
    """The state after ``event``. ``state`` is ``None`` for an execution not seen yet."""
    s = state if state is not None else ExecutionState(event.execution_id)
    at, eid = event.occurred_at, event.event_id
    s = _replace_state(
        s,
        tenant=_lww(s.tenant, at, eid, event.tenant_id),
        last_event_at=max(s.last_event_at, at),
    )
    if isinstance(event, StepEvent):
        return _apply_step(s, event)
    s = _replace_state(s, trace=_trace(s.trace, event))
    if isinstance(event, ExecutionStarted):
        return _replace_state(
            s,
            start=_lww(s.start, at, eid, [event.workflow_id, event.workflow_name, event.user_id]),
            steps_total=_lww(s.steps_total, at, eid, event.steps_total),
            metadata=_lww(s.metadata, at, eid, event.metadata),
        )
    if isinstance(event, ExecutionUpdated):
        if event.steps_total is not None:
            s = _replace_state(s, steps_total=_lww(s.steps_total, at, eid, event.steps_total))
        if event.metadata is not None:
            s = _replace_state(s, metadata=_lww(s.metadata, at, eid, event.metadata))
        if event.current_step is not None:
            s = _replace_state(s, current_step=_lww(s.current_step, at, eid, event.current_step))
        return s
    if isinstance(event, ExecutionCompleted):
        return _replace_state(s, end=_lww(s.end, at, eid, ["completed", None]), endings=s.endings | {(at, eid, "completed")})
    if isinstance(event, ExecutionFailed):
        return _replace_state(
            s, end=_lww(s.end, at, eid, ["failed", event.error_message]), endings=s.endings | {(at, eid, "failed")}
        )
    if isinstance(event, ExecutionCancelled):
        return _replace_state(
            s, end=_lww(s.end, at, eid, ["cancelled", event.reason]), endings=s.endings | {(at, eid, "cancelled")}
        )
    raise TypeError(f"not a lifecycle event: {type(event).__name__}")  # pragma: no cover


def _apply_step(s: ExecutionState, event: StepEvent) -> ExecutionState:
    at, eid = event.occurred_at, event.event_id
    step = s.steps.get(event.step_id) or StepState(event.step_id)
    if event.trace_id is not None:
        step = _replace_step(step, trace=_trace(step.trace, event))
    if isinstance(event, StepStarted):
        step = _replace_step(step, start=_lww(step.start, at, eid, [event.step_key, event.step_name]))
        s = _replace_state(s, current_step=_lww(s.current_step, at, eid, event.step_key))
    elif isinstance(event, StepCompleted):
        step = _replace_step(
            step,
            outcome=_lww(step.outcome, at, eid, "completed"),
            attempts=step.attempts | {(at, eid, "completed")},
            completion=_lww(
                step.completion,
                at,
                eid,
                [event.tokens_used, event.cost, event.input_size, event.output_size],
            ),
        )
    elif isinstance(event, StepFailed):
        step = _replace_step(
            step,
            outcome=_lww(step.outcome, at, eid, "failed"),
            attempts=step.attempts | {(at, eid, "failed")},
            failure=_lww(step.failure, at, eid, event.error_message),
        )
    elif isinstance(event, StepRetried):
        step = _replace_step(step, outcome=_lww(step.outcome, at, eid, "retried"), retries=step.retries | {eid},
                       retry_times=step.retry_times | {(at, eid)})
    steps = dict(s.steps)
    steps[event.step_id] = step
    return _replace_state(s, steps=steps)


# -- views -----------------------------------------------------------------------------------


def step_view(execution_id: str, step: StepState) -> dict[str, Any]:
    """A step as the original ``workflow_step_executions`` row (plus nothing else)."""
    key, name = step.start.value if step.start else (None, None)
    started_at = step.start.at if step.start else None
    status = step.status
    completed_at = step.outcome.at if step.outcome and status in ("completed", "failed") else None
    tokens, cost, input_size, output_size = step.completion.value if step.completion else (None,) * 4
    return {
        "id": step.step_id,
        "execution_id": execution_id,
        "step_key": key,
        "step_name": name,
        "status": status,
        "started_at": started_at,
        "completed_at": completed_at,
        "duration": completed_at - started_at if completed_at is not None and started_at is not None else None,
        "retry_count": len(step.retries),
        "error_message": step.failure.value if step.failure else None,
        "input_size": input_size,
        "output_size": output_size,
        "tokens_used": tokens,
        "cost": cost,
        "trace_id": step.trace.value[0] if step.trace else None,
        "span_id": step.trace.value[1] if step.trace else None,
        "retried_at": sorted(at for at, _ in step.retry_times),
    }


def snapshot(state: ExecutionState) -> dict[str, Any]:
    """The execution as the original ``workflow_executions_monitor`` row, with totals and its
    steps (ordered by start time, then id)."""
    workflow_id, workflow_name, user_id = state.start.value if state.start else (None, None, None)
    started_at = state.start.at if state.start else None
    completed_at = state.end.at if state.end else None
    steps = [step_view(state.execution_id, s) for s in state.steps.values()]
    steps.sort(key=lambda v: (v["started_at"] is None, v["started_at"] or 0, v["id"]))
    tokens = [v["tokens_used"] for v in steps if v["tokens_used"] is not None]
    costs = [v["cost"] for v in steps if v["cost"] is not None]
    return {
        "id": state.execution_id,
        "workflow_id": workflow_id,
        "workflow_name": workflow_name,
        "tenant_id": state.tenant_id,
        "user_id": user_id,
        "status": state.status,
        "started_at": started_at,
        "completed_at": completed_at,
        "duration": completed_at - started_at if completed_at is not None and started_at is not None else None,
        "steps_total": state.steps_total.value if state.steps_total else 0,
        "steps_completed": sum(1 for v in steps if v["status"] == "completed"),
        "steps_failed": sum(1 for v in steps if v["status"] == "failed"),
        "current_step": state.current_step.value if state.current_step else None,
        "error_message": state.end.value[1] if state.end else None,
        "metadata": state.metadata.value if state.metadata else {},
        "tokens_used": sum(tokens) if tokens else None,
        "cost": sum(sorted(costs)) if costs else None,
        "last_event_at": state.last_event_at,
        "trace_id": state.trace.value[0] if state.trace else None,
        "span_id": state.trace.value[1] if state.trace else None,
        "steps": steps,
    }


# -- serialisation (table values) ------------------------------------------------------------


def _reg_json(reg: Reg | None) -> list[Any] | None:
    return None if reg is None else [reg.at, reg.event_id, reg.value]


def _reg_load(raw: Any) -> Reg | None:
    return None if raw is None else Reg(int(raw[0]), str(raw[1]), raw[2])


def state_to_json(state: ExecutionState) -> dict[str, Any]:
    return {
        "id": state.execution_id,
        "tenant": _reg_json(state.tenant),
        "start": _reg_json(state.start),
        "steps_total": _reg_json(state.steps_total),
        "metadata": _reg_json(state.metadata),
        "current_step": _reg_json(state.current_step),
        "end": _reg_json(state.end),
        "endings": sorted(state.endings),
        "last_event_at": state.last_event_at,
        "trace": _reg_json(state.trace),
        "steps": {
            sid: [
                _reg_json(s.start),
                _reg_json(s.outcome),
                _reg_json(s.failure),
                _reg_json(s.completion),
                sorted(s.retries),
                sorted(s.attempts),
                _reg_json(s.trace),
                sorted(s.retry_times),
            ]
            for sid, s in state.steps.items()
        },
    }


def state_from_json(data: Mapping[str, Any]) -> ExecutionState:
    steps = {
        sid: StepState(
            sid,
            _reg_load(raw[0]),
            _reg_load(raw[1]),
            _reg_load(raw[2]),
            _reg_load(raw[3]),
            frozenset(raw[4]),
            frozenset((int(a), str(e), str(k)) for a, e, k in raw[5]),
            _reg_load(raw[6]) if len(raw) > 6 else None,
            frozenset((int(a), str(e)) for a, e in raw[7]) if len(raw) > 7 else frozenset(),
        )
        for sid, raw in data.get("steps", {}).items()
    }
    return ExecutionState(
        str(data["id"]),
        _reg_load(data.get("tenant")),
        _reg_load(data.get("start")),
        _reg_load(data.get("steps_total")),
        _reg_load(data.get("metadata")),
        _reg_load(data.get("current_step")),
        _reg_load(data.get("end")),
        steps,
        frozenset((int(a), str(e), str(k)) for a, e, k in data.get("endings", ())),
        int(data.get("last_event_at", 0)),
        _reg_load(data.get("trace")),
    )
