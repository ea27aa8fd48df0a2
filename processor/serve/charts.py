"""The dashboard's charts over time: one point per bucket of a range (1 h, 24 h, 7 d), each from
the query API. Success rate from the derived ``workflow.execution.count`` series (its samples
labelled ``status=completed`` over all), p50/p95/p99 and the mean of the derived
``workflow.execution.duration`` samples (an aggregation per bucket), executions, tokens and cost
of the executions started in the bucket."""

from __future__ import annotations

from typing import Any, Literal

from processor.store.browse import Browser

Range = Literal["1h", "24h", "7d"]
RANGES: dict[str, tuple[int, int]] = {
    "1h": (3_600_000, 300_000),
    "24h": (86_400_000, 3_600_000),
    "7d": (7 * 86_400_000, 6 * 3_600_000),
}
"""A range's span and its bucket width (ms); both are multiples of any rollup window up to 5 min,
so the time series reads whole windows."""
COUNT, DURATION = "workflow.execution.count", "workflow.execution.duration"


def bounds(range_: str, now_ms: int) -> tuple[int, int, int]:
    """``(start, end, interval)``: ``end`` is the end of the bucket holding ``now_ms``."""
    span, interval = RANGES[range_]
    end = (now_ms // interval + 1) * interval
    return end - span, end, interval


def chart_points(db: Browser, range_: str, now_ms: int, tenant_id: str | None) -> dict[str, Any]:
    start, end, interval = bounds(range_, now_ms)
    usage = {r["timestamp"]: r for r in db.usage_buckets(start, end, interval, tenant_id)}
    finished = {p["timestamp"]: p["count"] for p in db.get_time_series(COUNT, start, end, interval, None, tenant_id)["data_points"]}
    completed = {p["timestamp"]: p["count"] for p in
                 db.get_time_series(COUNT, start, end, interval, {"status": "completed"}, tenant_id)["data_points"]}
    points = []
    for t in range(start, end, interval):
        done, ok = finished.get(t, 0), completed.get(t, 0)
        agg = db.get_aggregation(DURATION, t, t + interval, tenant_id)
        row = usage.get(t, {})
        points.append({
            "timestamp": t,
            "executions": row.get("executions", 0), "tokensUsed": row.get("tokens_used", 0), "cost": row.get("cost", 0.0),
            "finished": done, "completed": ok, "successRate": 100 * ok / done if done else None,
            "durationCount": 0 if agg is None else agg["count"],
            **{k: None if agg is None else agg[k] for k in ("p50", "p95", "p99")},
            "avgDuration": None if agg is None else agg["avg"],
        })
    return {"range": range_, "tenant": tenant_id, "start": start, "end": end, "intervalMs": interval, "points": points}
