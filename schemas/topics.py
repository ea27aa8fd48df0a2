"""Topic names and message keys of the contract.

Source topics are keyed so that everything one fold needs meets in one partition: lifecycle
events by ``execution_id``, metric samples by their series (tenant, metric type, sorted labels).
Producers must place them with Kafka's default partitioner, murmur2 of the key bytes (Java,
aiokafka; librdkafka-based clients need ``partitioner=murmur2_random``); the worker forwards a
record found elsewhere to its murmur2 partition (:mod:`processor.folds.routing`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import orjson

DEFAULT_PREFIX = "axmon."


@dataclass(frozen=True, slots=True)
class Topics:
    """The topic names for one prefix (default ``axmon.``)."""

    prefix: str = DEFAULT_PREFIX

    @property
    def workflow_events(self) -> str:
        """Source: lifecycle events, key ``execution_id``."""
        return f"{self.prefix}workflow-events"

    @property
    def metrics(self) -> str:
        """Source: metric samples, key :func:`series_key`."""
        return f"{self.prefix}metrics"

    @property
    def logs(self) -> str:
        """Source: log records, key ``execution_id`` (else ``tenant_id``, else none)."""
        return f"{self.prefix}logs"

    @property
    def execution_state(self) -> str:
        """Derived, compacted: an execution with its steps after every change."""
        return f"{self.prefix}execution-state"

    @property
    def workflow_stats(self) -> str:
        """Derived, compacted: per-tenant workflow stats, key tenant_id."""
        return f"{self.prefix}workflow-stats"

    @property
    def metric_rollups(self) -> str:
        """Derived, compacted: a series' window aggregate, key series and window start."""
        return f"{self.prefix}metric-rollups"

    @property
    def dead_letter(self) -> str:
        """Input that could not be processed, with its reason and origin."""
        return f"{self.prefix}dead-letter"

    @property
    def stats_changes(self) -> str:
        """Internal to the processor: execution contributions to per-tenant stats, key tenant."""
        return f"{self.prefix}stats-changes"

    @property
    def alerts(self) -> str:
        """Alert transitions (pending, firing, acknowledged, resolved), key alert id."""
        return f"{self.prefix}alerts"

    @property
    def alert_acks(self) -> str:
        """Acknowledgements of alerts, key alert id, on the partition of the alert's series."""
        return f"{self.prefix}alert-acks"

    @property
    def liveness_ticks(self) -> str:
        """Internal to the processor: wall-clock ticks, one per partition, that run the
        liveness check of the executions in that partition."""
        return f"{self.prefix}liveness-ticks"

    @property
    def worker_status(self) -> str:
        """Derived, compacted: each worker process's heartbeat (state, restarts, last error,
        counters), key the worker's id ``host:pid``."""
        return f"{self.prefix}worker-status"

    @property
    def sources(self) -> tuple[str, str]:
        return (self.workflow_events, self.metrics)


def series_key(tenant_id: str | None, metric_type: str, labels: Mapping[str, str]) -> bytes:
    """The key of a metric series: canonical JSON ``[tenant, metric_type, [[k, v], ...]]``
    with labels sorted by name and a missing tenant as ``""``."""
    return orjson.dumps([tenant_id or "", metric_type, sorted(labels.items())])
