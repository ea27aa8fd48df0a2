"""Is a consumer stuck? Pure: fed with committed and end offsets over time.

A Faust worker has been seen to stop fetching or committing after the broker came back from a
restart, with no error and records waiting (faust-streaming issue 523 describes the same). The
worker watches its own consumer group: when records wait on a partition and no committed offset
of the group has moved for ``timeout_s``, it restarts itself; the tables recover from their
changelogs and the folds skip what they had already applied.
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
    """Per partition with records waiting: the committed offset last seen and since when it has
    not moved. A partition with nothing waiting is not in it."""

    since: Mapping[TopicPartitionKey, tuple[int, float]] = field(default_factory=dict)


def observe(state: StallState, progress: Progress) -> StallState:
    """The state after one observation."""
    since: dict[TopicPartitionKey, tuple[int, float]] = {}
    for tp, end in progress.ends.items():
        committed = progress.committed.get(tp, 0)
        if end <= committed:
            continue
        seen = state.since.get(tp)
        since[tp] = seen if seen is not None and seen[0] == committed else (committed, progress.at_s)
    return StallState(since)


def stalled_for(state: StallState, now_s: float) -> float:
    """Seconds that records have waited on some partition whose committed offset has not moved
    (0: none)."""
    return max((max(0.0, now_s - at) for _, at in state.since.values()), default=0.0)
