"""The ``axmon`` command line: the root parser, and :func:`main`, which runs one command.

Each subcommand is a small function that builds the one :class:`Settings` from its flags and
calls into the package; every :class:`AxmonError` becomes a one-line message and exit code 1,
bad arguments exit 2 (argparse). Any other exception is a bug: one line naming the command and
the error, exit code 70; ``axmon -v`` adds the traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from rich.text import Text

from processor.cli import alerts, demo, health, kafka, logs, notify, pipeline, read, replay, serve, tail, traces
from processor.cli.options import Handler
from processor.cli.render import err_console
from processor.errors import AxmonError

EXIT_SOFTWARE = 70
"""Exit code of an unexpected error (BSD ``EX_SOFTWARE``)."""


COMMAND_GROUPS = (
    kafka.register, pipeline.register, replay.register, tail.register, demo.register, read.register,
    alerts.register, health.register, serve.register, notify.register, traces.register, logs.register,
)
"""Each group registers its commands on the root parser, in the order ``axmon --help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="axmon",
        description="Event-sourced monitoring of workflow engines on Apache Kafka.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-vv: debug), and the traceback of an unexpected error")
    parser.add_argument("--version", action="version", version=f"axmon {package_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in COMMAND_GROUPS:
        register(commands)
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
