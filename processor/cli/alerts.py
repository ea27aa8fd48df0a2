"""``axmon alerts``: list alerts from the database, and acknowledge one (``axmon alerts ack``).

An ack is a record on ``axmon.alert-acks``, on the partition of the alert's series, so the
worker applies it to the alert's state; it survives restarts and replays like any event.
Finding the alert and building and publishing its ack is :mod:`processor.runtime.acks`, shared with the
API's ack route.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
from collections.abc import Mapping
from typing import Any

import orjson
from rich.text import Text

from processor.cli.options import Subparsers, add_broker_options, add_read_options, resolve_bootstrap, settings_of
from processor.cli.render import (
    Cell,
    Column,
    fit,
    fitted_table,
    human_number,
    human_time,
    stderr_console,
    stdout_console,
    utc_offset,
)
from processor.errors import ConfigError
from processor.runtime.acks import ack_of, find_alert, publish_ack
from processor.settings import Settings
from processor.store.queries import Monitor

SEVERITY_STYLES = {"info": "blue", "warning": "yellow", "error": "red", "critical": "bold red"}
ALERT_STYLES = {"pending": "yellow", "firing": "bold red", "acknowledged": "magenta", "resolved": "green"}


def register(subparsers: Subparsers) -> None:
    alerts = subparsers.add_parser(
        "alerts",
        help="alerts fired by the worker's rules, newest first; 'alerts ack ID' acknowledges one",
        description="Alerts from the database (the sink writes every transition of axmon.alerts). "
        "Rules are given to 'axmon worker --rules PATH'; they are evaluated in event time as "
        "metric windows close.",
    )
    alerts.add_argument("--active", action="store_true", help="only pending, firing or acknowledged alerts")
    alerts.add_argument("--tenant", metavar="T", help="only this tenant's alerts")
    alerts.add_argument("--limit", type=int, default=50, metavar="N", help="at most N alerts (default 50)")
    add_read_options(alerts)
    alerts.set_defaults(handler=cmd_alerts)
    actions = alerts.add_subparsers(dest="alerts_command", metavar="ACTION")
    ack = actions.add_parser(
        "ack", help="acknowledge a firing alert",
        description="Publish an acknowledgement of a firing alert to axmon.alert-acks; the worker "
        "moves the alert to 'acknowledged' and the sink records who and when.",
    )
    ack.add_argument("alert_id", metavar="ID", help="the alert's id (a unique prefix will do)")
    ack.add_argument("--by", metavar="NAME", help="who acknowledges (default: your user name)")
    add_read_options(ack)
    add_broker_options(ack)
    ack.set_defaults(handler=cmd_alerts_ack)


def cmd_alerts(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise ConfigError(f"--limit must be at least 1, not {args.limit}")
    with Monitor(Settings.load({"db_path": args.db}).db_path) as monitor:
        rows = monitor.get_alerts(active=args.active, tenant_id=args.tenant, limit=args.limit)
    if args.json:
        print(orjson.dumps({"active": args.active, "tenant": args.tenant, "alerts": rows}).decode())
        return 0
    title = "Active alerts" if args.active else "Alerts"
    columns = (Column("id", "id"), Column("rule", keep=8), Column("severity", keep=3), Column("status", keep=9),
               Column("subject", "text", keep=6), Column("value", keep=5, right=True), Column("since", keep=2),
               Column("changed", keep=4))
    cells: list[list[Cell]] = [
        [Text(r["id"]), Text(r["rule"]), Text(r["severity"], style=SEVERITY_STYLES.get(r["severity"], "")),
         Text(r["status"], style=ALERT_STYLES.get(r["status"], "")), Text(_subject(r)), human_number(r["value"]),
         human_time(r["pending_at"], compact=True), human_time(r["updated_at"], compact=True)]
        for r in rows
    ]
    console = stdout_console()
    widths = fit(columns, cells, console.width)
    console.print(fitted_table(title + (f" of {args.tenant}" if args.tenant else ""),
                               f"{len(rows)} shown; local times{utc_offset()}", columns, widths, cells))
    return 0


def _subject(r: Mapping[str, Any]) -> str:
    if r["execution_id"]:
        return f"execution {r['execution_id']} ({r['tenant_id']})"
    labels = ",".join(f"{k}={v}" for k, v in sorted((r["labels"] or {}).items()))
    return f"{r['tenant_id'] or '-'} {r['metric_type']}" + (f"{{{labels}}}" if labels else "")


def cmd_alerts_ack(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    with Monitor(settings.db_path) as monitor:
        alert = find_alert(monitor, args.alert_id)
    by = args.by or getpass.getuser()
    ack = ack_of(alert, by)
    bootstrap = resolve_bootstrap(settings)
    asyncio.run(publish_ack(bootstrap, settings.topics.alert_acks, ack, int(alert["partition"])))
    if args.json:
        print(orjson.dumps({"acknowledged": ack.to_json()}).decode())
    else:
        stderr_console().print(
            f"acknowledged {alert['id']} ({alert['rule']}) as {by}; the worker applies it, 'axmon alerts' shows it once the sink has written it"
        )
    return 0
