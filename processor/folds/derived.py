"""Metrics derived from lifecycle events, so engines need not record them. Pure.

Each terminal event of an execution gives ``workflow.execution.count`` (value 1) and
``workflow.execution.duration`` (from the execution's start); each ``step.completed`` and
``step.failed`` gives ``workflow.step.count`` and ``workflow.step.duration`` (from the step's
start): steps count attempts, so a step that failed, was retried and completed counts once as
failed and once as completed. A sample needs the start it measures from and the execution's
workflow name, so it appears once those events are in the state, whatever their order: the
samples are a function of the set of events. Labels: ``workflow`` (name), ``status`` and, for
steps, ``step`` (key).

Derived samples are computed data: the worker publishes them to the metrics topic like any
sample, with ``source`` :data:`DERIVED_SOURCE` and an event id fixed by the event it derives
from and the metric (a UUIDv5), so a sample derived twice (after a crash) is recognised as the
same sample. A replay reads them back from the metrics topic and does not derive them again.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping, Set

from processor.folds.execution import ExecutionState
from schemas.events import MetricRecorded

DERIVED_SOURCE = "axmon.processor"
DERIVED_LABELS: dict[str, frozenset[str]] = {
    "workflow.execution.count": frozenset({"workflow", "status"}),
    "workflow.execution.duration": frozenset({"workflow", "status"}),
    "workflow.step.count": frozenset({"workflow", "step", "status"}),
    "workflow.step.duration": frozenset({"workflow", "step", "status"}),
}
"""The series this module derives: metric type -> its label keys."""
_NAMESPACE = uuid.UUID("6f1d3c2a-7a55-4f5e-9a1b-3c1e0d5a9b77")


@functools.lru_cache(maxsize=1 << 16)
def derived_id(event_id: str, metric_type: str) -> str:
    """The id of the sample of ``metric_type`` derived from the event ``event_id`` (uuid5:
    cached, as the same ids are asked for again at each event of an execution)."""
    return str(uuid.uuid5(_NAMESPACE, f"{metric_type}|{event_id}"))


def in_derived_lane(metric_type: str, labels: Mapping[str, str]) -> bool:
    """Whether a series is one this module derives (a metric type of :data:`DERIVED_LABELS`
    with exactly its label keys). A function of the series, not of a sample's ``source``, so
    all samples of a window share one lane (see :class:`processor.folds.metrics_core.MetricsCore`)."""
    keys = DERIVED_LABELS.get(metric_type)
    return keys is not None and len(labels) == len(keys) and all(k in labels for k in keys)


def derived_origins(state: ExecutionState) -> set[str]:
    """The ids of the events that :func:`derived_samples` derives samples from (cheap: no
    samples are built)."""
    if state.start is None:
        return set()
    origins = {event_id for _, event_id, _ in state.endings}
    for step in state.steps.values():
        if step.start is not None:
            origins.update(event_id for _, event_id, _ in step.attempts)
    return origins


def derived_samples(state: ExecutionState, skip: Set[str] = frozenset()) -> list[MetricRecorded]:
    """Every sample the events folded into ``state`` imply (but those derived from the events
    in ``skip``)."""
    out: list[MetricRecorded] = []
    if state.start is None:
        return out
    workflow = str(state.start.value[1])
    tenant = state.tenant_id or None
    started_at = state.start.at
    for at, event_id, status in sorted(state.endings):
        if event_id in skip:
            continue
        labels = {"workflow": workflow, "status": status}
        out.append(_sample(event_id, "workflow.execution.count", 1, "count", labels, tenant, at))
        out.append(_sample(event_id, "workflow.execution.duration", at - started_at, "ms", labels, tenant, at))
    for step in state.steps.values():
        if step.start is None:
            continue
        step_key, step_started = str(step.start.value[0]), step.start.at
        for at, event_id, outcome in sorted(step.attempts):
            if event_id in skip:
                continue
            labels = {"workflow": workflow, "step": step_key, "status": outcome}
            out.append(_sample(event_id, "workflow.step.count", 1, "count", labels, tenant, at))
            out.append(_sample(event_id, "workflow.step.duration", at - step_started, "ms", labels, tenant, at))
    return out


def _sample(
    event_id: str, metric_type: str, value: float, unit: str, labels: dict[str, str], tenant: str | None, at: int
) -> MetricRecorded:
    return MetricRecorded(
        event_id=derived_id(event_id, metric_type),
        occurred_at=at,
        tenant_id=tenant,
        source=DERIVED_SOURCE,
        metric_type=metric_type,
        value=value,
        unit=unit,
        labels=labels,
    )
