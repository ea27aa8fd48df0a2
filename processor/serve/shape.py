"""Rows of the query API in the original design's camelCase."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def camel_key(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def camel(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``row`` with its top-level keys in camelCase (nested documents such as ``metadata`` and
    ``labels`` are the engine's own and keep their keys)."""
    return None if row is None else {camel_key(k): v for k, v in row.items()}


def camels(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{camel_key(k): v for k, v in row.items()} for row in rows]


def timeline(workflow_id: str, executions: list[dict[str, Any]]) -> dict[str, Any]:
    """The original WorkflowTimeline of ``executions`` (rows of the query API): averages over
    the executions with a duration, the success rate over all; ``None`` where the original
    divided by zero."""
    durations = [{"timestamp": e["started_at"], "duration": e["duration"]} for e in executions if e["duration"] is not None]
    completed = sum(1 for e in executions if e["status"] == "completed")
    return {
        "workflowId": workflow_id,
        "executions": camels(executions),
        "avgDuration": sum(d["duration"] for d in durations) / len(durations) if durations else None,
        "successRate": completed / len(executions) * 100 if executions else None,
        "timeline": durations,
    }
