"""``axmon serve``: run the monitoring API and the dashboard with uvicorn."""

from __future__ import annotations

import argparse
from pathlib import Path

from processor.cli.options import Subparsers, add_kafka_options, db_location, settings_of
from processor.cli.render import err_console
from processor.serve.bind import DEFAULT_HOST, DEFAULT_PORT, check_bind


def register(subparsers: Subparsers) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="the monitoring API (/api/v1, /docs) and the web dashboard (/) over the database",
        description="Serves the sink's database read-only over HTTP: the original DashboardData and "
        "WorkflowTimeline, executions, metrics, alerts, health, and a dashboard at '/'. Binds "
        "127.0.0.1 unless --host is given; any other address needs --keys. --bootstrap enables "
        "acks and the Kafka part of health.",
    )
    serve.add_argument("--db", type=db_location, metavar="PATH|URL",
                       help="the SQLite database, or a postgresql:// URL (env AXMON_DB; default ./axmon.db)")
    serve.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST})")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    serve.add_argument("--keys", type=Path, metavar="PATH",
                       help="API keys (YAML: keys: [{key: K, tenants: [T]}, {key: K, admin: true}])")
    add_kafka_options(serve)
    serve.set_defaults(handler=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from processor.serve.app import ServeConfig, create_app
    from processor.serve.auth import KeyRing
    from processor.store.db import open_read_only

    check_bind(args.host, args.keys)
    settings = settings_of(args)
    open_read_only(settings.db_path).close()  # a missing or foreign database fails now, not per request
    keys = None if args.keys is None else KeyRing.load(args.keys)
    config = ServeConfig(settings.db_path, settings.topics, keys, settings.bootstrap)
    err_console.print(f"axmon serve: dashboard at http://{args.host}:{args.port}/ , API docs at /docs (Ctrl-C stops)")
    uvicorn.run(create_app(config), host=args.host, port=args.port, log_level="warning")
    return 0
