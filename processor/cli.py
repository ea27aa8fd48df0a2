"""The ``axmon`` command line.

Each subcommand is a small function that builds the one :class:`Settings` from its flags and
calls into the package; every :class:`AxmonError` becomes a one-line message and exit code 1,
bad arguments exit 2 (argparse). Any other exception is a bug: one line naming the command and
the error, exit code 70; ``axmon -v`` adds the traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from processor.errors import AxmonError, ConfigError
from processor.folds.rules import RuleSet, load_rules
from processor.ops import localbroker
from processor.runtime.metrics_export import METRICS_PORT_HELP, metrics_address
from processor.settings import ENV_BOOTSTRAP, ENV_KAFKA_DIR, ENV_TOPIC_PREFIX, Settings

err_console = Console(stderr=True, highlight=False)
out_console = Console(highlight=False)

Handler = Callable[[argparse.Namespace], int]
EXIT_SOFTWARE = 70
"""Exit code of an unexpected error (BSD ``EX_SOFTWARE``)."""


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {
        "window_ms": getattr(args, "window_ms", None),
        "grace_ms": getattr(args, "grace_ms", None),
        "execution_horizon_ms": getattr(args, "horizon_ms", None),
        "bootstrap": getattr(args, "bootstrap", None),
        "kafka_dir": getattr(args, "data_dir", None),
        "topic_prefix": getattr(args, "topic_prefix", None),
        "partitions": getattr(args, "partitions", None),
        "db_path": getattr(args, "db", None),
        "stall_timeout_s": getattr(args, "stall_timeout_s", None),
        "stale_after_ms": getattr(args, "stale_after_ms", None),
        "batch_max": getattr(args, "batch_max", None),
        "batch_ms": getattr(args, "batch_ms", None),
    }
    return Settings.load(overrides)


def _duration_ms(text: str) -> int:
    """An argparse type: a duration (``30s``, ``15m``, ms) or ``0``."""
    from processor.folds.timeparse import parse_duration_ms

    if text.strip() == "0":
        return 0
    try:
        return parse_duration_ms(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _rules(args: argparse.Namespace) -> RuleSet:
    """The alert rules of ``--rules PATH`` (none without it)."""
    path = getattr(args, "rules", None)
    return RuleSet() if path is None else load_rules(path)


def resolve_bootstrap(settings: Settings, *, start_local: bool = False) -> str:
    """The broker to talk to: ``--bootstrap``/``AXMON_BOOTSTRAP``, else the local broker
    (started first when ``start_local``)."""
    if settings.bootstrap:
        return settings.bootstrap
    status = localbroker.status(settings.kafka_dir)
    if status.running:
        return status.bootstrap
    if start_local:
        return _start_local(settings.kafka_dir).bootstrap
    raise ConfigError(
        "no Kafka broker: start the local one with 'axmon kafka start', "
        f"or pass --bootstrap HOST:PORT (or set {ENV_BOOTSTRAP})"
    )


def _start_local(data_dir: Path) -> localbroker.BrokerStatus:
    with err_console.status("starting the local Kafka broker") as spinner:
        status = localbroker.start(
            data_dir, on_progress=lambda message: spinner.update(message)
        )
    return status


# -- produce ---------------------------------------------------------------------------------


def cmd_produce(args: argparse.Namespace) -> int:
    from processor.runtime.produce import run_produce

    settings = _settings(args)
    bootstrap = resolve_bootstrap(settings)
    return asyncio.run(run_produce(settings, bootstrap, args.file, strict=args.strict, console=err_console))


# -- worker ----------------------------------------------------------------------------------


def cmd_worker(args: argparse.Namespace) -> int:
    from processor.runtime.admin import contract_topics, ensure_topics
    from processor.runtime.worker import changelog_topics, run_worker, wait_for_broker

    settings = _settings(args)
    rules = _rules(args)  # a bad rules file fails at once, not after the broker answers
    bootstrap = resolve_bootstrap(settings)
    wait_for_broker(bootstrap)
    specs = contract_topics(settings.topics, settings.partitions) + changelog_topics(settings.topics, settings.partitions)
    asyncio.run(ensure_topics(bootstrap, specs))
    err_console.print(f"axmon worker on {bootstrap} (topics {settings.topic_prefix}*, {settings.partitions} partitions"
                      f"{f', {len(rules.rules)} alert rules' if rules.rules else ''})")
    run_worker(settings, bootstrap, rules=rules, loglevel=["warning", "info", "debug"][min(args.verbose, 2)],
               metrics_at=args.metrics_port)
    return 0


# -- sink ------------------------------------------------------------------------------------


def cmd_sink(args: argparse.Namespace) -> int:
    from processor.runtime.sink import SinkConfig, SinkCounters, run_sink

    settings = _settings(args)
    bootstrap = resolve_bootstrap(settings)
    config = SinkConfig(batch_size=args.batch_size, batch_ms=args.batch_ms, retention=_retention(args))
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


def _retention(args: argparse.Namespace) -> Any:
    from processor.store.retention import Retention

    day = 86_400_000
    return Retention(
        executions_ms=args.executions_days * day, samples_ms=args.samples_days * day, rollups_ms=args.rollups_days * day
    )


def cmd_cleanup(args: argparse.Namespace) -> int:
    from processor.store.db import open_for_writing
    from processor.store.retention import cleanup

    settings = _settings(args)
    if not settings.db_path.exists():
        raise ConfigError(f"no database at {settings.db_path}")
    conn = open_for_writing(settings.db_path)
    try:
        report = cleanup(conn, int(time.time() * 1000), _retention(args))
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


def _add_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", type=Path, metavar="PATH", help="the SQLite database (env AXMON_DB; default ./axmon.db)")


def _add_retention(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--executions-days", type=_positive, default=30, metavar="N", help="keep finished executions N days (default 30)")
    parser.add_argument("--samples-days", type=_positive, default=90, metavar="N", help="keep raw metric samples N days (default 90)")
    parser.add_argument("--rollups-days", type=_positive, default=400, metavar="N", help="keep metric rollups N days (default 400)")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


# -- replay and the proof ---------------------------------------------------------------------


def cmd_replay(args: argparse.Namespace) -> int:
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    from processor.folds.timeparse import parse_time_ms
    from processor.runtime.replay import ReplayPlan, replay, swap_into

    settings = _settings(args)
    bootstrap = resolve_bootstrap(settings)
    now = int(time.time() * 1000)
    from_ms = None if args.from_ in (None, "earliest") else parse_time_ms(args.from_, now)
    until_ms = None if args.until is None else parse_time_ms(args.until, now)
    if from_ms is not None and until_ms is not None and from_ms >= until_ms:
        raise ConfigError("--from must be before --until")
    target: Path = args.target
    if args.swap and target.resolve() == settings.db_path.resolve():
        raise ConfigError("--db names the new database; with --swap it must differ from the live one (AXMON_DB / --live-db)")
    with Progress(
        TextColumn("replaying"), BarColumn(), TaskProgressColumn(), TextColumn("{task.fields[rate]} records/s"),
        TextColumn("{task.fields[lag]} to go"), TimeRemainingColumn(), console=err_console, transient=True,
    ) as progress:
        task = progress.add_task("replay", total=None, rate="-", lag="-")

        def show(p: Any) -> None:
            progress.update(task, total=p.total, completed=p.done, rate=f"{p.rate:,.0f}", lag=f"{p.total - p.done:,}")

        result = asyncio.run(replay(settings, bootstrap, ReplayPlan(target, from_ms, until_ms, _rules(args)), on_progress=show))
    err_console.print(
        f"replayed {result.records:,} records in {result.seconds:.1f} s ({result.rate:,.0f}/s) into {target}: "
        f"{result.executions:,} execution writes, {result.samples:,} samples, {result.rollups:,} rollup writes, "
        f"{result.dead_letters:,} dead letters"
    )
    if args.swap:
        swap_into(target, settings.db_path)
        err_console.print(f"swapped into {settings.db_path}")
    return 0


def cmd_prove(args: argparse.Namespace) -> int:
    from processor.ops.proof import ProofOptions, run_proof

    settings = _settings(args)
    bootstrap = resolve_bootstrap(settings, start_local=True)
    restart = None
    if not settings.bootstrap:
        def restart() -> None:
            localbroker.stop(settings.kafka_dir)
            localbroker.start(settings.kafka_dir)
    workdir = args.workdir or Path(f"axmon-proof-{int(time.time())}")
    options = ProofOptions(executions=args.executions, seed=args.seed, worker_kills=args.kills, sink_kills=args.kills,
                           restart_broker=restart is not None)
    result = run_proof(settings, bootstrap, workdir, options, restart_broker=restart, say=err_console.print)
    err_console.print(f"worker started {result.worker_starts}x, sink {result.sink_starts}x, broker restarted {result.broker_restarts}x")
    err_console.print("rows: " + ", ".join(f"{k} {v:,}" for k, v in sorted(result.rows.items())))
    if result.equal:
        out_console.print(f"[green]live and replay are equal, table by table, row by row[/] ({result.live_db} = {result.replay_db})")
        return 0
    for diff in result.diffs:
        out_console.print(diff.describe())
    return 1


# -- tail --------------------------------------------------------------------------------------


def cmd_tail(args: argparse.Namespace) -> int:
    import orjson

    from processor.runtime.tail import TailRecord, render, tail

    settings = _settings(args)
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


# -- demo ------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from processor.ops.demo import DemoOptions, run_demo

    if args.topic_prefix is None and not os.environ.get(ENV_TOPIC_PREFIX):
        args.topic_prefix = time.strftime("axmon.demo-%Y%m%d-%H%M%S.")  # each run on its own topics
    settings = _settings(args)
    bootstrap = resolve_bootstrap(settings, start_local=True)
    options = DemoOptions(seconds=args.seconds, executions=args.executions, tenants=args.tenants, seed=args.seed,
                          keep_db=args.keep_db, local_broker=not settings.bootstrap)
    return asyncio.run(run_demo(settings, bootstrap, options, out_console))


# -- parser ----------------------------------------------------------------------------------


def _add_kafka_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap",
        metavar="HOST:PORT",
        help=f"Kafka bootstrap servers (env {ENV_BOOTSTRAP}; default: the local broker "
        "started by 'axmon kafka start')",
    )
    parser.add_argument(
        "--topic-prefix", metavar="PREFIX", help="prefix of every axmon topic (default 'axmon.')"
    )
    parser.add_argument(
        "--partitions", type=int, metavar="N",
        help="partitions of the topics axmon creates (default 4; env AXMON_PARTITIONS)",
    )


def _add_fold_options(parser: argparse.ArgumentParser, *, same_as_worker: bool = False) -> None:
    """The settings that decide what state is: the worker, the sink and replay must agree."""
    note = "; must match the worker's" if same_as_worker else ""
    parser.add_argument("--window-ms", type=_positive, metavar="MS", help=f"metric window size{note} (default 60000)")
    parser.add_argument("--grace-ms", type=int, metavar="MS",
                        help=f"lateness allowed after a window ends, in stream time{note} (default 300000)")
    parser.add_argument("--horizon-ms", type=_positive, metavar="MS",
                        help=f"how long finished executions stay in the worker, in stream time{note} (default 3600000)")


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path, metavar="DIR",
        help=f"the local broker's data directory (env {ENV_KAFKA_DIR}; "
        "default ~/.local/share/axmon/kafka)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="axmon",
        description="Event-sourced monitoring of workflow engines on Apache Kafka.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-vv: debug), and the traceback of an unexpected error")
    parser.add_argument("--version", action="version", version=f"axmon {package_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    from processor.cli_kafka import add_kafka_commands

    add_kafka_commands(commands, _add_data_dir, _settings, _start_local, err_console)

    produce = commands.add_parser(
        "produce",
        help="publish JSON-lines events from a file or stdin",
        description="Validate each line against the event contract and publish it. Invalid "
        "lines are reported with their number and reason (exit 1); every valid line is "
        "published. Unless --strict, 'version', 'event_id' and 'occurred_at' may be left "
        "out and are filled in (version 1, a new UUIDv7, now).",
    )
    produce.add_argument("file", nargs="?", default="-", metavar="FILE", help="JSON lines; '-' (default) reads stdin")
    produce.add_argument("--strict", action="store_true", help="require the full envelope on every line")
    _add_kafka_options(produce)
    _add_data_dir(produce)
    produce.set_defaults(handler=cmd_produce)

    worker = commands.add_parser(
        "worker",
        help="run the stream processor (Faust): executions, stats, metric rollups",
        description="Folds axmon.workflow-events and axmon.metrics into tables and publishes "
        "axmon.execution-state, axmon.workflow-stats, axmon.metric-rollups and "
        "axmon.dead-letter. Creates the topics it needs. Stops gracefully on SIGTERM/Ctrl-C; "
        "a restart resumes from the committed offsets and the recovered tables.",
    )
    _add_fold_options(worker)
    worker.add_argument("--rules", type=Path, metavar="PATH",
                        help="alert rules (YAML or JSON; see processor/folds/rules.py); evaluated as windows close in event time")
    worker.add_argument("--stale-after", type=_duration_ms, metavar="DURATION", dest="stale_after_ms",
                        help="flag a running execution with no event for this long (wall clock) as stale, "
                        "and raise the execution.stale alert (default 15m; 0: never)")
    worker.add_argument("--stall-timeout", type=float, metavar="S", dest="stall_timeout_s",
                        help="restart when records wait and nothing is committed for S seconds (default 60; 0: never)")
    worker.add_argument("--batch-max", type=_positive, metavar="N",
                        help="fold at most N records per batch; each table key is written once per batch (default 2000)")
    worker.add_argument("--batch-ms", type=_positive, metavar="MS",
                        help="wait at most MS milliseconds for a batch to fill: the latency batching adds (default 50)")
    worker.add_argument("--metrics-port", type=metrics_address, metavar="[HOST:]PORT", help=METRICS_PORT_HELP)
    _add_kafka_options(worker)
    _add_data_dir(worker)
    worker.set_defaults(handler=cmd_worker)

    sink = commands.add_parser(
        "sink",
        help="write the derived topics and raw samples to SQLite",
        description="Consumes axmon.execution-state, axmon.metric-rollups, axmon.dead-letter "
        "and axmon.metrics and writes them to SQLite in batched transactions that also hold "
        "the consumed offsets: killing it at any moment loses and duplicates nothing. Applies "
        "retention hourly. Stops gracefully on SIGTERM/Ctrl-C.",
    )
    _add_db(sink)
    sink.add_argument("--batch-size", type=_positive, default=5000, metavar="N", help="records per transaction at most (default 5000)")
    sink.add_argument("--batch-ms", type=_positive, default=500, metavar="MS", help="a transaction at least this often (default 500)")
    _add_fold_options(sink, same_as_worker=True)
    _add_retention(sink)
    sink.add_argument("--metrics-port", type=metrics_address, metavar="[HOST:]PORT", help=METRICS_PORT_HELP)
    _add_kafka_options(sink)
    _add_data_dir(sink)
    sink.set_defaults(handler=cmd_sink)

    clean = commands.add_parser("cleanup", help="apply retention to the database now")
    _add_db(clean)
    _add_retention(clean)
    clean.add_argument("--json", action="store_true", help="machine-readable output")
    clean.set_defaults(handler=cmd_cleanup)

    rep = commands.add_parser(
        "replay",
        help="rebuild a database from the source topics",
        description="Reads axmon.workflow-events and axmon.metrics from the earliest offset, folds "
        "them with the worker's code and writes a NEW database through the sink's code (no "
        "Faust, no derived topics). Execution state is always rebuilt from the whole history (a "
        "state needs all its events); --from only limits the metric samples and windows. An "
        "interrupted replay leaves no file behind. With --swap the new database replaces the "
        "live one (--live-db / AXMON_DB) atomically when complete: stop the sink first.",
    )
    rep.add_argument("--db", dest="target", type=Path, required=True, metavar="NEW.db", help="the database to build (must not exist)")
    rep.add_argument("--from", dest="from_", metavar="earliest|TIME", help="keep metric samples from TIME (1h, 7d, ISO-8601, epoch ms)")
    rep.add_argument("--until", metavar="TIME", help="read the topics as they stood at TIME")
    rep.add_argument("--swap", action="store_true", help="then replace the live database with the new one")
    rep.add_argument("--live-db", dest="db", type=Path, metavar="PATH", help="the live database for --swap (env AXMON_DB; default ./axmon.db)")
    _add_fold_options(rep, same_as_worker=True)
    rep.add_argument("--rules", type=Path, metavar="PATH", help="the worker's alert rules: alerts are rebuilt too")
    _add_kafka_options(rep)
    _add_data_dir(rep)
    rep.set_defaults(handler=cmd_replay)

    prove = commands.add_parser(
        "prove",
        help="prove that live processing equals a replay, under SIGKILLs and a broker restart",
        description="On a fresh topic prefix: produces a scenario with resends, disorder, "
        "malformed and late events while killing the worker and the sink with SIGKILL and "
        "restarting the (local) broker once; waits until the pipeline has caught up; replays "
        "the topics into a new database and compares the two table by table, row by row. "
        "Exit 0 when equal, 1 with the differences otherwise.",
    )
    prove.add_argument("--executions", type=_positive, default=300, help="executions in the scenario (default 300)")
    prove.add_argument("--kills", type=int, default=3, help="SIGKILLs of the worker and of the sink each (default 3)")
    prove.add_argument("--seed", type=int, default=11)
    prove.add_argument("--workdir", type=Path, metavar="DIR", help="where the databases and logs go (default ./axmon-proof-<time>)")
    _add_kafka_options(prove)
    _add_data_dir(prove)
    prove.set_defaults(handler=cmd_prove)

    tl = commands.add_parser(
        "tail",
        help="follow a topic and print its records",
        description="Follows a derived topic (execution-state, workflow-stats, metric-rollups, "
        "dead-letter; or any topic by its full name) without joining a consumer group. Pretty "
        "output for people, --json for one JSON object a line (topic, partition, offset, "
        "timestamp, key, value).",
    )
    tl.add_argument("topic", metavar="TOPIC", help="execution-state, workflow-stats, metric-rollups, dead-letter, or a full topic name")
    tl.add_argument("--from-beginning", action="store_true", help="start at the earliest offset (default: new records only)")
    tl.add_argument("--key", metavar="K", help="only records with this key (e.g. an execution id or a tenant)")
    tl.add_argument("--limit", type=_positive, metavar="N", help="stop after N records")
    tl.add_argument("--json", action="store_true", help="one JSON object a line")
    _add_kafka_options(tl)
    _add_data_dir(tl)
    tl.set_defaults(handler=cmd_tail)

    demo = commands.add_parser(
        "demo",
        help="the main job: broker, worker and sink with a simulated engine; shows stats and workflows",
        description="Starts the local broker unless --bootstrap is given, then the worker and the "
        "sink, runs a simulated workflow engine (tenants, workflows with steps, failures, "
        "retries, metric samples) in real time through the SDK, waits until the database has "
        "caught up and shows 'axmon stats', 'axmon workflows' and 'axmon alerts' from it. Each run "
        "has its own topics (axmon.demo-<time>., unless --topic-prefix) and a fresh database.",
    )
    demo.add_argument("--seconds", type=float, default=20.0, help="how long the simulated engine runs (default 20)")
    demo.add_argument("--executions", type=int, default=200, help="workflow executions to simulate (default 200)")
    demo.add_argument("--tenants", type=int, default=3, help="tenants (default 3)")
    demo.add_argument("--seed", type=int, default=7, help="random seed of the simulation (default 7)")
    demo.add_argument("--keep-db", action="store_true",
                      help="add to the existing database (default: a fresh one; the one before is kept as <db>.previous)")
    _add_db(demo)
    _add_kafka_options(demo)
    _add_data_dir(demo)
    demo.set_defaults(handler=cmd_demo)
    from processor.cli_read import add_read_commands

    add_read_commands(commands)
    from processor.cli_alerts import add_alert_commands

    def alert_kafka_options(parser: argparse.ArgumentParser) -> None:
        _add_kafka_options(parser)
        _add_data_dir(parser)

    add_alert_commands(commands, alert_kafka_options)
    from processor.cli_health import add_health_command

    add_health_command(commands)
    from processor.serve.cli import add_serve_command

    add_serve_command(commands, _add_kafka_options)
    from processor.runtime.notify_runner import add_notify_command

    add_notify_command(commands, _add_kafka_options, _add_data_dir, resolve_bootstrap)
    return parser


def package_version() -> str:
    """The installed distribution's version (``unknown`` when run from a bare checkout)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("axmon")
    except PackageNotFoundError:
        return "unknown"


def command_name(args: argparse.Namespace) -> str:
    """``kafka reset``, ``alerts ack``, ``metrics``: the words of the command that ran."""
    words = [args.command, getattr(args, "kafka_command", None), getattr(args, "alerts_command", None)]
    return " ".join(w for w in words if w)


def unexpected_error_line(command: str, exc: BaseException) -> Text:
    """One line for a bug: the command, the exception's type and first line, the hint."""
    lines = str(exc).strip().splitlines()
    line = Text(f"axmon {command}:", style="bold red")
    line.append(f" unexpected error: {type(exc).__name__}" + (f": {lines[0]}" if lines else ""))
    line.append(f" (run 'axmon -v {command} ...' for the traceback)")
    return line


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler: Handler = args.handler
    try:
        return handler(args)
    except AxmonError as exc:
        err_console.print(f"[bold red]axmon:[/] {exc}")
        return 1
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except BrokenPipeError:  # e.g. piped into head: the reader has what it wanted
        sys.stderr.close()
        return 0
    except Exception as exc:  # a bug, not the user's doing: one line, the traceback on -v
        if args.verbose:
            err_console.print_exception()
        err_console.print(unexpected_error_line(command_name(args), exc), soft_wrap=True)
        return EXIT_SOFTWARE


if __name__ == "__main__":
    sys.exit(main())
