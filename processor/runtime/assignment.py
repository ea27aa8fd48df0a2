"""The partitions one worker process holds: what Faust last assigned it, per source topic.

Kept as one immutable mapping replaced whole on every rebalance (from the event loop), so that
the heartbeat thread reads a consistent value without a lock. Faust's rebalance is eager: it
revokes everything first (the worker then holds nothing) and assigns the new set after.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, cast


def held_of(assigned: Iterable[Any], topics: Iterable[str]) -> Mapping[str, tuple[int, ...]]:
    """``assigned`` (topic-partitions with ``topic`` and ``partition``) restricted to ``topics``,
    as topic -> sorted partitions (standby changelog partitions are not held)."""
    wanted = set(topics)
    held: dict[str, list[int]] = {}
    for tp in assigned:
        if tp.topic in wanted:
            held.setdefault(tp.topic, []).append(int(tp.partition))
    return MappingProxyType({topic: tuple(sorted(ps)) for topic, ps in sorted(held.items())})


class Assignment:
    """The source partitions a worker holds, kept up to date by Faust's rebalance signals."""

    def __init__(self, topics: Iterable[str], on_change: Callable[[], None] | None = None) -> None:
        self.topics = tuple(topics)
        self.held: Mapping[str, tuple[int, ...]] = MappingProxyType({})
        """Topic -> partitions, as of the last rebalance (empty while it holds none)."""
        self.on_change = on_change
        """Called after each change (the heartbeat publishes at once)."""

    def attach(self, app: Any) -> Assignment:
        app.on_partitions_assigned.connect(cast(Any, self._assigned))
        app.on_partitions_revoked.connect(cast(Any, self._revoked))
        return self

    def set(self, assigned: Iterable[Any]) -> None:
        self.held = held_of(assigned, self.topics)
        if self.on_change is not None:
            self.on_change()

    async def _assigned(self, app: Any, assigned: Any, **kwargs: Any) -> None:
        self.set(assigned)

    async def _revoked(self, app: Any, revoked: Any, **kwargs: Any) -> None:
        self.set(())
