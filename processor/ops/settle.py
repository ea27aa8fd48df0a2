"""Has the pipeline caught up? The worker has committed everything on its source topics, and the
sink's database holds everything on the topics it reads."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from processor.runtime.admin import end_offsets, group_lag
from processor.store.db import DatabaseError, open_read_only
from processor.urls import DbLocation
from schemas.topics import Topics


@dataclass(frozen=True, slots=True)
class Backlog:
    worker: int
    """Records on the worker's source topics it has not committed."""
    sink: int
    """Records on the sink's topics not yet in the database."""
    ends: tuple[tuple[tuple[str, int], int], ...]
    """End offsets of the sink's topics when measured."""

    @property
    def empty(self) -> bool:
        return self.worker == 0 and self.sink == 0


def sink_topics(topics: Topics) -> list[str]:
    return [topics.execution_state, topics.metric_rollups, topics.dead_letter, topics.metrics, topics.alerts, topics.logs]


def stored_sink_offsets(db: DbLocation) -> dict[tuple[str, int], int]:
    if isinstance(db, Path) and not db.exists():
        return {}
    try:
        conn = open_read_only(db)
    except DatabaseError:  # not written yet
        return {}
    try:
        return {(r[0], r[1]): r[2] for r in conn.execute("SELECT topic, partition, next_offset FROM sink_offsets")}
    except sqlite3.OperationalError:
        return {}
    finally:
        conn.close()


async def backlog(bootstrap: str, topics: Topics, db: DbLocation) -> Backlog:
    worker = await group_lag(bootstrap, f"{topics.prefix}worker", [*topics.sources, topics.stats_changes])
    ends: dict[tuple[str, int], int] = {}
    for topic in sink_topics(topics):
        for p, o in (await end_offsets(bootstrap, topic)).items():
            ends[(topic, p)] = o
    stored = stored_sink_offsets(db)
    behind = sum(max(0, o - stored.get(tp, 0)) for tp, o in ends.items())
    return Backlog(sum(worker.values()), behind, tuple(sorted(ends.items())))


async def settled(bootstrap: str, topics: Topics, db: DbLocation, previous: Backlog | None) -> tuple[bool, Backlog]:
    """Whether nothing is left to do and the topics have not grown since ``previous`` (the
    worker publishes the last rollups of a window up to a second after its input)."""
    now = await backlog(bootstrap, topics, db)
    return now.empty and previous is not None and previous.empty and previous.ends == now.ends, now
