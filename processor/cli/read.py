"""The read commands of ``axmon``: ``workflows``, ``execution``, ``stats``, ``metrics`` and
``dead-letters``, over the database the sink writes (:mod:`processor.store.queries`).

Every command takes ``--db PATH`` (default: ``$AXMON_DB``, else ``./axmon.db``) and ``--json``
(one JSON document on stdout, with stable keys; times in epoch ms, durations in ms). Without
``--json`` the output is rich tables with humanised durations and local ISO-8601 times.
A missing database or a bad argument raises an :class:`~processor.errors.AxmonError`, which
``axmon`` prints as one line (exit 1); argparse rejects malformed flags (exit 2).

The drawing helpers of these commands (sparkline, timeline bars, chart columns) are pure
functions, unit-tested on their own; the shared ones (times, durations, numbers, tables) are in
:mod:`processor.cli.render`.
"""

from __future__ import annotations

import argparse
import base64
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from rich.table import Table
from rich.text import Text

from processor.cli.options import Subparsers, add_read_options
from processor.cli.render import (
    Cell,
    Column,
    fit,
    fitted_table,
    human_duration,
    human_number,
    human_time,
    human_value,
    log_line,
    stdout_console,
    utc_offset,
)
from processor.errors import AxmonError, ConfigError
from processor.folds.timeparse import is_relative, parse_duration_ms, parse_label, parse_time_ms
from processor.settings import Settings
from processor.store.queries import Monitor

DEFAULT_LIMIT = 50
SPARK_BLOCKS = "▁▂▃▄▅▆▇█"
TIMELINE_WIDTH = 32
MAX_BUCKETS = 100_000
NICE_INTERVALS_MS = (
    1_000, 5_000, 10_000, 15_000, 30_000, 60_000, 300_000, 600_000, 900_000, 1_800_000,
    3_600_000, 10_800_000, 21_600_000, 43_200_000, 86_400_000,
)
"""Intervals the ``metrics`` command picks from when ``--interval`` is not given."""
TARGET_POINTS = 60
STATUS_STYLES = {
    "pending": "cyan", "running": "yellow", "completed": "green", "failed": "red", "cancelled": "dim",
}


class NotFound(AxmonError):
    """What the command was asked to show is not in the database."""


class AmbiguousId(AxmonError):
    """A prefix that starts more than one id: the user must give more of it."""


# -- the parser ------------------------------------------------------------------------------


def register(subparsers: Subparsers) -> None:
    """Register the read commands on ``axmon``'s subparsers; each sets ``handler``."""
    workflows = subparsers.add_parser(
        "workflows", help="recent (or active) workflow executions",
        description="The newest executions by start time, or with --active only the pending and running ones.",
    )
    workflows.add_argument("--active", action="store_true", help="only pending and running executions")
    workflows.add_argument("--tenant", metavar="T", help="only this tenant's executions")
    workflows.add_argument(
        "--limit", type=int, default=DEFAULT_LIMIT, metavar="N", help=f"at most N rows (default {DEFAULT_LIMIT})"
    )
    add_read_options(workflows)
    workflows.set_defaults(handler=cmd_workflows)

    execution = subparsers.add_parser(
        "execution", help="one execution and its steps as a timeline",
        description="The execution's details and its steps, each with a bar on a shared time axis "
        "(█ finished, ▒ still running).",
    )
    execution.add_argument("execution_id", metavar="ID", help="the execution id (a unique prefix will do)")
    add_read_options(execution)
    execution.set_defaults(handler=cmd_execution)

    stats = subparsers.add_parser(
        "stats", help="workflow statistics (per tenant and overall)",
        description="Totals by status, average duration and success rate, from the per-tenant counters.",
    )
    stats.add_argument("--tenant", metavar="T", help="only this tenant")
    add_read_options(stats)
    stats.set_defaults(handler=cmd_stats)

    metrics = subparsers.add_parser(
        "metrics", help="aggregate and chart one metric over a time range",
        description="count, sum, avg, min, max and p50/p95/p99 of the samples with since <= time < "
        "until, and their average per interval drawn as a sparkline. Times: relative (30s, 15m, "
        "1h, 7d: that long before now), ISO-8601 (local time unless it has an offset) or epoch ms. "
        "A relative --since is rounded down to a whole interval, so buckets line up with the "
        "rollup windows.",
    )
    metrics.add_argument("metric_type", metavar="TYPE", help="the metric type, e.g. api.request.duration")
    metrics.add_argument("--since", default="1h", metavar="TIME", help="start of the range (default 1h: an hour ago)")
    metrics.add_argument("--until", default="now", metavar="TIME", help="end of the range, excluded (default now)")
    metrics.add_argument("--interval", metavar="DURATION", help="bucket size, e.g. 1m (default: about 60 buckets)")
    metrics.add_argument("--label", action="append", type=parse_label, default=[], metavar="K=V",
                         help="only samples with this label (repeatable: all must match)")
    metrics.add_argument("--tenant", metavar="T", help="only this tenant's samples")
    add_read_options(metrics)
    metrics.set_defaults(handler=cmd_metrics)

    dead = subparsers.add_parser(
        "dead-letters", help="input that could not be used, newest first",
        description="Records dead-lettered by the worker or the sink: why, and where they came from.",
    )
    dead.add_argument("--reason", metavar="R", help="only this reason (e.g. late, undecodable)")
    dead.add_argument(
        "--limit", type=int, default=DEFAULT_LIMIT, metavar="N", help=f"at most N rows (default {DEFAULT_LIMIT})"
    )
    add_read_options(dead)
    dead.set_defaults(handler=cmd_dead_letters)


def _open(args: argparse.Namespace) -> Monitor:
    return Monitor(Settings.load({"db_path": args.db}).db_path)


def _emit_json(document: Mapping[str, Any]) -> None:
    print(orjson.dumps(document).decode())


# -- workflows -------------------------------------------------------------------------------


def cmd_workflows(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise ConfigError(f"--limit must be at least 1, not {args.limit}")
    with _open(args) as monitor:
        if args.active:
            rows = monitor.get_active_executions(args.tenant)[: args.limit]
        else:
            rows = monitor.get_recent_executions(args.limit, args.tenant)
    if args.json:
        _emit_json({"active": args.active, "tenant": args.tenant, "limit": args.limit, "executions": rows})
        return 0
    title = ("Active" if args.active else "Recent") + " executions" + (f" of {args.tenant}" if args.tenant else "")
    console = stdout_console()
    console.print(executions_table(rows, title, console.width))
    return 0


EXECUTION_COLUMNS = (
    Column("started", keep=5), Column("id", "id"), Column("workflow", "text", keep=7), Column("tenant", keep=3),
    Column("status", keep=8), Column("steps", keep=2), Column("duration", keep=4, right=True),
    Column("now / error", "text", keep=1),
)


def executions_table(rows: Sequence[Mapping[str, Any]], title: str, width: int = 80) -> Table:
    """Executions, one a row; on a narrow terminal the least needed columns go first (see
    :data:`EXECUTION_COLUMNS`), the id is always whole."""
    cells: list[list[Cell]] = []
    for r in rows:
        failed = f" ({r['steps_failed']} failed)" if r["steps_failed"] else ""
        cells.append([
            human_time(r["started_at"], compact=True), Text(r["id"]), Text(r["workflow_name"] or r["workflow_id"]),
            Text(r["tenant_id"]), _status(r["status"]), f"{r['steps_completed']}/{r['steps_total']}{failed}",
            human_duration(r["duration"]), Text(r["error_message"] or r["current_step"] or ""),
        ])
    widths = fit(EXECUTION_COLUMNS, cells, width)
    return fitted_table(title, f"{len(rows)} shown; local times{utc_offset()}", EXECUTION_COLUMNS, widths, cells)


# -- execution -------------------------------------------------------------------------------


def cmd_execution(args: argparse.Namespace) -> int:
    with _open(args) as monitor:
        execution = find_execution(monitor, args.execution_id)
        steps = monitor.get_step_executions(execution["id"])
        logs = monitor.get_logs(execution_id=execution["id"], limit=EXECUTION_LOGS_SHOWN) if monitor.has_logs else []
    if args.json:
        _emit_json({"execution": execution, "steps": steps, **({"logs": logs} if logs else {})})
        return 0
    console = stdout_console()
    console.print(execution_details(execution))
    console.print(steps_timeline(execution, steps, console.width))
    if logs:
        console.print(Text(f"logs (the newest {len(logs)}; all: axmon logs --execution {execution['id']})"
                           if len(logs) == EXECUTION_LOGS_SHOWN else "logs", style="bold"))
        for row in logs:
            console.print(log_line(row))
    return 0


EXECUTION_LOGS_SHOWN = 50


CANDIDATES_SHOWN = 5


def find_execution(monitor: Monitor, prefix: str) -> dict[str, Any]:
    """The execution whose id is ``prefix``, or the only one whose id starts with it."""
    exact = monitor.get_execution(prefix)
    if exact is not None:
        return exact
    matches = monitor.find_execution_ids(prefix, CANDIDATES_SHOWN + 1) if prefix else []
    if not matches:
        raise NotFound(f"no execution {prefix!r} in {monitor.path}, nor one whose id starts with it")
    if len(matches) > 1:
        more = ", ..." if len(matches) > CANDIDATES_SHOWN else ""
        raise AmbiguousId(f"{prefix!r} is the start of more than one execution id "
                          f"({', '.join(matches[:CANDIDATES_SHOWN])}{more}): give more of the id")
    found = monitor.get_execution(matches[0])
    if found is None:  # removed between the two reads (retention)
        raise NotFound(f"execution {matches[0]} is no longer in {monitor.path}")
    return found


def execution_details(e: Mapping[str, Any]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    rows: list[tuple[str, Text | str]] = [
        ("execution", Text(e["id"])),
        ("workflow", Text(f"{e['workflow_name']} ({e['workflow_id']})")),
        ("tenant / user", Text(f"{e['tenant_id']} / {e['user_id']}")),
        ("status", _status(e["status"])),
        ("started", human_time(e["started_at"])),
        ("completed", human_time(e["completed_at"])),
        ("duration", human_duration(e["duration"])),
        ("steps", f"{e['steps_completed']} of {e['steps_total']} completed, {e['steps_failed']} failed"),
    ]
    if e["current_step"]:
        rows.append(("current step", Text(e["current_step"])))
    if e["error_message"]:
        rows.append(("error", Text(e["error_message"], style="red")))
    if e["tokens_used"] is not None or e["cost"] is not None:
        rows.append(("tokens / cost", f"{human_number(e['tokens_used'])} / {human_number(e['cost'])}"))
    if e["metadata"]:
        rows.append(("metadata", Text(orjson.dumps(e["metadata"]).decode())))
    for name, value in rows:
        grid.add_row(name, value)
    return grid


STEP_COLUMNS = (
    Column("step", "text", keep=9), Column("status", keep=8), Column("start", keep=5, right=True),
    Column("duration", keep=7, right=True), Column("retries", keep=2, right=True), Column("tokens", keep=3, right=True),
    Column("cost", keep=4, right=True), Column("timeline", "bar", keep=6),
)


def steps_timeline(e: Mapping[str, Any], steps: Sequence[Mapping[str, Any]], width: int = 80) -> Table:
    """The steps as rows, each with a bar on the execution's time axis (:func:`time_axis`) as
    wide as the terminal leaves room for."""
    axis_start, axis_end = time_axis(e, steps)
    cells: list[list[Cell]] = []
    for s in steps:
        label = Text(s["step_name"] or s["step_key"])
        if s["error_message"]:
            label.append(f"\n{s['error_message']}", style="red")
        known = _known_time(s["started_at"])
        cells.append([
            label, _status(s["status"]), "+" + human_duration(s["started_at"] - axis_start) if known else "-",
            human_duration(s["duration"]), human_number(s["retry_count"]), human_number(s["tokens_used"]),
            human_number(s["cost"]), "",
        ])
    widths = fit(STEP_COLUMNS, cells, width)
    bar_width = widths.get("timeline", 0)
    for s, row in zip(steps, cells, strict=True):
        running = s["completed_at"] is None
        end = axis_end if running else s["completed_at"]
        if bar_width and _known_time(s["started_at"]):
            bar = timeline_bar(s["started_at"], end, axis_start, axis_end, bar_width, open_ended=running)
            row[-1] = Text(bar, style=STATUS_STYLES.get(s["status"], ""))
    caption = f"axis {human_time(axis_start)} .. {human_time(axis_end)} ({human_duration(axis_end - axis_start)})"
    return fitted_table("Steps", caption, STEP_COLUMNS, widths, cells)


def time_axis(e: Mapping[str, Any], steps: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
    """The shared axis of a timeline: from the earliest start (execution or step) to the
    latest known time (completion of the execution or a step, or its last event). A step whose
    start and end were never seen is stored with ``started_at`` 0: it is left out."""
    starts = [v for v in (e["started_at"], *(s["started_at"] for s in steps)) if _known_time(v)]
    ends = [e["completed_at"], e.get("last_event_at"), *(s["completed_at"] for s in steps), *starts]
    return min(starts), max(v for v in ends if _known_time(v))


def _known_time(ms: int | None) -> bool:
    return ms is not None and ms > 0


def timeline_bar(start: int, end: int, axis_start: int, axis_end: int, width: int, *, open_ended: bool = False) -> str:
    """A ``width``-character bar: blanks before ``start``, a block (``█``, or ``▒`` when
    ``open_ended``) from ``start`` to ``end``, at least one character, blanks after; positions
    are proportional on ``[axis_start, axis_end]``."""
    span = max(1, axis_end - axis_start)
    left = min(width - 1, max(0, math.floor((start - axis_start) * width / span)))
    right = min(width, max(left + 1, math.ceil((end - axis_start) * width / span)))
    return " " * left + ("▒" if open_ended else "█") * (right - left) + " " * (width - right)


# -- stats -----------------------------------------------------------------------------------


def cmd_stats(args: argparse.Namespace) -> int:
    with _open(args) as monitor:
        overall = monitor.get_workflow_stats(args.tenant)
        tenants = [t for t in monitor.get_tenant_stats() if args.tenant is None or t["tenant_id"] == args.tenant]
    if args.json:
        _emit_json({"tenant": args.tenant, "stats": overall, "tenants": tenants})
        return 0
    counts = ("total", "pending", "running", "completed", "failed", "cancelled", "avg time", "success")
    columns = (Column("tenant", "id"), *(Column(name, keep=10 - n, right=True) for n, name in enumerate(counts)))
    cells: list[list[Cell]] = [[Text(row["tenant_id"]), *_stats_cells(row)] for row in tenants if args.tenant is None]
    cells.append([Text(args.tenant or "all", style="bold"), *_stats_cells(overall)])
    console = stdout_console()
    widths = fit(columns, cells, console.width)
    title = "Workflow stats" + (f" of {args.tenant}" if args.tenant else "")
    console.print(fitted_table(title, None, columns, widths, cells, row_styles=[""] * (len(cells) - 1) + ["bold"]))
    return 0


def _stats_cells(s: Mapping[str, Any]) -> list[str]:
    counts = [human_number(s[k]) for k in ("total", "pending", "running", "completed", "failed", "cancelled")]
    return [*counts, human_duration(s["avg_duration"] if s["total"] else None), f"{s['success_rate']:.2f} %"]


# -- metrics ---------------------------------------------------------------------------------


def cmd_metrics(args: argparse.Namespace) -> int:
    now = int(time.time() * 1000)
    start = parse_time_ms(args.since, now)
    end = parse_time_ms(args.until, now)
    if start >= end:
        raise ConfigError(f"--since ({human_time(start)}) must be before --until ({human_time(end)})")
    interval = parse_duration_ms(args.interval) if args.interval else choose_interval(end - start)
    if is_relative(args.since):
        start -= start % interval
    if (end - start) / interval > MAX_BUCKETS:
        raise ConfigError(f"--interval {human_duration(interval)} makes more than {MAX_BUCKETS:,} buckets; use a larger one")
    labels = dict(args.label)
    with _open(args) as monitor:
        aggregation = monitor.get_aggregation(args.metric_type, start, end, args.tenant, labels)
        series = monitor.get_time_series(args.metric_type, start, end, interval, labels, args.tenant)
        unit = monitor.get_metric_unit(args.metric_type)
    if args.json:
        _emit_json({
            "metric_type": args.metric_type, "unit": unit, "start": start, "end": end, "interval_ms": interval,
            "tenant": args.tenant, "labels": labels, "aggregation": aggregation, "data_points": series["data_points"],
        })
        return 0
    console = stdout_console()
    scope = ", ".join([*([f"tenant {args.tenant}"] if args.tenant else []), *(f"{k}={v}" for k, v in labels.items())])
    heading = Text(args.metric_type, style="bold")
    heading.append(f"  {scope}" if scope else "")
    heading.append(f"\n{human_time(start)} .. {human_time(end)} ({human_duration(end - start)})")
    console.print(heading)
    if aggregation is None:
        console.print("no samples in this range")
        return 0
    console.print(aggregation_table(aggregation, unit, console.width))
    for line in chart_lines(series["data_points"], start, end, interval, console.width - 2, unit):
        console.print(Text(line))
    return 0


def aggregation_table(a: Mapping[str, Any], unit: str | None, width: int = 80) -> Table:
    note = "percentiles exact" if a["exact"] else "percentiles within 1% (merged rollup sketches)"
    hourly, daily = a.get("from_hourly", 0), a.get("from_daily", 0)
    tiers = ", ".join(f"{n:,} {name}" for n, name in ((daily, "daily"), (hourly, "hourly")) if n)
    rollups = f"{a['from_rollups']:,} rollup rows ({tiers})" if tiers else f"{a['from_rollups']:,} rollup windows"
    names = ("count", "avg", "min", "p50", "p95", "p99", "max", "sum")
    keep = {"count": 9, "avg": 8, "max": 7, "p95": 6, "min": 5, "p50": 4, "p99": 3, "sum": 2}
    columns = [Column(n, keep=keep[n], right=True) for n in names]
    cells: list[list[Cell]] = [[human_number(a["count"]), *(human_value(a[n], unit) for n in names[1:])]]
    caption = f"{note}; {rollups}, {a['from_raw']:,} raw samples read"
    return fitted_table(None, caption, columns, fit(columns, cells, width), cells)


def chart_lines(points: Sequence[Mapping[str, Any]], start: int, end: int, interval_ms: int, width: int,
                unit: str | None) -> list[str]:
    """The series as a sparkline (one column per bucket, or per group of buckets when they
    outnumber ``width``; a blank where there are no samples) with its scale and time axis."""
    columns, per_column = chart_columns(points, start, end, interval_ms, max(8, width))
    known = [v for v in columns if v is not None and not math.isnan(v)]
    if not known:
        return []
    return [
        f"max {human_value(max(known), unit)}",
        sparkline(columns),
        f"min {human_value(min(known), unit)}",
        f"{human_time(start)} .. {human_time(end)}, {human_duration(per_column * interval_ms)} per column",
    ]


def chart_columns(points: Sequence[Mapping[str, Any]], start: int, end: int, interval_ms: int,
                  width: int) -> tuple[list[float | None], int]:
    """Bucket averages laid out on every bucket of ``[start, end)``, adjacent buckets merged
    (count-weighted) so there are at most ``width`` columns; also the buckets per column."""
    buckets = max(1, math.ceil((end - start) / interval_ms))
    per_column = math.ceil(buckets / width)
    members: list[list[tuple[float, int]]] = [[] for _ in range(math.ceil(buckets / per_column))]
    for p in points:
        column = (p["timestamp"] - start) // interval_ms // per_column
        if 0 <= column < len(members) and p["value"] is not None:
            members[column].append((float(p["value"]), int(p["count"])))
    return [_weighted_mean(m) for m in members], per_column


def _weighted_mean(values: Sequence[tuple[float, int]]) -> float | None:
    """The count-weighted mean of ``(value, count)`` pairs; a sum of shares, so it overflows
    only where a value is infinite."""
    total = sum(count for _, count in values)
    if not total:
        return None
    return sum(value * (count / total) for value, count in values)


def sparkline(values: Sequence[float | None]) -> str:
    """One block character per value, scaled between the smallest and largest finite ones
    (``▁`` .. ``█``; all equal: ``▄``); ``None`` and NaN are blanks, infinities the ends."""
    known = [v for v in values if v is not None and math.isfinite(v)]
    low, high = (min(known), max(known)) if known else (0.0, 0.0)
    top = len(SPARK_BLOCKS) - 1
    out = []
    for v in values:
        if v is None or math.isnan(v):
            out.append(" ")
        elif math.isinf(v):
            out.append(SPARK_BLOCKS[top if v > 0 else 0])
        elif high == low:
            out.append(SPARK_BLOCKS[top // 2])
        else:  # halved, so that high - low cannot overflow
            out.append(SPARK_BLOCKS[round((v / 2 - low / 2) / (high / 2 - low / 2) * top)])
    return "".join(out)


def choose_interval(span_ms: int, target: int = TARGET_POINTS) -> int:
    """The smallest of :data:`NICE_INTERVALS_MS` that gives at most ``target`` buckets (the
    largest one when none does)."""
    for interval in NICE_INTERVALS_MS:
        if span_ms / interval <= target:
            return interval
    return NICE_INTERVALS_MS[-1]


# -- dead letters ----------------------------------------------------------------------------


def cmd_dead_letters(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise ConfigError(f"--limit must be at least 1, not {args.limit}")
    with _open(args) as monitor:
        rows = [dead_letter_json(r) for r in monitor.get_dead_letters(args.limit, args.reason)]
    if args.json:
        _emit_json({"reason": args.reason, "limit": args.limit, "dead_letters": rows})
        return 0
    title = "Dead letters" + (f" ({args.reason})" if args.reason else "")
    columns = (Column("time", keep=3), Column("reason", keep=5), Column("origin", "id"), Column("key", "text", keep=2),
               Column("detail", "text", keep=4))
    cells: list[list[Cell]] = [
        [human_time(r["timestamp"], compact=True), Text(r["reason"]), Text(f"{r['topic']}/{r['partition']}/{r['offset']}"),
         Text(r["key"] or ""), Text(r["detail"])]
        for r in rows
    ]
    console = stdout_console()
    widths = fit(columns, cells, console.width)
    console.print(fitted_table(title, f"{len(rows)} shown; local times{utc_offset()}", columns, widths, cells))
    return 0


def dead_letter_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """A dead letter for output: ``key`` as text (undecodable bytes replaced), the original
    value as ``value_base64``."""
    key, value = row["key"], row["value"]
    return {
        "topic": row["topic"], "partition": row["partition"], "offset": row["offset"],
        "reason": row["reason"], "detail": row["detail"], "timestamp": row["timestamp"],
        "key": key.decode("utf-8", "replace") if isinstance(key, bytes) else key,
        "value_base64": base64.b64encode(value).decode() if isinstance(value, bytes) else value,
    }


def _status(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))
