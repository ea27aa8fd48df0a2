"""``axmon health``: is the pipeline healthy? A probe, for people and for machines.

Gathers observations (:mod:`processor.ops.health_probe`), judges them with the pure rules
(:mod:`processor.ops.health`) and prints a table (or ``--json``); the tables are drawn here.
Exit 0 healthy, 1 degraded, 2 unhealthy. An unreachable broker is a finding (unhealthy), not an error.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections import defaultdict

import orjson
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from processor.cli.options import (
    Subparsers,
    add_broker_options,
    add_db,
    count,
    positive_float,
    resolve_bootstrap,
    settings_of,
)
from processor.cli.render import err_console, stdout_console
from processor.errors import ConfigError
from processor.ops.health import Report, Status, Thresholds, evaluate
from processor.ops.health_probe import DEFAULT_TIMEOUT_S, describe, observe
from processor.ops.observations import Observations
from processor.urls import DbLocation
from schemas.topics import Topics

STYLES = {Status.HEALTHY: "green", Status.DEGRADED: "yellow", Status.UNKNOWN: "magenta", Status.UNHEALTHY: "bold red"}
_DEFAULTS = Thresholds()


def register(subparsers: Subparsers) -> None:
    health = subparsers.add_parser(
        "health",
        help="check the broker, topics, lag, worker, sink and database (exit 0 healthy, 1 degraded, 2 unhealthy)",
        description="Checks that the broker answers, the contract topics exist, how far the worker "
        "and the sink are behind (per partition), that the worker beats and does not restart, fail "
        "or stall (its heartbeats on <prefix>worker-status), when the sink last wrote, and that the database "
        "passes PRAGMA quick_check. Each component is healthy, degraded or unhealthy with its "
        "reasons; the overall status is the worst. Exit 0 healthy, 1 degraded, 2 unhealthy, so "
        "it serves as a liveness/readiness probe.",
    )
    health.add_argument("--json", action="store_true", help="one JSON document on stdout (stable keys)")
    health.add_argument("--timeout", type=positive_float, default=DEFAULT_TIMEOUT_S, metavar="S",
                        help=f"seconds to wait for each broker request (default {DEFAULT_TIMEOUT_S:g})")
    health.add_argument("--lag-degraded", type=count, default=_DEFAULTS.lag_degraded, metavar="N",
                        help=f"a group more than N records behind is degraded (default {_DEFAULTS.lag_degraded:,})")
    health.add_argument("--lag-unhealthy", type=count, default=_DEFAULTS.lag_unhealthy, metavar="N",
                        help=f"... and unhealthy above N (default {_DEFAULTS.lag_unhealthy:,})")
    health.add_argument("--sink-stale", type=positive_float, default=_DEFAULTS.sink_stale_s, metavar="S",
                        help="the sink is degraded when records wait and it has not written for S seconds "
                        f"(default {_DEFAULTS.sink_stale_s:g})")
    health.add_argument("--heartbeat-stale", type=positive_float, default=_DEFAULTS.heartbeat_stale_s, metavar="S",
                        help="a worker whose last heartbeat is older than S seconds is not running "
                        f"(default {_DEFAULTS.heartbeat_stale_s:g})")
    health.add_argument("--restart-window", type=positive_float, default=_DEFAULTS.restart_window_s, metavar="S",
                        help="a worker's restarts and errors of the last S seconds count against it "
                        f"(default {_DEFAULTS.restart_window_s:g})")
    add_db(health)
    add_broker_options(health)
    health.set_defaults(handler=cmd_health)


def gather(topics: Topics, bootstrap: str | None, db_path: DbLocation, *, timeout_s: float, bootstrap_error: str | None) -> Observations:
    """The observations (the seam the unit tests replace)."""
    return asyncio.run(observe(topics, bootstrap, db_path, timeout_s=timeout_s, bootstrap_error=bootstrap_error))


def cmd_health(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    if args.lag_unhealthy < args.lag_degraded:
        raise ConfigError(f"--lag-unhealthy ({args.lag_unhealthy:,}) must not be below --lag-degraded ({args.lag_degraded:,})")
    thresholds = Thresholds(lag_degraded=args.lag_degraded, lag_unhealthy=args.lag_unhealthy, sink_stale_s=args.sink_stale,
                            heartbeat_stale_s=args.heartbeat_stale, restart_window_s=args.restart_window)
    if not args.verbose:  # the client's own connection errors: the report says it better
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    bootstrap: str | None = None
    bootstrap_error: str | None = None
    try:
        bootstrap = resolve_bootstrap(settings)
    except ConfigError as exc:  # no broker to ask: a finding, not an error
        bootstrap_error = str(exc)
    try:
        observations = gather(settings.topics, bootstrap, settings.db_path, timeout_s=args.timeout,
                              bootstrap_error=bootstrap_error)
    except Exception as exc:  # a probe must answer: unhealthy, never a traceback
        err_console.print(f"[bold red]axmon:[/] the health check itself failed: {describe(exc)}")
        return 2
    report = evaluate(observations, thresholds)
    if args.json:
        print(orjson.dumps(report.to_json()).decode())
    else:
        render(report, stdout_console())
    return report.exit_code


# -- drawing ------------------------------------------------------------------------------------


def status_text(status: Status) -> Text:
    return Text(status.value, style=STYLES[status])


def components_table(report: Report) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("component")
    table.add_column("status")
    table.add_column("reasons", overflow="fold")
    for c in report.components:
        table.add_row(c.name, status_text(c.status), "\n".join(c.reasons))
    return table


def lag_table(report: Report) -> Table | None:
    """One row per group and topic: each partition's lag, and the topic's total."""
    rows = [(role, g) for role, g in report.lag.items() if g is not None and g.partitions]
    if not rows:
        return None
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("group")
    table.add_column("read from")
    table.add_column("topic")
    table.add_column("lag by partition", overflow="fold")
    table.add_column("total", justify="right")
    for role, group in rows:
        by_topic: defaultdict[str, list[tuple[int, int]]] = defaultdict(list)
        for p in group.partitions:
            by_topic[p.topic].append((p.partition, p.lag))
        for n, (topic, lags) in enumerate(sorted(by_topic.items())):
            first = n == 0
            total = sum(lag for _, lag in lags)
            table.add_row(
                f"{role} ({group.group.group_id})" if first else "",
                group.source if first else "",
                topic,
                "  ".join(f"{p}: {lag:,}" for p, lag in lags),
                Text(f"{total:,}", style="yellow" if total else ""),
            )
    return table


def render(report: Report, console: Console) -> None:
    heading = Text("axmon health: ", style="bold")
    heading.append_text(status_text(report.overall))
    console.print(heading)
    console.print(Text(f"broker {report.bootstrap or '-'}, topics {report.topic_prefix}*, database {report.database}", style="dim"))
    console.print(components_table(report))
    lag = lag_table(report)
    if lag is not None:
        console.print()
        console.print(lag)
