"""``axmon replay`` (a new database rebuilt from the source topics) and ``axmon prove`` (live
processing under SIGKILLs and a broker restart equals a replay, table by table)."""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

from processor.cli.options import (
    Subparsers,
    add_broker_options,
    add_fold_options,
    db_location,
    positive,
    resolve_bootstrap,
    rules_of,
    settings_of,
)
from processor.cli.render import err_console, out_console
from processor.errors import ConfigError
from processor.ops import localbroker
from processor.runtime.replay_plan import DEFAULT_WORKERS
from processor.urls import display_url


def register(subparsers: Subparsers) -> None:
    rep = subparsers.add_parser(
        "replay",
        help="rebuild a database from the source topics",
        description="Reads axmon.workflow-events and axmon.metrics from the earliest offset, folds "
        "them with the worker's code and writes a NEW database through the sink's code (no "
        "Faust, no derived topics). Execution state is always rebuilt from the whole history (a "
        "state needs all its events); --from only limits the metric samples and windows. An "
        "interrupted replay leaves no file behind. With --swap the new database replaces the "
        "live one (--live-db / AXMON_DB) atomically when complete: stop the sink first. A live "
        "PostgreSQL store gets the new file's rows in one transaction.",
    )
    rep.add_argument("--db", dest="target", type=Path, required=True, metavar="NEW.db",
                     help="the database to build (must not exist)")
    rep.add_argument("--from", dest="from_", metavar="earliest|TIME",
                     help="keep metric samples from TIME (1h, 7d, ISO-8601, epoch ms)")
    rep.add_argument("--until", metavar="TIME", help="read the topics as they stood at TIME")
    rep.add_argument("--swap", action="store_true", help="then replace the live database with the new one")
    rep.add_argument("--live-db", dest="db", type=db_location, metavar="PATH|URL",
                     help="the live database for --swap, a file or a postgresql:// URL: then the new file's rows "
                     "are copied into it in one transaction (env AXMON_DB; default ./axmon.db)")
    add_fold_options(rep, same_as_worker=True)
    rep.add_argument("--rules", type=Path, metavar="PATH", help="the worker's alert rules: alerts are rebuilt too")
    rep.add_argument("--workers", type=positive, default=DEFAULT_WORKERS, metavar="N",
                     help="processes that fold the partitions, a share each (default %(default)s: two where there "
                     "are two cores or more; each takes a core and its share's memory; never more than the partitions)")
    add_broker_options(rep)
    rep.set_defaults(handler=cmd_replay)

    prove = subparsers.add_parser(
        "prove",
        help="prove that live processing equals a replay, under SIGKILLs and a broker restart",
        description="On a fresh topic prefix: produces a scenario with resends, disorder, "
        "malformed and late events while killing the worker and the sink with SIGKILL and "
        "restarting the (local) broker once; waits until the pipeline has caught up; replays "
        "the topics into a new database and compares the two table by table, row by row. "
        "Exit 0 when equal, 1 with the differences otherwise.",
    )
    prove.add_argument("--executions", type=positive, default=300, help="executions in the scenario (default 300)")
    prove.add_argument("--kills", type=int, default=3, help="SIGKILLs of the worker and of the sink each (default 3)")
    prove.add_argument("--seed", type=int, default=11)
    prove.add_argument("--workdir", type=Path, metavar="DIR",
                       help="where the databases and logs go (default ./axmon-proof-<time>)")
    add_broker_options(prove)
    prove.set_defaults(handler=cmd_prove)


def cmd_replay(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    from processor.folds.timeparse import parse_time_ms
    from processor.runtime.replay import ReplayPlan, replay, swap_into

    settings = settings_of(args)
    bootstrap = resolve_bootstrap(settings)
    now = int(time.time() * 1000)
    from_ms = None if args.from_ in (None, "earliest") else parse_time_ms(args.from_, now)
    until_ms = None if args.until is None else parse_time_ms(args.until, now)
    if from_ms is not None and until_ms is not None and from_ms >= until_ms:
        raise ConfigError("--from must be before --until")
    target: Path = args.target
    if args.swap and isinstance(settings.db_path, Path) and target.resolve() == settings.db_path.resolve():
        raise ConfigError("--db names the new database; with --swap it must differ from the live one (AXMON_DB / --live-db)")
    with Progress(
        TextColumn("replaying"), BarColumn(), TaskProgressColumn(), TextColumn("{task.fields[rate]} records/s"),
        TextColumn("{task.fields[lag]} to go"), TimeRemainingColumn(), console=err_console, transient=True,
    ) as progress:
        task = progress.add_task("replay", total=None, rate="-", lag="-")

        def show(p: Any) -> None:
            progress.update(task, total=p.total, completed=p.done, rate=f"{p.rate:,.0f}", lag=f"{p.total - p.done:,}")

        plan = ReplayPlan(target, from_ms, until_ms, rules_of(args), workers=args.workers)
        result = asyncio.run(replay(settings, bootstrap, plan, on_progress=show))
    err_console.print(
        f"replayed {result.records:,} records in {result.seconds:.1f} s ({result.rate:,.0f}/s) into {target}: "
        f"{result.executions:,} execution writes, {result.samples:,} samples, {result.rollups:,} rollup writes, "
        f"{result.dead_letters:,} dead letters"
    )
    if args.swap and isinstance(settings.db_path, str):
        from processor.store.pgcopy import copy_into

        copy_into(target, settings.db_path)
        err_console.print(f"copied into {display_url(settings.db_path)}")
    elif args.swap and isinstance(settings.db_path, Path):
        swap_into(target, settings.db_path)
        err_console.print(f"swapped into {settings.db_path}")
    return 0


def cmd_prove(args: argparse.Namespace) -> int:
    from processor.ops.proof import ProofOptions, run_proof

    settings = settings_of(args)
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
    err_console.print(f"worker started {result.worker_starts}x, sink {result.sink_starts}x, "
                      f"broker restarted {result.broker_restarts}x")
    err_console.print("rows: " + ", ".join(f"{k} {v:,}" for k, v in sorted(result.rows.items())))
    if result.equal:
        out_console.print(f"[green]live and replay are equal, table by table, row by row[/] "
                          f"({result.live_db} = {result.replay_db})")
        return 0
    for diff in result.diffs:
        out_console.print(diff.describe())
    return 1
