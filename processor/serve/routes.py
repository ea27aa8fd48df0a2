"""The ``/api/v1`` endpoints. Each opens its own read-only :class:`processor.store.browse.Browser`
(SQLite connections stay on the thread that made them) and keeps to the caller's tenants."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse

from processor.errors import ConfigError
from processor.runtime.acks import ack_of, find_alert, publish_ack
from processor.serve.auth import ApiError, Principal, StreamTokens, narrowed, tenant_scope
from processor.serve.charts import Range as ChartRange
from processor.serve.charts import chart_points
from processor.serve.deps import Caller, Config, principal_of
from processor.serve.health import system_health
from processor.serve.shape import camel, camels, timeline
from processor.serve.sse import stream as sse_stream
from processor.store.browse import (
    ALERT_STATUSES,
    EXECUTION_STATUSES,
    SEVERITIES,
    Browser,
    Cursor,
)

router = APIRouter()

HOUR_MS = 3_600_000
DASHBOARD_METRICS = ("workflow.execution.duration", "cache.hit_rate", "worker.pool.utilization")

Tenant = Annotated[str | None, Query(min_length=1, description="a tenant id; omitted: all the key may see")]
Millis = Annotated[int | None, Query(ge=0, description="epoch ms")]
ExecutionStatus = Literal["pending", "running", "completed", "failed", "cancelled"]
AlertStatus = Literal["pending", "firing", "acknowledged", "resolved"]
Severity = Literal["info", "warning", "error", "critical"]
assert set(EXECUTION_STATUSES) == set(ExecutionStatus.__args__)  # type: ignore[attr-defined]
assert set(ALERT_STATUSES) == set(AlertStatus.__args__) and set(SEVERITIES) == set(Severity.__args__)  # type: ignore[attr-defined]


def _now_ms() -> int:
    return int(time.time() * 1000)


def _visible(principal: Principal, row: dict[str, Any] | None, what: str, ident: str) -> dict[str, Any]:
    """``row`` when the caller may see it; a missing and a hidden row answer alike (404)."""
    if row is None or not principal.sees(row.get("tenant_id")):
        raise ApiError(404, "not_found", f"no {what} {ident!r}")
    return row


def _labels(pairs: list[str]) -> dict[str, str] | None:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ApiError(422, "invalid_parameter", f"label must be NAME=VALUE, not {pair!r}", "label")
        out[key] = value
    return out or None


def _range(start: int | None, end: int | None, default_ms: int) -> tuple[int, int]:
    end = _now_ms() + 1 if end is None else end
    start = end - default_ms if start is None else start
    if start >= end:
        raise ApiError(422, "invalid_parameter", f"start {start} must be before end {end}", "start")
    return start, end


@router.get("/dashboard", summary="the original DashboardData of a tenant")
def dashboard(
    caller: Caller, config: Config, tenant: Tenant = None,
    quota_start: Millis = None, quota_end: Millis = None,
) -> dict[str, Any]:
    """``performanceMetrics`` over the last hour; ``quotaUsage`` over ``[quota_start,
    quota_end)`` (default the last 24 hours)."""
    scope = tenant_scope(caller, tenant)
    now = _now_ms()
    q_start, q_end = _range(quota_start, quota_end, 24 * HOUR_MS)
    with Browser(config.db_path) as db:
        body = {
            "timestamp": now,
            "tenant": scope,
            "workflowStats": camel(db.get_workflow_stats(scope)),
            "performanceMetrics": [camel(db.get_aggregation(m, now - HOUR_MS, now, scope)) for m in DASHBOARD_METRICS],
            "activeWorkflows": camels(db.get_active_executions(scope)),
            "recentAlerts": camels(db.get_alerts(active=True, tenant_id=scope, limit=20)),
            "quotaUsage": {"start": q_start, "end": q_end, "usage": camels(db.quota_usage(q_start, q_end, scope))},
        }
    body["systemHealth"] = system_health(config)
    return body


@router.get("/workflows/{workflow_id}/timeline", summary="the original WorkflowTimeline")
def workflow_timeline(workflow_id: str, caller: Caller, config: Config, tenant: Tenant = None) -> dict[str, Any]:
    """The workflow's 100 most recent executions; ``avgDuration`` and ``successRate`` are
    ``null`` when no execution has a duration / there is no execution."""
    scope = tenant_scope(caller, tenant)
    with Browser(config.db_path) as db:
        page = db.list_executions(tenant_id=scope, workflow_id=workflow_id, limit=100)
    return timeline(workflow_id, page.rows)


@router.get("/executions", summary="executions, newest first, one page at a time")
def executions(
    caller: Caller, config: Config, tenant: Tenant = None, status: ExecutionStatus | None = None,
    workflow: Annotated[str | None, Query(min_length=1)] = None, start: Millis = None, end: Millis = None,
    cursor: str | None = None, limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Started in ``[start, end)``; ``cursor`` is a previous page's ``nextCursor``."""
    scope = tenant_scope(caller, tenant)
    try:
        after = None if cursor is None else Cursor.decode(cursor)
    except ValueError as exc:
        raise ApiError(422, "invalid_parameter", str(exc), "cursor") from None
    with Browser(config.db_path) as db:
        page = db.list_executions(tenant_id=scope, status=status, workflow_id=workflow, start=start, end=end,
                                  after=after, limit=limit)
    return {"executions": camels(page.rows), "nextCursor": page.next_cursor}


EXECUTION_LOGS = 200
"""The newest log records of an execution that its page shows (``axmon logs`` has them all)."""


@router.get("/executions/{execution_id}", summary="one execution with its steps and its newest logs")
def execution(execution_id: str, caller: Caller, config: Config) -> dict[str, Any]:
    with Browser(config.db_path) as db:
        row = _visible(caller, db.get_execution(execution_id), "execution", execution_id)
        steps = db.get_step_executions(execution_id)
        logs = db.get_logs(execution_id=execution_id, limit=EXECUTION_LOGS) if db.has_logs else []
    return {**(camel(row) or {}), "steps": camels(steps), "logs": camels(logs)}


@router.get("/metrics/aggregation", summary="the original MetricAggregation")
def aggregation(
    caller: Caller, config: Config, metric_type: Annotated[str, Query(min_length=1)],
    start: Millis = None, end: Millis = None, tenant: Tenant = None, label: Annotated[list[str], Query()] = [],
) -> dict[str, Any] | None:
    """Of ``[start, end)`` (default the last hour); ``label=NAME=VALUE`` (repeatable)."""
    scope = tenant_scope(caller, tenant)
    lo, hi = _range(start, end, HOUR_MS)
    with Browser(config.db_path) as db:
        return camel(db.get_aggregation(metric_type, lo, hi, scope, _labels(label)))


@router.get("/metrics/series", summary="the original TimeSeries")
def series(
    caller: Caller, config: Config, metric_type: Annotated[str, Query(min_length=1)],
    start: Millis = None, end: Millis = None, interval_ms: Annotated[int, Query(ge=1)] = 60_000,
    tenant: Tenant = None, label: Annotated[list[str], Query()] = [],
) -> dict[str, Any]:
    scope = tenant_scope(caller, tenant)
    lo, hi = _range(start, end, HOUR_MS)
    with Browser(config.db_path) as db:
        out = camel(db.get_time_series(metric_type, lo, hi, interval_ms, _labels(label), scope))
    assert out is not None
    out["dataPoints"] = camels(out["dataPoints"])
    return out


@router.get("/charts", summary="the dashboard's charts over time: one point per bucket of a range")
def charts(caller: Caller, config: Config, tenant: Tenant = None, range: ChartRange = "24h") -> dict[str, Any]:
    """``range`` 1h (5 min buckets), 24h (1 h), 7d (6 h), ending with the bucket of now. Each
    point: ``executions``, ``tokensUsed``, ``cost`` (of the executions started in it),
    ``finished``, ``completed``, ``successRate`` (the derived ``workflow.execution.count``
    samples; ``null`` when none finished), ``p50``, ``p95``, ``p99``, ``avgDuration`` and
    ``durationCount`` (the ``workflow.execution.duration`` aggregation of the bucket; ``null``
    when no samples)."""
    scope = tenant_scope(caller, tenant)
    with Browser(config.db_path) as db:
        return chart_points(db, range, _now_ms(), scope)


@router.get("/metrics/types", summary="the metric types present")
def metric_types(caller: Caller, config: Config, tenant: Tenant = None) -> dict[str, Any]:
    scope = tenant_scope(caller, tenant)
    with Browser(config.db_path) as db:
        return {"metricTypes": db.metric_types(scope)}


@router.get("/metrics/labels", summary="the label values present on a metric type")
def metric_labels(
    caller: Caller, config: Config, metric_type: Annotated[str, Query(min_length=1)], tenant: Tenant = None
) -> dict[str, Any]:
    scope = tenant_scope(caller, tenant)
    with Browser(config.db_path) as db:
        return {"metricType": metric_type, "labels": db.label_values(metric_type, scope)}


@router.get("/alerts", summary="alerts, most recently changed first")
def alerts(
    caller: Caller, config: Config, tenant: Tenant = None, status: AlertStatus | None = None,
    severity: Severity | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    scope = tenant_scope(caller, tenant)
    with Browser(config.db_path) as db:
        return {"alerts": camels(db.list_alerts(tenant_id=scope, status=status, severity=severity, limit=limit))}


@router.get("/alerts/{alert_id}", summary="one alert with its history")
def alert(alert_id: str, caller: Caller, config: Config) -> dict[str, Any]:
    with Browser(config.db_path) as db:
        row = _visible(caller, db.get_alert(alert_id), "alert", alert_id)
    return {**(camel(row) or {}), "history": row["history"]}


@router.post("/alerts/{alert_id}/ack", summary="acknowledge a firing alert (like 'axmon alerts ack')")
def ack(
    alert_id: str, caller: Caller, config: Config,
    by: Annotated[str, Body(embed=True, min_length=1, max_length=200)] = "dashboard",
) -> dict[str, Any]:
    """Publishes the ack to ``axmon.alert-acks``; the alert moves once the worker applied it
    and the sink wrote it. 503 when the server was started without ``--bootstrap``."""
    if config.bootstrap is None:
        raise ApiError(503, "no_broker", "acks need the broker: start 'axmon serve --bootstrap HOST:PORT'")
    with Browser(config.db_path) as db:
        row = _visible(caller, db.get_alert(alert_id), "alert", alert_id)
        found = find_alert(db, row["id"])
    try:
        record = ack_of(found, by)
    except ConfigError as exc:
        raise ApiError(409, "not_ackable", str(exc)) from None
    asyncio.run(publish_ack(config.bootstrap, config.topics.alert_acks, record, int(found["partition"])))
    return {"acknowledged": record.to_json()}


@router.get("/health", summary="what 'axmon health' reports")
def health(caller: Caller, config: Config) -> dict[str, Any]:
    return system_health(config)


@router.post("/stream/token", summary="a short-lived token for /stream (for a browser's EventSource)")
def stream_token(request: Request, caller: Caller, tenant: Tenant = None) -> dict[str, Any]:
    """A token that ``GET /stream?token=`` accepts (and no other endpoint) for
    ``expiresAt - now`` ms; its scope is the key's, kept to ``tenant`` when given (403 when the
    key may not read it). A connection opened in time stays open after the token expires."""
    tokens: StreamTokens = request.app.state.tokens
    principal = narrowed(caller, tenant)
    token, expires = tokens.issue(principal, _now_ms())
    return {"token": token, "expiresAt": expires, "tenants": None if principal.admin else sorted(principal.tenants)}


def stream_principal(
    request: Request,
    token: Annotated[str | None, Query(description="a token from POST /stream/token, instead of a key header")] = None,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal:
    """The stream's caller: a stream token's scope when ``token`` is given, else the key's."""
    if token is not None:
        tokens: StreamTokens = request.app.state.tokens
        return tokens.verify(token, _now_ms())
    return principal_of(request, authorization, x_api_key)


@router.get("/stream", summary="Server-Sent Events: execution changes and alert transitions")
async def stream(
    request: Request, caller: Annotated[Principal, Depends(stream_principal)],
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", include_in_schema=False)] = None,
    last_event_id_query: Annotated[str | None, Query(alias="last_event_id", description="resume after this id "
                                                     "(for a new EventSource; the Last-Event-ID header wins)")] = None,
) -> StreamingResponse:
    """Events ``execution`` and ``alert`` (the row, as in the other endpoints) with increasing
    ids; reconnecting with ``Last-Event-ID`` resumes; ``reset`` means reload, changes were lost.
    Authorised by a key header or by ``?token=`` (see ``POST /stream/token``)."""
    resume = last_event_id if last_event_id is not None else last_event_id_query
    try:
        last = None if resume is None else int(resume)
    except ValueError:
        raise ApiError(422, "invalid_parameter", "Last-Event-ID must be an event id", "Last-Event-ID") from None
    journal = request.app.state.journal
    journal.start()
    return StreamingResponse(sse_stream(journal, caller, last, disconnected=request.is_disconnected),
                             media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
