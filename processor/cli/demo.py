"""``axmon demo``: the main job in one command: broker, worker and sink with a simulated engine
(:mod:`processor.ops.demo`), then the read commands' views of what it produced."""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from processor.cli.options import Subparsers, add_broker_options, add_db, resolve_bootstrap, settings_of
from processor.cli.render import out_console
from processor.settings import ENV_TOPIC_PREFIX


def register(subparsers: Subparsers) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="the main job: broker, worker and sink with a simulated engine; shows stats and workflows",
        description="Starts the local broker unless --bootstrap is given, then the worker and the "
        "sink, runs a simulated workflow engine (tenants, workflows with steps, failures, "
        "retries, metric samples) in real time through the SDK, waits until the database has "
        "caught up and shows 'axmon stats', 'axmon workflows' and 'axmon alerts' from it, then leaves 'axmon serve' (the dashboard) running in the background and prints its URL. Each run "
        "has its own topics (axmon.demo-<time>., unless --topic-prefix) and a fresh database.",
    )
    demo.add_argument("--seconds", type=float, default=20.0, help="how long the simulated engine runs (default 20)")
    demo.add_argument("--executions", type=int, default=200, help="workflow executions to simulate (default 200)")
    demo.add_argument("--tenants", type=int, default=3, help="tenants (default 3)")
    demo.add_argument("--seed", type=int, default=7, help="random seed of the simulation (default 7)")
    demo.add_argument("--keep-db", action="store_true",
                      help="add to the existing database (default: a fresh one; the one before is kept as <db>.previous)")
    demo.add_argument("--serve-port", type=int, default=8321,
                      help="the dashboard's port at the end, or the next free one (default 8321)")
    demo.add_argument("--no-serve", action="store_true",
                      help="do not end by starting 'axmon serve' (the dashboard) in the background")
    add_db(demo)
    add_broker_options(demo)
    demo.set_defaults(handler=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from processor.ops.demo import DemoOptions, run_demo

    if args.topic_prefix is None and not os.environ.get(ENV_TOPIC_PREFIX):
        args.topic_prefix = time.strftime("axmon.demo-%Y%m%d-%H%M%S.")  # each run on its own topics
    settings = settings_of(args)
    bootstrap = resolve_bootstrap(settings, start_local=True)
    options = DemoOptions(seconds=args.seconds, executions=args.executions, tenants=args.tenants, seed=args.seed,
                          keep_db=args.keep_db, local_broker=not settings.bootstrap, serve=not args.no_serve,
                          serve_port=args.serve_port)
    return asyncio.run(run_demo(settings, bootstrap, options, out_console))
