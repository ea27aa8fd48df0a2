"""Is a consumer stuck? Pure: fed with committed and end offsets over time.

A Faust worker has been seen to stop committing, or to commit one offset a second, with records
waiting and no error: after a restart with a backlog, and after the broker came back from a
restart (faust-streaming issue 523 describes the like). The causes found (records dropped at
the end of a recovery, a commit rule that crawls) are corrected (:mod:`processor.runtime.faust_patches`);
the watchdog stays for whatever else may hold a worker. It watches its own consumer group: when records wait on a partition and
no committed offset of the group has moved for ``timeout_s``, the worker restarts itself; the
tables recover from their changelogs and the folds skip what they had already applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

TopicPartitionKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Progress:
    """What a consumer group has committed and what waits for it, at one moment."""

    at_s: float
    committed: Mapping[TopicPartitionKey, int]
    ends: Mapping[TopicPartitionKey, int]

    @property
    def waiting(self) -> int:
        return sum(max(0, end - self.committed.get(tp, 0)) for tp, end in self.ends.items())


@dataclass(frozen=True, slots=True)
class StallState:
    """The group's committed offsets when last seen to move, and since when (``None``: nothing
    waits, or no observation yet)."""

    committed: Mapping[TopicPartitionKey, int] = field(default_factory=dict)
    since: float | None = None


def observe(state: StallState, progress: Progress) -> StallState:
    """The state after one observation. The whole group counts: while any of its committed
    offsets moves it is working (a busy worker may leave one partition waiting a long while),
    and a stuck consumer moves none."""
    committed = dict(progress.committed)
    if progress.waiting == 0:
        return StallState(committed, None)
    if state.since is None or committed != dict(state.committed):
        return StallState(committed, progress.at_s)
    return state


def stalled_for(state: StallState, now_s: float) -> float:
    """Seconds that records have waited while no committed offset of the group moved (0: none)."""
    return 0.0 if state.since is None else max(0.0, now_s - state.since)
