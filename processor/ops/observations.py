"""What ``axmon health`` observes, as frozen records: the broker's metadata and offsets, the
database's record of the sink, the workers' heartbeats. :mod:`processor.ops.health_probe`
gathers them; :mod:`processor.ops.health` judges them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from processor.runtime.worker_status import WorkerStatus

TopicPartitionKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Group:
    """A consumer group axmon runs: its role (``worker``, ``sink``), its id and its topics."""

    role: str
    group_id: str
    topics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class KafkaObservation:
    """What the broker answered. ``error`` set: it did not answer (nothing else is known)."""

    bootstrap: str | None
    error: str | None = None
    metadata_ms: float | None = None
    """How long the metadata request took."""
    partitions: Mapping[str, int] = field(default_factory=dict)
    """Partition count per contract topic that exists."""
    ends: Mapping[TopicPartitionKey, int] = field(default_factory=dict)
    """End offsets of the groups' topics."""
    committed: Mapping[str, Mapping[TopicPartitionKey, int]] = field(default_factory=dict)
    """Per group id: the committed offsets (a partition without a commit is absent)."""
    offsets_error: str | None = None
    """The broker answered the metadata request but not the offset requests."""

    @property
    def reachable(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class DatabaseObservation:
    path: str
    exists: bool
    error: str | None = None
    """It could not be opened or read (corrupt, not a database, not axmon's)."""
    schema_version: int | None = None
    quick_check: tuple[str, ...] = ()
    """``PRAGMA quick_check``'s rows: ``("ok",)`` when fine."""
    size_bytes: int | None = None
    wal_bytes: int | None = None
    sink_offsets: Mapping[TopicPartitionKey, int] | None = None
    """The sink's stored next offsets; ``None`` when there is no ``sink_offsets`` table."""
    last_write_ms: int | None = None
    """When the sink last wrote a batch (epoch ms)."""
    last_write_source: str | None = None
    """``sink_status`` (recorded by the sink) or ``file mtime`` (a database written before
    the sink recorded it)."""


@dataclass(frozen=True, slots=True)
class WorkersObservation:
    statuses: tuple[WorkerStatus, ...] = ()
    """The latest record of every worker id in ``<prefix>worker-status``."""
    error: str | None = None
    """The topic could not be read (``None``: read, or the broker is unreachable)."""
    topic_missing: bool = False


@dataclass(frozen=True, slots=True)
class Observations:
    now_ms: int
    topic_prefix: str
    expected_topics: tuple[str, ...]
    """The contract's topics (``processor.runtime.admin.contract_topics``)."""
    source_topics: tuple[str, ...]
    """Those without which producers have nowhere to publish."""
    groups: tuple[Group, ...]
    kafka: KafkaObservation
    database: DatabaseObservation
    expected_schema_version: int
    workers: WorkersObservation = field(default_factory=lambda: WorkersObservation())
    """The workers' latest heartbeats (``<prefix>worker-status``)."""


# -- the report ---------------------------------------------------------------------------------
