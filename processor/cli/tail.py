"""``axmon tail``: follow a topic and print its records (:mod:`processor.runtime.tail`)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from processor.cli.options import Subparsers, add_broker_options, positive, resolve_bootstrap, settings_of


def register(subparsers: Subparsers) -> None:
    tl = subparsers.add_parser(
        "tail",
        help="follow a topic and print its records",
        description="Follows a derived topic (execution-state, workflow-stats, metric-rollups, "
        "dead-letter; or any topic by its full name) without joining a consumer group. Pretty "
        "output for people, --json for one JSON object a line (topic, partition, offset, "
        "timestamp, key, value).",
    )
    tl.add_argument("topic", metavar="TOPIC",
                    help="execution-state, workflow-stats, metric-rollups, dead-letter, or a full topic name")
    tl.add_argument("--from-beginning", action="store_true",
                    help="start at the earliest offset (default: new records only)")
    tl.add_argument("--key", metavar="K", help="only records with this key (e.g. an execution id or a tenant)")
    tl.add_argument("--limit", type=positive, metavar="N", help="stop after N records")
    tl.add_argument("--json", action="store_true", help="one JSON object a line")
    add_broker_options(tl)
    tl.set_defaults(handler=cmd_tail)


def cmd_tail(args: argparse.Namespace) -> int:
    import orjson

    from processor.runtime.tail import TailRecord, render, tail

    settings = settings_of(args)
    bootstrap = resolve_bootstrap(settings)
    names = {
        "execution-state": settings.topics.execution_state, "workflow-stats": settings.topics.workflow_stats,
        "metric-rollups": settings.topics.metric_rollups, "dead-letter": settings.topics.dead_letter,
        "workflow-events": settings.topics.workflow_events, "metrics": settings.topics.metrics,
    }
    topic = names.get(args.topic, args.topic)

    def emit(record: TailRecord) -> None:
        if args.json:
            sys.stdout.write(orjson.dumps(record.to_json()).decode() + "\n")
        else:
            sys.stdout.write(render(record) + "\n")
        sys.stdout.flush()

    try:
        asyncio.run(tail(bootstrap, topic, emit, from_beginning=args.from_beginning, key=args.key, limit=args.limit))
    except BrokenPipeError:
        pass
    return 0
