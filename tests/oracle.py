"""What the pipeline must produce, computed the obvious way straight from the generated events.

An independent oracle for the end-to-end tests: it imports nothing from ``processor`` and none
of the folds, so a test that compares the pipeline with it checks that the folds are right, not
only that the pipeline equals them. It is written from README's contract, the slow and plain way:

- events are deduplicated by ``event_id`` (a resend is the same event);
- every field of an execution or a step is set by the LAST event that sets it, "last" meaning
  the largest ``(occurred_at, event_id)``;
- an execution's status is its last terminal event's, else ``running`` once started, else
  ``pending``; a step's is its last outcome's (``step.retried`` means running again);
- per-tenant stats count executions by status; derived samples: one ``workflow.execution.count``
  (value 1) and ``workflow.execution.duration`` per terminal event, one ``workflow.step.count``
  and ``workflow.step.duration`` per ``step.completed``/``step.failed`` (attempts), once the
  start they measure from is known;
- percentiles are nearest rank: the value at index ``ceil(n*p)-1`` of the sorted values.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from schemas import Event, LifecycleEvent, MetricRecorded

TERMINAL = {"execution.completed": "completed", "execution.failed": "failed", "execution.cancelled": "cancelled"}
STEP_OUTCOMES = {"step.completed": "completed", "step.failed": "failed", "step.retried": "running"}
QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}


def unique(events: Iterable[Event]) -> list[Event]:
    """Each event once (by id), in the order ``(occurred_at, event_id)``: the last is the winner."""
    by_id = {e.event_id: e for e in events}
    return sorted(by_id.values(), key=lambda e: (e.occurred_at, e.event_id))


def last(events: list[Event], *types: str, having: str | None = None) -> Event | None:
    """The last of ``events`` (already in winning order) of one of ``types`` (and with the field
    ``having`` not None)."""
    found = [e for e in events if e.TYPE in types and (having is None or getattr(e, having) is not None)]
    return found[-1] if found else None


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * q) - 1)]


# -- executions ------------------------------------------------------------------------------


def expected_step(execution_id: str, step_id: str, events: list[Event]) -> dict[str, Any]:
    start = last(events, "step.started")
    outcome = last(events, *STEP_OUTCOMES)
    status = STEP_OUTCOMES[outcome.TYPE] if outcome is not None else "running"
    completed_at = outcome.occurred_at if outcome is not None and status != "running" else None
    started_at = start.occurred_at if start is not None else None
    completion = last(events, "step.completed")
    failure = last(events, "step.failed")
    return {
        "id": step_id,
        "execution_id": execution_id,
        "step_key": getattr(start, "step_key", None),
        "step_name": getattr(start, "step_name", None),
        "status": status,
        "started_at": started_at,
        "completed_at": completed_at,
        "duration": completed_at - started_at if completed_at is not None and started_at is not None else None,
        "retry_count": sum(e.TYPE == "step.retried" for e in events),
        "error_message": getattr(failure, "error_message", None),
        "input_size": getattr(completion, "input_size", None),
        "output_size": getattr(completion, "output_size", None),
        "tokens_used": getattr(completion, "tokens_used", None),
        "cost": getattr(completion, "cost", None),
        **first_trace(events),
        "retried_at": sorted(e.occurred_at for e in events if e.TYPE == "step.retried"),
    }


def first_trace(events: list[Event]) -> dict[str, Any]:
    """``trace_id`` and ``span_id`` of the earliest event (by time, then id) that has a trace id."""
    traced = [e for e in events if getattr(e, "trace_id", None) is not None]
    first = min(traced, key=lambda e: (e.occurred_at, e.event_id), default=None)
    return {"trace_id": getattr(first, "trace_id", None), "span_id": getattr(first, "span_id", None)}


def expected_execution(execution_id: str, events: list[Event]) -> dict[str, Any]:
    """The execution as published on ``axmon.execution-state``, from its (unique, ordered) events."""
    start = last(events, "execution.started")
    end = last(events, *TERMINAL)
    by_step: defaultdict[str, list[Event]] = defaultdict(list)
    for e in events:
        if e.TYPE.startswith("step."):
            by_step[e.step_id].append(e)  # type: ignore[attr-defined]
    steps = [expected_step(execution_id, sid, evs) for sid, evs in by_step.items()]
    steps.sort(key=lambda s: (s["started_at"] is None, s["started_at"] or 0, s["id"]))
    started_at = start.occurred_at if start is not None else None
    completed_at = end.occurred_at if end is not None else None
    steps_total = last(events, "execution.started", "execution.updated", having="steps_total")
    metadata = last(events, "execution.started", "execution.updated", having="metadata")
    current = next((e for e in reversed(events) if e.TYPE == "step.started"
                    or (e.TYPE == "execution.updated" and e.current_step is not None)), None)  # type: ignore[attr-defined]
    tokens = [s["tokens_used"] for s in steps if s["tokens_used"] is not None]
    costs = [s["cost"] for s in steps if s["cost"] is not None]
    error = None
    if end is not None and end.TYPE == "execution.failed":
        error = end.error_message  # type: ignore[attr-defined]
    elif end is not None and end.TYPE == "execution.cancelled":
        error = end.reason  # type: ignore[attr-defined]
    return {
        "id": execution_id,
        "workflow_id": getattr(start, "workflow_id", None),
        "workflow_name": getattr(start, "workflow_name", None),
        "tenant_id": events[-1].tenant_id,
        "user_id": getattr(start, "user_id", None),
        "status": TERMINAL[end.TYPE] if end is not None else "running" if start is not None else "pending",
        "started_at": started_at,
        "completed_at": completed_at,
        "duration": completed_at - started_at if completed_at is not None and started_at is not None else None,
        "steps_total": steps_total.steps_total if steps_total is not None else 0,  # type: ignore[attr-defined]
        "steps_completed": sum(s["status"] == "completed" for s in steps),
        "steps_failed": sum(s["status"] == "failed" for s in steps),
        "current_step": None if current is None
        else current.step_key if current.TYPE == "step.started" else current.current_step,  # type: ignore[attr-defined]
        "error_message": error,
        "metadata": metadata.metadata if metadata is not None else {},  # type: ignore[attr-defined]
        "tokens_used": sum(tokens) if tokens else None,
        "cost": math.fsum(costs) if costs else None,
        "last_event_at": events[-1].occurred_at,
        **first_trace([e for e in events if not e.TYPE.startswith("step.")]),
        "steps": steps,
    }


def lifecycle_by_execution(events: Iterable[Event]) -> dict[str, list[Event]]:
    out: defaultdict[str, list[Event]] = defaultdict(list)
    for e in unique(events):
        if isinstance(e, LifecycleEvent):
            out[e.execution_id].append(e)
    return dict(out)


def expected_executions(events: Iterable[Event]) -> dict[str, dict[str, Any]]:
    """Execution id -> the execution as published, for every execution in ``events``."""
    return {eid: expected_execution(eid, evs) for eid, evs in lifecycle_by_execution(events).items()}


def expected_row(execution: dict[str, Any]) -> dict[str, Any]:
    """An execution as its ``workflow_executions_monitor`` row: the NOT NULL columns of an
    execution whose start is unknown hold '' and its last event time."""
    row = {k: v for k, v in execution.items() if k != "steps"}
    for name in ("workflow_id", "workflow_name", "user_id"):
        row[name] = row[name] or ""
    if row["started_at"] is None:
        row["started_at"] = row["last_event_at"]
    row["metadata"] = json.dumps(row["metadata"], separators=(",", ":"), ensure_ascii=False)
    return row


def expected_step_row(step: dict[str, Any]) -> dict[str, Any]:
    row = dict(step)
    row["step_key"] = row["step_key"] or ""
    row["step_name"] = row["step_name"] or ""
    if row["started_at"] is None:
        row["started_at"] = row["completed_at"] if row["completed_at"] is not None else 0
    row["retried_at"] = json.dumps(row["retried_at"], separators=(",", ":")) if row["retried_at"] else None
    return row


# -- per-tenant stats ------------------------------------------------------------------------


def expected_stats(executions: Iterable[dict[str, Any]], tenant: str | None = None) -> dict[str, Any]:
    """The stats of the executions of ``tenant`` (all of them when None)."""
    mine = [x for x in executions if tenant is None or x["tenant_id"] == tenant]
    counts = {s: sum(x["status"] == s for x in mine) for s in ("pending", "running", "completed", "failed", "cancelled")}
    durations = [x["duration"] for x in mine if x["duration"] is not None]
    return {
        "total": len(mine),
        **counts,
        "avg_duration": sum(durations) / len(durations) if durations else 0.0,
        "success_rate": round(counts["completed"] / len(mine) * 100, 2) if mine else 0.0,
    }


# -- samples: raw and derived ----------------------------------------------------------------


def derived(executions_events: dict[str, list[Event]]) -> list[MetricRecorded]:
    """The samples the lifecycle events imply (ids: ``<metric type>|<origin event id>``)."""
    out: list[MetricRecorded] = []
    for evs in executions_events.values():
        start = last(evs, "execution.started")
        if start is None:
            continue
        workflow, tenant = start.workflow_name, evs[-1].tenant_id or None  # type: ignore[attr-defined]

        def sample(origin: Event, metric: str, value: float, unit: str, labels: dict[str, str]) -> MetricRecorded:
            return MetricRecorded(event_id=f"{metric}|{origin.event_id}", occurred_at=origin.occurred_at, tenant_id=tenant,
                                  metric_type=metric, value=value, unit=unit, labels=labels)

        for e in evs:
            if e.TYPE in TERMINAL:
                labels = {"workflow": workflow, "status": TERMINAL[e.TYPE]}
                out.append(sample(e, "workflow.execution.count", 1, "count", labels))
                out.append(sample(e, "workflow.execution.duration", e.occurred_at - start.occurred_at, "ms", labels))
        steps: defaultdict[str, list[Event]] = defaultdict(list)
        for e in evs:
            if e.TYPE.startswith("step."):
                steps[e.step_id].append(e)  # type: ignore[attr-defined]
        for step_events in steps.values():
            step_start = last(step_events, "step.started")
            if step_start is None:
                continue
            for e in step_events:
                if e.TYPE in ("step.completed", "step.failed"):
                    labels = {"workflow": workflow, "step": step_start.step_key, "status": STEP_OUTCOMES[e.TYPE]}  # type: ignore[attr-defined]
                    out.append(sample(e, "workflow.step.count", 1, "count", labels))
                    out.append(sample(e, "workflow.step.duration", e.occurred_at - step_start.occurred_at, "ms", labels))
    return out


def expected_samples(events: Iterable[Event]) -> list[MetricRecorded]:
    """Every sample the database must hold: the raw ones (once each) and the derived ones."""
    events = list(events)
    raw = [e for e in unique(events) if isinstance(e, MetricRecorded)]
    return raw + derived(lifecycle_by_execution(events))


def summary(values: list[float]) -> dict[str, Any]:
    """count, sum, avg, min, max and the exact nearest-rank p50/p95/p99 of ``values``."""
    total = math.fsum(values)
    return {"count": len(values), "sum": total, "avg": total / len(values), "min": min(values), "max": max(values),
            **{name: nearest_rank(values, q) for name, q in QUANTILES.items()}}


def series_labels(sample: MetricRecorded) -> str:
    return json.dumps([sample.tenant_id or "", sample.metric_type, sorted(sample.labels.items())], separators=(",", ":"),
                      ensure_ascii=False)


def expected_rollups(events: Iterable[Event], window_ms: int) -> dict[str, dict[str, Any]]:
    """``<series>@<window start>`` -> the window's exact summary, for every window with a sample."""
    windows: defaultdict[str, list[float]] = defaultdict(list)
    for s in expected_samples(events):
        windows[f"{series_labels(s)}@{s.occurred_at // window_ms * window_ms}"].append(float(s.value))
    return {key: summary(values) for key, values in windows.items()}


# -- comparing -------------------------------------------------------------------------------


def same(got: Any, want: Any, rel: float = 1e-9) -> bool:
    """Equal, but floats only up to ``rel`` relative error (sums of costs depend on the order of
    addition; nothing else is approximate)."""
    if isinstance(want, float) or isinstance(got, float):
        return isinstance(got, (int, float)) and isinstance(want, (int, float)) and math.isclose(got, want, rel_tol=rel, abs_tol=1e-300)
    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and all(same(got[k], want[k], rel) for k in want)
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(same(g, w, rel) for g, w in zip(got, want))
    return bool(got == want)


def differences(got: dict[str, Any], want: dict[str, Any], limit: int = 3) -> str:
    """What differs between two keyed collections, briefly ('' when they are the same)."""
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    differing = [k for k in want if k in got and not same(got[k], want[k])]
    if not (missing or extra or differing):
        return ""
    lines = [f"missing {len(missing)} {missing[:limit]}, extra {len(extra)} {extra[:limit]}, differing {len(differing)}"]
    for k in differing[:limit]:
        fields = [f for f in want[k] if not same(got[k].get(f), want[k][f])] if isinstance(want[k], dict) else []
        lines.append(f"  {k}: " + "; ".join(f"{f}: got {got[k].get(f)!r} want {want[k][f]!r}" for f in fields[:5]))
    return "\n".join(lines)


def magnitude(samples: Iterable[MetricRecorded]) -> float:
    """The largest |value| among ``samples``: the scale of a sum's rounding error."""
    return max((abs(float(s.value)) for s in samples), default=0.0)
