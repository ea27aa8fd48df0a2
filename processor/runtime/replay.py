"""``axmon replay``: rebuild the database from the source topics.

The topics are the truth. Replay reads ``axmon.workflow-events`` and ``axmon.metrics`` partition
by partition in offset order, folds them with the same cores the worker uses (lateness and
window closing judged by the same per-partition stream time) and writes through the same sink
code (:mod:`processor.store.sinkdb`). No Faust and no derived topics on this path.

- Execution state is always rebuilt from the whole history: a state needs all its events.
- ``from_ms`` limits the metric samples (and windows) kept, by event time; skipping older
  samples changes no lateness decision about the samples kept (they are newer than anything
  skipped).
- ``until_ms`` reads the topics as they stood then: records appended after it are not read.
- Derived samples (``axmon.processor``) are read back from the metrics topic, not derived again.
- A record on a partition its key does not hash to is skipped: the live worker forwarded it to
  its home partition, where replay folds the copy at the same offset (:mod:`processor.folds.routing`).
- The partitions are folded by ``plan.workers`` processes, each its share, each exactly as one
  process would (:mod:`processor.runtime.replay_workers`); with one, in the calling process
  (:mod:`processor.runtime.replay_fold`).
- Memory holds what the folds work on; what only a late record reads again is spilled to
  ``<db>.partial-state`` (``-<k>`` per fold process; :mod:`processor.runtime.replay_state`),
  deleted at the end. Source records are read ``CHUNK_RECORDS`` at a time and written every
  ``FLUSH_EVERY``: nothing is kept per event.
- The new database is built as ``<db>.partial`` (without syncs, by a writer thread that writes
  one batch while the next is folded: :mod:`processor.runtime.replay_writer`) and renamed when
  complete; an interrupted replay leaves no broken file. ``swap_into`` then copies it into the
  live database with SQLite's backup API, in one transaction: readers see the old or the new
  database, never a mix.

The rebuilt database also records where a live sink should continue: the metrics topic's
offsets and stream times where replay stopped, and the derived topics' end offsets as they were
before replay began (records after those are snapshots that only bring it up to date).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from processor.errors import ConfigError
from processor.runtime.admin import partition_counts
from processor.runtime.collector import fewer_collections
from processor.runtime.replay_fold import Rebuild, read_sources
from processor.runtime.replay_plan import ReplayPlan, ReplayProgress, ReplayResult
from processor.runtime.replay_state import SpillFile
from processor.runtime.replay_workers import Folded, fold_in_workers, state_path
from processor.runtime.replay_writer import PartialDb
from processor.settings import Settings
from processor.store.db import open_for_writing

__all__ = ["ReplayPlan", "ReplayProgress", "ReplayResult", "replay", "summary", "swap_into"]


async def replay(
    settings: Settings,
    bootstrap: str,
    plan: ReplayPlan,
    *,
    on_progress: Callable[[ReplayProgress], None] | None = None,
) -> ReplayResult:
    """Rebuild ``plan.db_path`` from the source topics. It must not exist yet."""
    target = plan.db_path
    if target.exists():
        raise ConfigError(f"{target} exists: replay builds a new database (choose another --db, or --swap to replace the live one)")
    partial = target.with_name(target.name + ".partial")
    state = partial.with_name(partial.name + "-state")
    workers = 1
    for leftover in _sqlite_files(partial):
        leftover.unlink(missing_ok=True)
    began = time.monotonic()
    try:
        db = PartialDb(partial)
        try:
            counts = await partition_counts(bootstrap, list(settings.topics.sources))
            workers = max(1, min(plan.workers, max(counts.values(), default=1)))
            if workers > 1:
                folded = await fold_in_workers(settings, bootstrap, plan, workers, db, state, on_progress, began)
            else:
                folded = await _fold_here(settings, bootstrap, plan, db, state, on_progress, began)
            db.complete()
        finally:
            db.close()
        os.replace(partial, target)
    except BaseException:
        for leftover in [*_sqlite_files(partial), *(state_path(state, k) for k in range(workers))]:
            leftover.unlink(missing_ok=True)
        raise
    records, c, peak = folded
    return ReplayResult(records, c["executions"], c["samples"], c["rollups"], c["dead_letters"], time.monotonic() - began,
                        workers, peak)


async def _fold_here(settings: Settings, bootstrap: str, plan: ReplayPlan, db: PartialDb, state: Path,
                     on_progress: Callable[[ReplayProgress], None] | None, began: float) -> Folded:
    """Fold every source partition in this process."""
    spill = SpillFile(state)
    try:
        rebuild = Rebuild(settings, plan, db.write, spill)
        with fewer_collections():
            records = await read_sources(settings, bootstrap, plan, rebuild, on_progress, began)
    finally:
        spill.close()
    return records, rebuild.counts, 0


def _sqlite_files(path: Path) -> list[Path]:
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"), path.with_name(path.name + "-journal")]


def swap_into(new_db: Path, live_db: Path) -> None:
    """Copy ``new_db`` over ``live_db`` in one SQLite transaction (the backup API), so readers
    see either the old or the new database. Stop the live sink first: its offsets are replaced
    with the new database's, and it resumes from them."""
    source = sqlite3.connect(f"file:{new_db}?mode=ro", uri=True)
    try:
        dest = open_for_writing(live_db)
        try:
            if not isinstance(dest, sqlite3.Connection):
                raise TypeError("a replay swaps into a SQLite file")
            source.backup(dest)
        finally:
            dest.close()
    finally:
        source.close()


def summary(result: ReplayResult) -> dict[str, Any]:
    return {name: getattr(result, name) for name in ReplayResult.__slots__} | {"rate": result.rate}
