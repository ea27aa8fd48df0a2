"""The one settings object: built once from flags, then environment, then defaults.

Nothing deeper in the code reads the environment; it is handed a :class:`Settings`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from processor.errors import ConfigError
from processor.folds.config import FoldConfig
from processor.urls import DbLocation, check_webhook_url, db_location
from schemas.topics import Topics

ENV_BOOTSTRAP = "AXMON_BOOTSTRAP"
ENV_KAFKA_DIR = "AXMON_KAFKA_DIR"
ENV_TOPIC_PREFIX = "AXMON_TOPIC_PREFIX"
ENV_PARTITIONS = "AXMON_PARTITIONS"
ENV_DB = "AXMON_DB"
ENV_WEBHOOKS = "AXMON_WEBHOOKS"

_FOLD_DEFAULTS = FoldConfig()
"""The folds' defaults are :class:`FoldConfig`'s, written once there."""


def default_data_home() -> Path:
    """Where axmon keeps machine-local state (the local broker's data)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "axmon"


def default_cache_home() -> Path:
    """Where axmon caches downloads (the Kafka jars), once per machine."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "axmon"


COMPRESSIONS = ("none", "lz4", "gzip")
"""What the worker's producer may compress with (``Settings.compression``)."""


@dataclass(frozen=True, slots=True)
class Settings:
    bootstrap: str | None = None
    """``host:port[,host:port]`` of the Kafka broker; ``None``: the local broker's address."""
    kafka_dir: Path = field(default_factory=lambda: default_data_home() / "kafka")
    """Data directory of the local broker started by ``axmon kafka start``."""
    topic_prefix: str = "axmon."
    partitions: int = 4
    """Partition count of the source topics (and so of every co-partitioned table)."""
    db_path: DbLocation = Path("axmon.db")
    """The database: a SQLite file, or a ``postgresql://`` URL (see :mod:`processor.urls`)."""
    window_ms: int = _FOLD_DEFAULTS.window_ms
    """Tumbling window of metric rollups (event time)."""
    grace_ms: int = _FOLD_DEFAULTS.grace_ms
    """A window takes samples until stream time passes its end by this much."""
    execution_horizon_ms: int = _FOLD_DEFAULTS.execution_horizon_ms
    """A finished execution stays in the worker's table this long (stream time)."""
    rollup_interval_s: float = 1.0
    """How often changed windows are published (coalesced) and idle windows closed."""
    stale_after_ms: int = 900_000
    """An execution that is running or pending with no event this long (wall clock) is flagged
    stale and raises the built-in alert ``execution.stale`` (0: never)."""
    stall_timeout_s: float = 60.0
    """The worker restarts itself when records wait and its group commits nothing this long
    (0: never)."""
    batch_max: int = 2000
    """The most records a worker agent folds in one batch (each key is written once per batch)."""
    batch_ms: int = 20
    """How long a worker agent waits for its batch to fill: the latency a batch adds at most."""
    compression: str = "none"
    """How the worker's producer compresses what it writes: ``none``, ``lz4`` or ``gzip``. None by
    default: its records are small and its batches many (10 ms linger per partition), so lz4
    cost 6% of a busy worker's CPU here, per batch more than per byte (BENCHMARKS.md)."""
    state_dir: Path | None = None
    """The worker's own directory on its machine (Faust's data directory); ``None``:
    ``./<prefix>worker-data``. Each worker process on one machine needs its own."""
    webhooks: tuple[str, ...] = ()
    """Where ``axmon notify`` POSTs alert transitions (env ``AXMON_WEBHOOKS``: URLs separated
    by whitespace)."""

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix)

    @property
    def fold(self) -> FoldConfig:
        return FoldConfig(
            window_ms=self.window_ms,
            grace_ms=self.grace_ms,
            execution_horizon_ms=self.execution_horizon_ms,
        )

    @classmethod
    def load(
        cls, overrides: Mapping[str, object] | None = None, environ: Mapping[str, str] | None = None
    ) -> Settings:
        """Flags (``overrides``, ``None`` values ignored) win over the environment, which wins
        over the defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        if env.get(ENV_BOOTSTRAP):
            values["bootstrap"] = env[ENV_BOOTSTRAP]
        if env.get(ENV_KAFKA_DIR):
            values["kafka_dir"] = Path(env[ENV_KAFKA_DIR])
        if env.get(ENV_TOPIC_PREFIX):
            values["topic_prefix"] = env[ENV_TOPIC_PREFIX]
        if env.get(ENV_PARTITIONS):
            values["partitions"] = _positive_int(ENV_PARTITIONS, env[ENV_PARTITIONS])
        if env.get(ENV_DB):
            values["db_path"] = db_location(env[ENV_DB])
        if env.get(ENV_WEBHOOKS):
            values["webhooks"] = tuple(env[ENV_WEBHOOKS].split())
        for key, value in (overrides or {}).items():
            if value is not None:
                values[key] = value
        if isinstance(values.get("db_path"), str):
            values["db_path"] = db_location(str(values["db_path"]))
        settings = replace(cls(), **values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        for name in ("window_ms", "execution_horizon_ms"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be positive, not {getattr(self, name)}")
        if self.stale_after_ms < 0:
            raise ConfigError(f"stale_after_ms must not be negative, not {self.stale_after_ms}")
        if self.stall_timeout_s < 0:
            raise ConfigError(f"stall_timeout_s must not be negative, not {self.stall_timeout_s}")
        if self.batch_max < 1 or self.batch_ms < 1:
            raise ConfigError(f"batch_max and batch_ms must be positive, not {self.batch_max} and {self.batch_ms}")
        if self.compression not in COMPRESSIONS:
            raise ConfigError(f"compression must be one of {', '.join(COMPRESSIONS)}, not {self.compression!r}")
        if self.grace_ms < 0:
            raise ConfigError(f"grace_ms must not be negative, not {self.grace_ms}")
        if self.partitions < 1:
            raise ConfigError(f"partitions must be at least 1, not {self.partitions}")
        if not self.topic_prefix or any(c in self.topic_prefix for c in " /\\:"):
            raise ConfigError(f"topic prefix {self.topic_prefix!r} is not a valid Kafka topic prefix")
        if self.bootstrap is not None and not all(
            part.rpartition(":")[2].isdigit() for part in self.bootstrap.split(",")
        ):
            raise ConfigError(
                f"bootstrap {self.bootstrap!r} is not host:port[,host:port...]"
            )
        for url in self.webhooks:
            check_webhook_url(url)


def _positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < 1:
        raise ConfigError(f"{name}={raw!r} must be at least 1")
    return value
