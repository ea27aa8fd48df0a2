"""Metrics derived from lifecycle events, so engines need not record them. Pure.

``workflow.execution.duration`` and ``workflow.execution.count`` once an execution has ended
(and its start is known), ``workflow.step.duration`` and ``workflow.step.count`` once a step
has completed or failed (and its start and the execution's start are known). Labels:
``workflow`` (name), ``status`` and, for steps, ``step`` (key).

Derived samples are computed data: the worker publishes them to the metrics topic like any
sample, with ``source`` :data:`DERIVED_SOURCE` and an event id fixed by the entity and the
metric (a UUIDv5), so a sample derived twice (after a crash) is recognised as the same sample.
A replay reads them back from the metrics topic and does not derive them again.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from schemas.events import MetricRecorded

DERIVED_SOURCE = "axmon.processor"
_NAMESPACE = uuid.UUID("6f1d3c2a-7a55-4f5e-9a1b-3c1e0d5a9b77")


def derived_id(entity_id: str, metric_type: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{metric_type}|{entity_id}"))


def derived_samples(snapshot: Mapping[str, Any]) -> list[MetricRecorded]:
    """Every sample the execution ``snapshot`` (see :func:`processor.execution.snapshot`)
    implies, as it stands."""
    out: list[MetricRecorded] = []
    workflow = snapshot.get("workflow_name")
    if workflow is None:
        return out
    tenant = snapshot["tenant_id"] or None
    if snapshot["status"] in ("completed", "failed", "cancelled") and snapshot["completed_at"] is not None:
        labels = {"workflow": workflow, "status": snapshot["status"]}
        at = snapshot["completed_at"]
        out.append(_sample(snapshot["id"], "workflow.execution.count", 1, "count", labels, tenant, at))
        if snapshot["duration"] is not None:
            out.append(_sample(snapshot["id"], "workflow.execution.duration", snapshot["duration"], "ms", labels, tenant, at))
    for step in snapshot["steps"]:
        if step["status"] not in ("completed", "failed") or step["step_key"] is None or step["completed_at"] is None:
            continue
        labels = {"workflow": workflow, "step": step["step_key"], "status": step["status"]}
        at = step["completed_at"]
        out.append(_sample(step["id"], "workflow.step.count", 1, "count", labels, tenant, at))
        if step["duration"] is not None:
            out.append(_sample(step["id"], "workflow.step.duration", step["duration"], "ms", labels, tenant, at))
    return out


def _sample(
    entity_id: str, metric_type: str, value: float, unit: str, labels: dict[str, str], tenant: str | None, at: int
) -> MetricRecorded:
    return MetricRecorded(
        event_id=derived_id(entity_id, metric_type),
        occurred_at=at,
        tenant_id=tenant,
        source=DERIVED_SOURCE,
        metric_type=metric_type,
        value=value,
        unit=unit,
        labels=labels,
    )
