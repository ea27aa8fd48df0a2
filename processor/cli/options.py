"""What the commands share: the one :class:`Settings` built from the flags, the broker to talk
to, the argparse types that validate a flag, and the option blocks several commands take.

Each is written once here; a command module adds the blocks it needs and never defines its own
copy. An argparse type raises :class:`argparse.ArgumentTypeError`, which argparse turns into a
usage line and exit code 2.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeAlias

from processor.cli.render import err_console
from processor.errors import ConfigError
from processor.folds.config import FoldConfig
from processor.folds.rules import RuleSet, load_rules
from processor.folds.timeparse import parse_duration_ms
from processor.ops import localbroker
from processor.runtime.metrics_export import MetricsAddress
from processor.settings import ENV_BOOTSTRAP, ENV_DB, ENV_KAFKA_DIR, Settings
from processor.urls import db_location

FOLD_DEFAULTS = FoldConfig()
"""The folds' defaults, shown in the help as the folds have them."""

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""What ``add_subparsers`` returns: where a command module registers its commands."""
Handler = Callable[[argparse.Namespace], int]
"""A command: the parsed flags in, the exit code out (set as the parser's ``handler``)."""

# -- settings and the broker -----------------------------------------------------------------------


def settings_of(args: argparse.Namespace) -> Settings:
    """The one :class:`Settings` of a command: its flags, then the environment, then defaults."""
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
        "compression": getattr(args, "compression", None),
        "state_dir": getattr(args, "state_dir", None),
    }
    return Settings.load(overrides)


def rules_of(args: argparse.Namespace) -> RuleSet:
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
        return start_local_broker(settings.kafka_dir).bootstrap
    raise ConfigError(
        "no Kafka broker: start the local one with 'axmon kafka start', "
        f"or pass --bootstrap HOST:PORT (or set {ENV_BOOTSTRAP})"
    )


def start_local_broker(data_dir: Path) -> localbroker.BrokerStatus:
    """Start the local broker (provisioning it on first use), its progress on a spinner."""
    with err_console.status("starting the local Kafka broker") as spinner:
        status = localbroker.start(
            data_dir, on_progress=lambda message: spinner.update(message)
        )
    return status


# -- argparse types ----------------------------------------------------------------------------------


def positive(text: str) -> int:
    """A whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def count(text: str) -> int:
    """A whole number of at least 0; ``_`` and ``,`` may group its digits (``10_000``, ``10,000``)."""
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must not be negative")
    return value


def positive_float(text: str) -> float:
    """A number above 0 (``inf`` included)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be positive")
    return value


def seconds(text: str) -> float:
    """A finite number of seconds above 0."""
    value = _finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be more than 0")
    return value


def seconds_or_zero(text: str) -> float:
    """A finite number of seconds, 0 or more."""
    value = _finite(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must not be negative")
    return value


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def metrics_address(text: str) -> MetricsAddress:
    """``PORT`` (of 127.0.0.1) or ``HOST:PORT``."""
    try:
        return MetricsAddress.parse(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def duration_ms(text: str) -> int:
    """A duration (``30s``, ``15m``, ms) or ``0``."""
    if text.strip() == "0":
        return 0
    try:
        return parse_duration_ms(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# -- option blocks -----------------------------------------------------------------------------------


def add_kafka_options(parser: argparse.ArgumentParser) -> None:
    """``--bootstrap``, ``--topic-prefix``, ``--partitions``: which broker and which topics."""
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


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    """``--data-dir``: where the local broker keeps its data."""
    parser.add_argument(
        "--data-dir", type=Path, metavar="DIR",
        help=f"the local broker's data directory (env {ENV_KAFKA_DIR}; "
        "default ~/.local/share/axmon/kafka)",
    )


def add_broker_options(parser: argparse.ArgumentParser) -> None:
    """The Kafka options and ``--data-dir``: what every command that talks to a broker takes."""
    add_kafka_options(parser)
    add_data_dir(parser)


def add_db(parser: argparse.ArgumentParser) -> None:
    """``--db``: the database a command writes (or serves)."""
    parser.add_argument("--db", type=db_location, metavar="PATH|URL",
                        help="the SQLite database, or a postgresql:// URL (env AXMON_DB; default ./axmon.db)")


def add_read_options(parser: argparse.ArgumentParser) -> None:
    """``--db`` and ``--json``: what every command that reads the database takes."""
    parser.add_argument("--db", type=db_location, metavar="PATH|URL",
                        help=f"the database: a SQLite file or a postgresql:// URL (env {ENV_DB}; default ./axmon.db)")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout (stable keys, epoch ms)")


def add_fold_options(parser: argparse.ArgumentParser, *, same_as_worker: bool = False) -> None:
    """The settings that decide what state is: the worker, the sink and replay must agree."""
    note = "; must match the worker's" if same_as_worker else ""
    parser.add_argument("--window-ms", type=positive, metavar="MS", help=f"metric window size{note} (default {FOLD_DEFAULTS.window_ms})")
    parser.add_argument("--grace-ms", type=int, metavar="MS",
                        help=f"lateness allowed after a window ends, in stream time{note} (default {FOLD_DEFAULTS.grace_ms})")
    parser.add_argument("--horizon-ms", type=positive, metavar="MS",
                        help=f"how long finished executions stay in the worker, in stream time{note} (default {FOLD_DEFAULTS.execution_horizon_ms})")


def add_metrics_port(parser: argparse.ArgumentParser) -> None:
    """``--metrics-port``: the Prometheus endpoint of a long-running process."""
    parser.add_argument("--metrics-port", type=metrics_address, metavar="[HOST:]PORT",
                        help="serve Prometheus metrics at /metrics on PORT (of 127.0.0.1 unless HOST is given)")


def add_retention(parser: argparse.ArgumentParser) -> None:
    """How long the database keeps executions, raw samples and rollups."""
    parser.add_argument("--executions-days", type=positive, default=30, metavar="N",
                        help="keep finished executions N days (default 30)")
    parser.add_argument("--samples-days", type=positive, default=90, metavar="N",
                        help="keep raw metric samples N days (default 90)")
    parser.add_argument("--rollups-days", type=positive, default=400, metavar="N",
                        help="keep metric rollups N days (default 400)")
