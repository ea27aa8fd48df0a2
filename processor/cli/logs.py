"""``axmon logs``: the engine's log records from the database (the original LogQuery)."""

from __future__ import annotations

import argparse
import datetime as dt
import time
from typing import Any

import orjson
from rich.text import Text

from processor.cli.options import Subparsers, add_db, settings_of
from processor.cli.render import out_console
from processor.errors import ConfigError
from schemas.events import LOG_LEVELS

STYLES = {"trace": "dim", "debug": "dim", "info": "", "warn": "yellow", "error": "red", "fatal": "bold red"}


def register(subparsers: Subparsers) -> None:
    logs = subparsers.add_parser(
        "logs",
        help="the engine's log records (log.recorded), filtered",
        description="Shows the newest --limit log records that match, oldest first: by execution, "
        "minimum level, time range, tenant and text. --follow then prints new ones as the sink stores them.",
    )
    add_db(logs)
    logs.add_argument("--execution", metavar="ID", help="only this execution's records")
    logs.add_argument("--level", choices=list(LOG_LEVELS), help="this level and above (e.g. warn: warn, error, fatal)")
    logs.add_argument("--since", metavar="TIME", help="from TIME (1h, 7d, ISO-8601, epoch ms)")
    logs.add_argument("--until", metavar="TIME", help="before TIME")
    logs.add_argument("--grep", metavar="TEXT", help="messages containing TEXT (case-insensitive)")
    logs.add_argument("--tenant", metavar="ID", help="only this tenant's records")
    logs.add_argument("--limit", type=int, default=100, metavar="N", help="at most N records (default 100)")
    logs.add_argument("--json", action="store_true", help="one JSON object a line")
    logs.add_argument("--follow", action="store_true", help="keep printing records as they are stored (Ctrl-C stops)")
    logs.set_defaults(handler=cmd_logs)


def render(row: dict[str, Any]) -> Text:
    try:
        when = dt.datetime.fromtimestamp(row["timestamp"] / 1000).isoformat(timespec="milliseconds")
    except (OverflowError, ValueError, OSError):
        when = f"epoch {row['timestamp']} ms"
    line = Text(f"{when} ")
    line.append(f"{row['level'].upper():5}", style=STYLES.get(row["level"], ""))
    where = "/".join(str(v) for v in (row.get("execution_id"), row.get("step_id")) if v)
    if where:
        line.append(f" [{where}]", style="cyan")
    line.append(f" {row['message']}")
    if row.get("attributes"):
        line.append(" " + orjson.dumps(row["attributes"]).decode(), style="dim")
    return line


def cmd_logs(args: argparse.Namespace) -> int:
    from processor.folds.timeparse import parse_time_ms
    from processor.store.queries import Monitor

    if args.limit < 1 or args.limit > 100_000:
        raise ConfigError("--limit must be within 1..100000")
    now = int(time.time() * 1000)
    filters: dict[str, Any] = {
        "execution_id": args.execution,
        "min_severity": LOG_LEVELS[args.level] if args.level else None,
        "since_ms": parse_time_ms(args.since, now) if args.since else None,
        "until_ms": parse_time_ms(args.until, now) if args.until else None,
        "grep": args.grep,
        "tenant_id": args.tenant,
    }
    db = settings_of(args).db_path

    def show(rows: list[dict[str, Any]]) -> None:
        for row in rows:
            if args.json:
                print(orjson.dumps({k: v for k, v in row.items() if k != "seq"}).decode(), flush=True)
            else:
                out_console.print(render(row), soft_wrap=True)

    with Monitor(db) as monitor:
        seq = monitor.last_log_seq()  # before the query: a record stored meanwhile is shown once, not lost
        rows = monitor.get_logs(**filters, limit=args.limit)
        show(rows)
        if not args.follow:
            return 0
        shown = {r["id"] for r in rows}
        while True:
            time.sleep(1.0)
            rows = monitor.get_logs(**filters, after_seq=seq, limit=10_000)
            show([r for r in rows if r["id"] not in shown])
            shown = set()
            if rows:
                seq = rows[-1]["seq"]
