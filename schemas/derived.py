"""The contract of the derived topics the processor publishes, as JSON Schema.

Consumers in any language read these topics; ``schemas/json/derived/`` holds the files
(generated from this module by ``python -m schemas.jsonschema``).

| topic | key | value |
|---|---|---|
| ``axmon.execution-state`` (compacted) | execution id | the execution with its steps after every change; a tombstone when it leaves the worker's table (a horizon after it ended) |
| ``axmon.workflow-stats`` (compacted) | tenant id | the tenant's workflow stats after every change |
| ``axmon.metric-rollups`` (compacted) | ``<series>@<window start>`` | a window's aggregate, republished as it changes and once more with ``final: true`` when it closes |
| ``axmon.dead-letter`` | ``<topic>/<partition>/<offset>`` | input that could not be processed: reason, detail, origin and the original bytes (base64) |
| ``axmon.alerts`` | alert id | an alert's whole record after each transition (pending, firing, acknowledged, resolved) |
| ``axmon.alert-acks`` (input) | alert id | an acknowledgement, on the partition given by the alert's ``partition`` |
| ``axmon.worker-status`` (compacted) | ``host:pid`` | a worker process's heartbeat: state, restarts, last error, counters, partitions held |
"""

from __future__ import annotations

from typing import Any

_INT = {"type": "integer"}
_NUM = {"type": "number"}
_STR = {"type": "string"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "type": [schema["type"], "null"]}


def _object(title: str, description: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "title": title,
        "description": description,
        "properties": properties,
        "required": list(properties),
        "additionalProperties": True,
    }


STEP = _object(
    "step execution",
    "A step as the original workflow_step_executions row.",
    {
        "id": _STR,
        "execution_id": _STR,
        "step_key": _nullable(_STR),
        "step_name": _nullable(_STR),
        "status": {"enum": ["running", "completed", "failed"]},
        "started_at": _nullable(_INT),
        "completed_at": _nullable(_INT),
        "duration": _nullable(_INT),
        "retry_count": _INT,
        "error_message": _nullable(_STR),
        "input_size": _nullable(_INT),
        "output_size": _nullable(_INT),
        "tokens_used": _nullable(_INT),
        "cost": _nullable(_NUM),
    },
)

EXECUTION_STATE = _object(
    "axmon.execution-state",
    "An execution as the original workflow_executions_monitor row, with token and cost "
    "totals and its steps. Times are epoch ms (event time); duration is ms.",
    {
        "id": _STR,
        "workflow_id": _nullable(_STR),
        "workflow_name": _nullable(_STR),
        "tenant_id": _STR,
        "user_id": _nullable(_STR),
        "status": {"enum": ["pending", "running", "completed", "failed", "cancelled"]},
        "started_at": _nullable(_INT),
        "completed_at": _nullable(_INT),
        "duration": _nullable(_INT),
        "steps_total": _INT,
        "steps_completed": _INT,
        "steps_failed": _INT,
        "current_step": _nullable(_STR),
        "error_message": _nullable(_STR),
        "metadata": {"type": "object"},
        "tokens_used": _nullable(_INT),
        "cost": _nullable(_NUM),
        "last_event_at": _INT,
        "steps": {"type": "array", "items": STEP},
    },
)
_TRACE_CONTEXT = {
    "trace_id": {**_nullable(_STR), "description": "The engine's W3C trace id, when its events carried one."},
    "span_id": {**_nullable(_STR), "description": "The engine's W3C span id of the first event that carried a trace id."},
}
STEP["properties"].update(_TRACE_CONTEXT)
STEP["properties"]["retried_at"] = {
    "type": "array", "items": _INT,
    "description": "Event times (epoch ms) of the step's retries, in order.",
}
EXECUTION_STATE["properties"].update(_TRACE_CONTEXT)
EXECUTION_STATE["properties"]["stale_since"] = {
    **_INT,
    "description": "Present while the execution is stale: running or pending with no event for the "
    "worker's --stale-after (wall clock, epoch ms of the flagging).",
}

WORKFLOW_STATS = _object(
    "axmon.workflow-stats",
    "A tenant's workflow stats as the original getWorkflowStats defines them; pending counts "
    "executions whose start event has not arrived; avg_duration (ms) is over executions with "
    "a duration; success_rate is completed / total in percent.",
    {
        "tenant_id": _STR,
        "total": _INT,
        "pending": _INT,
        "running": _INT,
        "completed": _INT,
        "failed": _INT,
        "cancelled": _INT,
        "avg_duration": _NUM,
        "success_rate": _NUM,
    },
)

SKETCH = _object(
    "quantile sketch",
    "DDSketch buckets: relative accuracy a; bucket k holds values in (g^(k-1), g^k] with "
    "g = (1+a)/(1-a); p and n list positive and negative buckets as k, count, k, count...; "
    "z counts values within 1e-9 of zero.",
    {
        "a": _NUM,
        "z": _INT,
        "p": {"type": "array", "items": _INT},
        "n": {"type": "array", "items": _INT},
    },
)

METRIC_ROLLUP = _object(
    "axmon.metric-rollups",
    "A tumbling event-time window of one metric series. count, sum, min, max and avg are "
    "exact; p50/p95/p99 are nearest-rank quantiles from the sketch (within 1% relative error, "
    "exact at the extremes).",
    {
        "series": {"type": "string", "description": "The series key of axmon.metrics (JSON text)."},
        "tenant_id": _nullable(_STR),
        "metric_type": _STR,
        "labels": {"type": "object", "additionalProperties": _STR},
        "unit": _STR,
        "window_start": _INT,
        "window_end": _INT,
        "count": _INT,
        "sum": _NUM,
        "avg": _nullable(_NUM),
        "min": _nullable(_NUM),
        "max": _nullable(_NUM),
        "p50": _nullable(_NUM),
        "p95": _nullable(_NUM),
        "p99": _nullable(_NUM),
        "sketch": SKETCH,
        "final": {"type": "boolean", "description": "The window has closed (by stream time, or idle on the wall clock)."},
    },
)

DEAD_LETTER = _object(
    "axmon.dead-letter",
    "Input the processor could not use. reason: undecodable, not_an_object, unknown_type, "
    "unknown_version, missing_field, invalid_field, out_of_range, too_large, too_deep, wrong_topic, late, "
    "invalid_internal, invalid_ack, processing_error (its fold failed: detail is the exception's type and message).",
    {
        "reason": _STR,
        "detail": _STR,
        "topic": _STR,
        "partition": _INT,
        "offset": _INT,
        "timestamp": _nullable(_INT),
        "key": _nullable({"type": "string", "contentEncoding": "base64"}),
        "value": _nullable({"type": "string", "contentEncoding": "base64"}),
    },
)

_TIME = _nullable(_INT)

ALERT = _object(
    "axmon.alerts",
    "An alert after a transition. kind 'threshold': a rule of 'axmon worker --rules' on a metric "
    "series, evaluated when windows close (times are event time: window ends); kind 'stale': the "
    "built-in rule execution.stale (times are wall clock). status moves pending -> firing -> "
    "acknowledged -> resolved (a pending alert whose condition stops is resolved without firing). "
    "The same record may be delivered more than once; (id, status) identifies a transition.",
    {
        "id": _STR,
        "rule": _STR,
        "kind": {"enum": ["threshold", "stale"]},
        "severity": {"enum": ["info", "warning", "error", "critical"]},
        "status": {"enum": ["pending", "firing", "acknowledged", "resolved"]},
        "tenant_id": _nullable(_STR),
        "metric_type": _nullable(_STR),
        "labels": {"type": "object", "additionalProperties": _STR},
        "series": _nullable(_STR),
        "execution_id": _nullable(_STR),
        "aggregation": {"enum": ["avg", "sum", "min", "max", "count", "p50", "p95", "p99", None]},
        "operator": {"enum": ["gt", "gte", "lt", "lte", "eq", "neq", None]},
        "threshold": _nullable(_NUM),
        "resolve_threshold": _nullable(_NUM),
        "window": _nullable(_INT),
        "value": _nullable(_NUM),
        "pending_at": _INT,
        "fired_at": _TIME,
        "acknowledged_at": _TIME,
        "acknowledged_by": _nullable(_STR),
        "resolved_at": _TIME,
        "at": {**_INT, "description": "When this transition happened."},
        "partition": {**_INT, "description": "The partition of axmon.alert-acks an ack of this alert goes to."},
    },
)

ALERT_ACK = _object(
    "axmon.alert-acks",
    "An acknowledgement of a firing alert (what 'axmon alerts ack' publishes); at is epoch ms.",
    {"alert_id": _STR, "rule": _STR, "series": _STR, "by": _STR, "at": _INT},
)

_ERROR = _object(
    "worker error",
    "The last error of the worker: at (epoch ms), the exception's type, its message.",
    {"at": _INT, "type": _STR, "message": _STR},
)

WORKER_STATUS = _object(
    "axmon.worker-status",
    "A worker process's heartbeat, published every interval_s seconds from a thread of its own, "
    "once more with state 'restarting' before it starts itself again (exec, same pid) and "
    "'stopped' when it stops cleanly. Times are epoch ms (wall clock). started_at, restarts, "
    "restart_times (the newest 20) and last_error survive its restarts; counters are since "
    "run_started_at.",
    {
        "worker": {**_STR, "description": "host:pid, the key."},
        "host": _STR,
        "pid": _INT,
        "group": {**_STR, "description": "The worker's consumer group."},
        "state": {"enum": ["starting", "recovering", "running", "stalled", "restarting", "stopped"]},
        "heartbeat_at": _INT,
        "started_at": _INT,
        "run_started_at": _INT,
        "restarts": _INT,
        "restart_times": {"type": "array", "items": _INT},
        "last_error": {"oneOf": [{"type": "null"}, _ERROR]},
        "interval_s": _NUM,
        "stall_timeout_s": {**_NUM, "description": "The watchdog's limit (0: no watchdog)."},
        "waiting": _nullable(_INT),
        "stalled_for_s": _nullable(_NUM),
        "counters": {
            "type": "object",
            "description": "Per core (lifecycle, metrics, alerts) its counters, and dead_letters by reason.",
            "additionalProperties": {"type": "object", "additionalProperties": _INT},
        },
    },
)
WORKER_STATUS["properties"] |= {  # not required: a worker of an older version does not say them
    "partitions": {
        "type": ["object", "null"],
        "description": "The partitions Faust has assigned the worker, per source topic ({} while it holds none, "
        "during a rebalance).",
        "additionalProperties": {"type": "array", "items": _INT},
    },
    "state_dir": {**_nullable(_STR), "description": "The worker's own directory on its machine."},
}

DERIVED_SCHEMAS: dict[str, dict[str, Any]] = {
    "execution-state": EXECUTION_STATE,
    "workflow-stats": WORKFLOW_STATS,
    "metric-rollups": METRIC_ROLLUP,
    "dead-letter": DEAD_LETTER,
    "alerts": ALERT,
    "alert-acks": ALERT_ACK,
    "worker-status": WORKER_STATUS,
}
"""Topic name (without prefix) -> schema of its values."""
