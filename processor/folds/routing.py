"""Which partition a source record belongs to, and what happens to one that is elsewhere. Pure.

Every fold needs all the records of its key in one partition, read in offset order: that is
what makes a partition's stream time, and so every lateness, eviction and window decision, the
same live and in replay. Kafka clients do not share one default partitioner (Java and aiokafka
hash keys with murmur2, librdkafka-based clients default to CRC32, some services pick
partitions themselves), so the contract fixes it: a record's *home* is the murmur2 partition of
its contract key, the key computed from the event itself (``execution_id`` for lifecycle
events, :func:`~schemas.topics.series_key` for samples), whatever key (or none) the record was
produced with.

A record that is not at home is *misrouted*: it is not folded where it is. The cores return a
copy of it for the same source topic, keyed with the contract key, on its home partition, with
a header naming the original (:data:`~processor.folds.records.FORWARDED_FROM`); the copy is folded
where it lands, at its own offset. The decision is a function of the event and the partition
count only, so replay and the sink, which read the topics, skip the same originals and find
the same copies at the same offsets: live equals replay even for decisions that depend on
order. Forwarding is at-least-once (a crash before the commit forwards again); a second copy
is a duplicate by event id, and the lifecycle core recognises it by the original's offset.
"""

from __future__ import annotations

import logging

from processor.folds.records import Emit, Origin, Stream, forwarded_header
from processor.folds.windows import sample_series
from schemas.events import Event, LifecycleEvent, MetricRecorded
from schemas.partitioning import home_partition

log = logging.getLogger(__name__)


def contract_key(event: Event) -> bytes:
    """The message key the contract gives ``event``."""
    if isinstance(event, LifecycleEvent):
        return event.execution_id.encode()
    if isinstance(event, MetricRecorded):
        return sample_series(event)[1].encode()  # schemas.topics.series_key, worked out once per sample
    raise TypeError(f"no contract key for {type(event).__name__}")


def home_of(event: Event, partitions: int) -> int:
    """The partition ``event`` belongs to among ``partitions``."""
    return home_partition(contract_key(event), partitions)


def _original_source(origin: Origin) -> str | None:
    first = origin.forwarded_from
    return None if first is None else f"{first.topic}/{first.partition}"


def copy_seen(applied: dict[str, int] | None, origin: Origin) -> bool:
    """``origin`` is a copy of an original at or below one whose copy was applied already;
    ``applied``: per original source ``"topic/partition"``, the offset of the last original
    whose copy was applied. Copies of one source reach their home in the source's offset
    order (one agent forwards them in order; the producer sends one batch per partition at a
    time), so a copy at or below that mark was met before (an original forwarded again after
    a crash of the forwarding side)."""
    source = _original_source(origin)
    return source is not None and applied is not None and origin.first.offset <= applied.get(source, -1)


def copies_applied(applied: dict[str, int] | None, origin: Origin) -> dict[str, int] | None:
    """``applied`` after applying the record at ``origin``."""
    source = _original_source(origin)
    if source is None:
        return applied
    return {**(applied or {}), source: origin.first.offset}


class Router:
    """Sends misrouted records home, counts them and logs once per producer ``source``."""

    def __init__(self, partitions: int | None) -> None:
        self.partitions = partitions
        """The source topic's partition count; ``None``: every record is taken to be at home
        (a single partition, or a caller that routed already)."""
        self._warned: set[str | None] = set()

    def misrouted(self, event: Event, partition: int) -> bool:
        return self.partitions is not None and home_of(event, self.partitions) != partition

    def forward(self, stream: Stream, event: Event, origin: Origin, raw: bytes, key: bytes | None) -> Emit:
        """The copy of a misrouted record for its home partition."""
        home = home_of(event, self.partitions or 1)
        if event.source not in self._warned:
            self._warned.add(event.source)
            log.warning(
                "source %r produces records on partitions their key does not hash to (e.g. key %r on %s/%d, "
                "murmur2 says %d): forwarding them there; give that producer Kafka's default partitioner "
                "(librdkafka clients: partitioner=murmur2_random)",
                event.source, key, origin.topic, origin.partition, home,
            )
        return Emit(stream, contract_key(event), raw, partition=home, headers=(forwarded_header(origin),))
