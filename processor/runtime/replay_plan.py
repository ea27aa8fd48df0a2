"""The records of a replay (:mod:`processor.runtime.replay`): what to rebuild, how far it is,
and what it did."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from processor.errors import ConfigError
from processor.folds.rules import RuleSet

DEFAULT_WORKERS = min(2, os.cpu_count() or 1)
"""Fold processes of a replay (:mod:`processor.runtime.replay_workers`) unless told otherwise
(``axmon replay --workers``): two where there are two cores or more (the replaying process
writes, both fold; 1M and 3M events replay at about 30,000 events/s in 358 and 437 MiB on 2
cores, ``BENCHMARKS.md``), else one, in the calling process. Each more takes its own core and
its own memory, so more than two are asked for, not assumed."""


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    db_path: Path
    from_ms: int | None = None
    until_ms: int | None = None
    rules: RuleSet = RuleSet()
    """The worker's alert rules: alerts are rebuilt from the metrics and the acks."""
    workers: int = DEFAULT_WORKERS
    """Processes that fold the partitions, each its share (1: folded in the calling process;
    never more than the partitions)."""

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"a replay needs at least one worker, not {self.workers}")


@dataclass(frozen=True, slots=True)
class ReplayProgress:
    done: int
    total: int
    elapsed_s: float

    @property
    def rate(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass(frozen=True, slots=True)
class ReplayResult:
    records: int
    executions: int
    samples: int
    rollups: int
    dead_letters: int
    seconds: float
    workers: int = 1
    """Processes that folded (the calling process when 1)."""
    workers_peak_kib: int = 0
    """The peak RSS of the fold processes together (0 when the calling process folded)."""

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0
