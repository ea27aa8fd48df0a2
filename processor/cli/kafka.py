"""``axmon kafka``: provision, start, stop and reset the local broker (:mod:`processor.ops.localbroker`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

from processor.cli.options import Handler, Subparsers, add_data_dir, settings_of, start_local_broker
from processor.cli.render import err_console
from processor.errors import ConfigError
from processor.ops import localbroker


def register(subparsers: Subparsers) -> None:
    """Register ``axmon kafka ACTION``; each action sets ``handler``."""
    kafka = subparsers.add_parser(
        "kafka",
        help="provision, start, stop, reset the local Kafka broker",
        description="The embedded default: Apache Kafka "
        f"{localbroker.KAFKA_VERSION} from Maven Central jars (cached once per machine), a "
        "single KRaft node on 127.0.0.1. Needs Java 17+ and Maven; with Docker, "
        "'docker compose up -d kafka' is the alternative.",
    )
    actions = kafka.add_subparsers(dest="kafka_command", metavar="ACTION", required=True)

    def action(name: str, help_text: str, handler: Handler) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=help_text)
        add_data_dir(parser)
        parser.set_defaults(handler=handler)
        return parser

    action("start", "start the broker (provisioning it on first use); prints its address", cmd_start)
    status = action("status", "is the broker running, and where (exit 0 running, 3 not)", cmd_status)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    action("stop", "stop the broker; its data stays for the next start", cmd_stop)
    reset = action("reset", "stop the broker and remove its data (every topic and event): start clean", cmd_reset)
    reset.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")


def cmd_start(args: argparse.Namespace) -> int:
    status = start_local_broker(settings_of(args).kafka_dir)
    err_console.print(f"Kafka {localbroker.KAFKA_VERSION} running (pid {status.pid}), data in {status.data_dir}")
    print(status.bootstrap)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    status = localbroker.status(settings_of(args).kafka_dir)
    if args.json:
        print(orjson.dumps({
            "running": status.running, "bootstrap": status.bootstrap or None, "pid": status.pid,
            "data_dir": str(status.data_dir), "log_file": str(status.log_file),
        }).decode())
    elif status.running:
        print(f"running  {status.bootstrap}  pid {status.pid}  data {status.data_dir}")
    elif status.bootstrap:
        print(f"stopped  (last address {status.bootstrap})  data {status.data_dir}")
    else:
        print(f"not provisioned  (no broker was started in {status.data_dir})")
    return 0 if status.running else 3


def cmd_stop(args: argparse.Namespace) -> int:
    stopped = localbroker.stop(settings_of(args).kafka_dir)
    err_console.print("Kafka stopped" if stopped else "Kafka was not running")
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    data_dir = settings_of(args).kafka_dir.resolve()
    if not args.yes:
        confirm_reset(data_dir)
    removed = localbroker.reset(data_dir)
    err_console.print(f"Kafka stopped and its data in {data_dir} removed; 'axmon kafka start' starts afresh"
                      if removed else f"no broker data in {data_dir}: nothing to remove", soft_wrap=True)
    return 0


def confirm_reset(data_dir: Path) -> None:
    """Ask on the terminal; without one (a script, a pipe) refuse: removing every event on
    the broker is not done unasked."""
    if not sys.stdin.isatty():
        raise ConfigError(f"'axmon kafka reset' removes every topic and event in {data_dir}; "
                          "there is no terminal to confirm it on: pass --yes")
    answer = input(f"Stop the local broker and remove its data in {data_dir} (every topic and event)? [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        raise ConfigError("reset cancelled: nothing was removed")
