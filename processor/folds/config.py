"""The folds' defaults, in one place: the settings, the CLI's help and replay take them from here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FoldConfig:
    window_ms: int = 60_000
    """Tumbling window size of metric rollups."""
    grace_ms: int = 300_000
    """How long after its end (in stream time) a window still takes samples."""
    execution_horizon_ms: int = 3_600_000
    """How long (in stream time) a finished execution stays in the table for late step events
    and duplicates; then it is evicted (its last state is in the sink already)."""
    sweep_interval_ms: int = 10_000
    """Evict and close whenever stream time crosses a multiple of this."""
    marker_ms: int = 3_600_000
    """How long (in stream time) a late marker and a closed window's final rollup stay. A
    redelivery must not reach further back than this, so the worker must commit at least once
    per this much stream time (it commits every second)."""
    evicted_keep_ms: int = 6 * 3_600_000
    """How long (in stream time) an evicted execution's marker keeps its final fold state, so
    that a late event for it rehydrates the whole execution; also how far behind (beyond the
    horizon) an event of an execution the worker holds nothing for is still taken (see
    :class:`LifecycleCore`). At least ``marker_ms``."""

    @property
    def derived_keep_ms(self) -> int:
        """How long (in the derived lane's stream time) a closed window of a derived series
        keeps its whole state, to take the derived samples that come late: the execution
        horizon (lifecycle events are accepted up to that far behind their partition's stream
        time, or ``lifecycle_retention_ms`` when it is rehydrated or never seen) plus
        ``marker_ms`` (for the skew between lifecycle partitions)."""
        return self.execution_horizon_ms + self.evicted_keep_ms + self.marker_ms

    @property
    def lifecycle_retention_ms(self) -> int:
        """How far behind its partition's stream time a lifecycle event of an execution the
        worker holds nothing for is still folded (older: dead-lettered as ``late``)."""
        return self.execution_horizon_ms + self.evicted_keep_ms
