"""``axmon traces``: finished executions as OpenTelemetry traces over OTLP/HTTP (protobuf).

``axmon traces --otlp URL`` follows ``axmon.execution-state`` and exports each execution when it
finishes; ``axmon traces export --otlp URL`` sends the finished executions of the database.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from typing import Any

from processor.cli.options import Subparsers, add_broker_options, add_db, resolve_bootstrap, settings_of
from processor.cli.render import err_console, out_console
from processor.errors import ConfigError
from processor.urls import DbLocation


def register(subparsers: Subparsers) -> None:
    traces = subparsers.add_parser(
        "traces",
        help="export finished executions as OpenTelemetry traces (OTLP/HTTP)",
        description="Follows axmon.execution-state in the consumer group 'axmon-traces' and sends each "
        "execution when it finishes (completed, failed or cancelled) to an OTLP/HTTP receiver as one "
        "trace: the execution the root span, its steps child spans. Offsets are committed after the "
        "receiver accepted the spans. Trace and span ids are derived from the execution and step ids "
        "(or the engine's W3C trace context, when its events carried one), so a re-export gives the "
        "same trace. 'axmon traces export' sends the finished executions of the database instead.",
    )
    _add_otlp_options(traces)
    traces.add_argument("--group", default=None, metavar="ID", help="consumer group (default axmon-traces)")
    traces.add_argument("--from-beginning", action="store_true",
                        help="a new group starts at the earliest offset (default: executions that finish from now on)")
    add_broker_options(traces)
    traces.set_defaults(handler=cmd_traces_follow, traces_command=None)
    sub = traces.add_subparsers(dest="traces_command", metavar="COMMAND")
    export = sub.add_parser(
        "export",
        help="send the finished executions of the database",
        description="Reads the finished executions and their steps from the SQLite database, "
        "oldest end first, and sends them in requests of --page executions.",
    )
    _add_otlp_options(export, inherited=True)
    add_db(export)
    export.add_argument("--since", metavar="TIME", help="only executions that ended at or after TIME (1h, 7d, ISO-8601, epoch ms)")
    export.add_argument("--tenant", metavar="ID", help="only this tenant's executions")
    export.add_argument("--page", type=int, default=200, metavar="N", help="executions per request (default 200)")
    export.set_defaults(handler=cmd_traces_export)


def _add_otlp_options(parser: argparse.ArgumentParser, *, inherited: bool = False) -> None:
    """The receiver's options. ``inherited`` (on ``export``): absent flags keep the values given
    before the subcommand (``axmon traces --otlp URL export``)."""
    default: dict[str, Any] = {"default": argparse.SUPPRESS} if inherited else {}
    parser.add_argument("--otlp", metavar="URL", **(default or {"default": None}),
                        help="the OTLP/HTTP receiver, e.g. http://localhost:4318 (/v1/traces is added when the URL "
                        "has no path); required")
    parser.add_argument("--header", action="append", metavar="NAME=VALUE", **(default or {"default": []}),
                        help="an HTTP header for every request (repeatable), e.g. an API key")
    parser.add_argument("--service-name", metavar="NAME", **(default or {"default": "axmon"}),
                        help="the spans' service.name (default axmon)")
    parser.add_argument("--timeout", type=float, metavar="S", **(default or {"default": 10.0}),
                        help="seconds per request (default 10)")


def _otlp(args: argparse.Namespace) -> str:
    if not args.otlp:
        raise ConfigError("--otlp URL is required (the OTLP/HTTP receiver, e.g. http://localhost:4318)")
    return str(args.otlp)


def _headers(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--header wants NAME=VALUE, not {pair!r}")
        out[name.strip()] = value.strip()
    return out


def cmd_traces_export(args: argparse.Namespace) -> int:
    from processor.folds.timeparse import parse_time_ms
    from processor.runtime.otlp import OtlpClient
    from processor.runtime.traces import export_database

    if args.page < 1 or args.page > 10_000:
        raise ConfigError("--page must be within 1..10000")
    settings = settings_of(args)
    since = parse_time_ms(args.since, int(time.time() * 1000)) if args.since else None
    db_path: DbLocation = settings.db_path

    async def run() -> int:
        async with OtlpClient(_otlp(args), headers=_headers(args.header), timeout_s=args.timeout) as client:
            counts = await export_database(db_path, client, since_ms=since, tenant_id=args.tenant, page=args.page,
                                           service_name=args.service_name)
        out_console.print(f"exported {counts.executions} executions ({counts.spans} spans, "
                          f"{counts.requests} requests) to {client.url}")
        return 0

    err_console.print(f"axmon traces export: {db_path} -> {_otlp(args)}")
    return asyncio.run(run())


def cmd_traces_follow(args: argparse.Namespace) -> int:
    from processor.runtime.otlp import OtlpClient
    from processor.runtime.traces import DEFAULT_GROUP, ExportCounts, follow_execution_state

    settings = settings_of(args)
    bootstrap = resolve_bootstrap(settings)
    topic = settings.topics.execution_state
    headers = _headers(args.header)

    def report(counts: ExportCounts) -> None:
        err_console.print(f"exported {counts.executions} executions ({counts.spans} spans)")

    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with OtlpClient(_otlp(args), headers=headers, timeout_s=args.timeout) as client:
            err_console.print(f"axmon traces: {topic} on {bootstrap} -> {client.url}")
            counts = await follow_execution_state(
                bootstrap, topic, client, group_id=args.group or DEFAULT_GROUP, from_beginning=args.from_beginning,
                stop=stop, service_name=args.service_name, on_batch=report if args.verbose else None,
            )
        err_console.print(f"stopped: exported {counts.executions} executions ({counts.spans} spans)")
        return 0

    return asyncio.run(run())
