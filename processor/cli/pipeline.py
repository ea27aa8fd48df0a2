"""The pipeline's processes: ``axmon produce`` (events into the source topics), ``axmon worker``
(the stream processor), ``axmon sink`` (the derived topics into SQLite) and ``axmon cleanup``
(retention applied to the database now)."""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING

from processor.cli.options import (
    Subparsers,
    add_broker_options,
    add_db,
    add_fold_options,
    add_metrics_port,
    add_retention,
    duration_ms,
    positive,
    resolve_bootstrap,
    rules_of,
    settings_of,
)
from processor.cli.render import err_console, out_console
from processor.errors import ConfigError
from processor.settings import COMPRESSIONS

if TYPE_CHECKING:
    from processor.store.retention import Retention


def register(subparsers: Subparsers) -> None:
    produce = subparsers.add_parser(
        "produce",
        help="publish JSON-lines events from a file or stdin",
        description="Validate each line against the event contract and publish it. Invalid "
        "lines are reported with their number and reason (exit 1); every valid line is "
        "published. Unless --strict, 'version', 'event_id' and 'occurred_at' may be left "
        "out and are filled in (version 1, a new UUIDv7, now).",
    )
    produce.add_argument("file", nargs="?", default="-", metavar="FILE", help="JSON lines; '-' (default) reads stdin")
    produce.add_argument("--strict", action="store_true", help="require the full envelope on every line")
    add_broker_options(produce)
    produce.set_defaults(handler=cmd_produce)

    worker = subparsers.add_parser(
        "worker",
        help="run the stream processor (Faust): executions, stats, metric rollups",
        description="Folds axmon.workflow-events and axmon.metrics into tables and publishes "
        "axmon.execution-state, axmon.workflow-stats, axmon.metric-rollups and "
        "axmon.dead-letter. Creates the topics it needs. Stops gracefully on SIGTERM/Ctrl-C; "
        "a restart resumes from the committed offsets and the recovered tables.",
    )
    add_fold_options(worker)
    worker.add_argument("--rules", type=Path, metavar="PATH",
                        help="alert rules (YAML or JSON; see processor/folds/rules.py); evaluated as windows close in event time")
    worker.add_argument("--stale-after", type=duration_ms, metavar="DURATION", dest="stale_after_ms",
                        help="flag a running execution with no event for this long (wall clock) as stale, "
                        "and raise the execution.stale alert (default 15m; 0: never)")
    worker.add_argument("--stall-timeout", type=float, metavar="S", dest="stall_timeout_s",
                        help="restart when records wait and nothing is committed for S seconds (default 60; 0: never)")
    worker.add_argument("--batch-max", type=positive, metavar="N",
                        help="fold at most N records per batch; each table key is written once per batch (default 2000)")
    worker.add_argument("--batch-ms", type=positive, metavar="MS",
                        help="wait at most MS milliseconds for a batch to fill: the latency batching adds (default 20)")
    worker.add_argument("--compression", choices=COMPRESSIONS,
                        help="how the worker compresses what it writes to Kafka (default none: lz4 costs CPU per batch)")
    worker.add_argument("--state-dir", type=Path, metavar="DIR",
                        help="this worker's own directory (default ./<prefix>worker-data); several workers "
                        "of one group on one machine each need their own (and their own --metrics-port)")
    add_metrics_port(worker)
    add_broker_options(worker)
    worker.set_defaults(handler=cmd_worker)

    sink = subparsers.add_parser(
        "sink",
        help="write the derived topics and raw samples to SQLite",
        description="Consumes axmon.execution-state, axmon.metric-rollups, axmon.dead-letter "
        "and axmon.metrics and writes them to SQLite in batched transactions that also hold "
        "the consumed offsets: killing it at any moment loses and duplicates nothing. Applies "
        "retention hourly. Stops gracefully on SIGTERM/Ctrl-C.",
    )
    add_db(sink)
    sink.add_argument("--batch-size", type=positive, default=5000, metavar="N",
                      help="records per transaction at most (default 5000)")
    sink.add_argument("--batch-ms", type=positive, default=20, metavar="MS",
                      help="a transaction at least this often while records arrive (default 20)")
    add_fold_options(sink, same_as_worker=True)
    add_retention(sink)
    add_metrics_port(sink)
    add_broker_options(sink)
    sink.set_defaults(handler=cmd_sink)

    clean = subparsers.add_parser("cleanup", help="apply retention to the database now")
    add_db(clean)
    add_retention(clean)
    clean.add_argument("--json", action="store_true", help="machine-readable output")
    clean.set_defaults(handler=cmd_cleanup)


def cmd_produce(args: argparse.Namespace) -> int:
    from processor.runtime.produce import run_produce

    settings = settings_of(args)
    bootstrap = resolve_bootstrap(settings)
    return asyncio.run(run_produce(settings, bootstrap, args.file, strict=args.strict, console=err_console))


def cmd_worker(args: argparse.Namespace) -> int:
    from processor.runtime.admin import contract_topics, ensure_topics
    from processor.runtime.state_dir import StateDirClaim, default_state_dir
    from processor.runtime.worker import changelog_topics, run_worker, wait_for_broker

    settings = settings_of(args)
    rules = rules_of(args)  # a bad rules file fails at once, not after the broker answers
    state_dir = settings.state_dir or default_state_dir(settings.topic_prefix)
    claim = StateDirClaim(state_dir)  # for the life of the process: a second worker on it fails here
    bootstrap = resolve_bootstrap(settings)
    wait_for_broker(bootstrap)
    specs = (contract_topics(settings.topics, settings.partitions)
             + changelog_topics(settings.topics, settings.partitions))
    asyncio.run(ensure_topics(bootstrap, specs))
    err_console.print(f"axmon worker on {bootstrap} (topics {settings.topic_prefix}*, {settings.partitions} partitions, "
                      f"state in {state_dir}"
                      f"{f', {len(rules.rules)} alert rules' if rules.rules else ''})")
    try:
        run_worker(settings, bootstrap, rules=rules, loglevel=["warning", "info", "debug"][min(args.verbose, 2)],
                   metrics_at=args.metrics_port)
    finally:
        claim.release()
    return 0


def cmd_sink(args: argparse.Namespace) -> int:
    from processor.runtime.sink import SinkConfig, SinkCounters, run_sink

    settings = settings_of(args)
    bootstrap = resolve_bootstrap(settings)
    config = SinkConfig(batch_size=args.batch_size, batch_ms=args.batch_ms, retention=retention_of(args))
    err_console.print(f"axmon sink: {bootstrap} -> {settings.db_path}")
    last = [0.0, 0]

    def report(counters: SinkCounters) -> None:
        now = time.monotonic()
        if now - last[0] >= 10:
            rate = (counters.records - last[1]) / (now - last[0]) if last[0] else 0.0
            err_console.print(f"{counters.records:,} records in {counters.batches:,} transactions ({rate:,.0f}/s)")
            last[0], last[1] = now, counters.records

    counters = run_sink(settings, bootstrap, settings.db_path, config, report=report, metrics_at=args.metrics_port)
    err_console.print(f"stopped after {counters.records:,} records in {counters.batches:,} transactions")
    return 0


def retention_of(args: argparse.Namespace) -> Retention:
    """The retention of ``--executions-days``, ``--samples-days`` and ``--rollups-days``."""
    from processor.store.retention import Retention

    day = 86_400_000
    return Retention(
        executions_ms=args.executions_days * day, samples_ms=args.samples_days * day, rollups_ms=args.rollups_days * day
    )


def cmd_cleanup(args: argparse.Namespace) -> int:
    from processor.store.db import open_for_writing
    from processor.store.retention import cleanup

    settings = settings_of(args)
    if isinstance(settings.db_path, Path) and not settings.db_path.exists():
        raise ConfigError(f"no database at {settings.db_path}")
    conn = open_for_writing(settings.db_path)
    try:
        report = cleanup(conn, int(time.time() * 1000), retention_of(args))
    finally:
        conn.close()
    if args.json:
        import orjson

        print(orjson.dumps({name: getattr(report, name) for name in report.__slots__}).decode())
    else:
        out_console.print(
            f"deleted {report.executions:,} executions ({report.steps:,} steps), {report.samples:,} samples, "
            f"{report.rollups:,} rollups, {report.dead_letters:,} dead letters"
        )
    return 0
