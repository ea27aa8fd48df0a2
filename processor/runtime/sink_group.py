"""Several sinks on one PostgreSQL database: the consumer group shares the partitions out.

Each sink subscribes in the group ``<prefix>sink``; on every assignment :class:`Resync` seeks
each partition it was given to the offsets stored in the database (the beginning where none is
stored) and takes the raw-sample gate's stream times of those partitions from there too: the
database, not Kafka, says how far each partition is written. What a sink consumed before a
rebalance and had not written yet is dropped and consumed again from those offsets. Its writes
are fenced (:func:`processor.store.sinkdb.write_batch` with ``fenced``): a batch that starts
behind the stored offsets of one of its partitions (another sink wrote them meanwhile) is not
written, and the sink resyncs. So every partition's records are written once and in order, and
a tenant's counters move by each execution's delta once, whichever sink holds the partition.
"""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from processor.folds.raw_gate import RawSampleGate
from processor.store.conn import Connection
from processor.store.sinkdb import stored_derived_times, stored_offsets

log = logging.getLogger(__name__)


class Resync(ConsumerRebalanceListener):  # type: ignore[misc]
    """Moves the consumer and the gate to the database's offsets on each assignment."""

    def __init__(self, conn: Connection, consumer: AIOKafkaConsumer, gate: RawSampleGate, metrics_topic: str) -> None:
        self.conn = conn
        self.consumer = consumer
        self.gate = gate
        self.metrics_topic = metrics_topic
        self.assigned: frozenset[TopicPartition] = frozenset()
        self.changed = False
        """Set on each assignment: the batch being built holds records from before it."""

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Nothing to do: what was consumed and not written is consumed again by the next owner."""

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.assigned = frozenset(assigned)
        log.info("assigned %d partitions: %s", len(assigned), ", ".join(f"{tp.topic}/{tp.partition}" for tp in sorted(assigned)))
        self.changed = True
        self.resync()

    def resync(self) -> None:
        """Seek every assigned partition to its stored offset (0 when none is stored: an
        offset below the log's start begins at its start) and reset its gate times. Nothing
        here awaits, so no record is fetched from another position in between (the group's
        committed offsets, for one, are never used)."""
        offsets = stored_offsets(self.conn)
        derived = stored_derived_times(self.conn)
        for tp in sorted(self.assigned):
            stored = offsets.get((tp.topic, tp.partition))
            self.consumer.seek(tp, 0 if stored is None else stored[0])
            if tp.topic == self.metrics_topic:
                self.gate.stream_times[tp.partition] = 0 if stored is None else stored[1]
                self.gate.derived_times[tp.partition] = derived.get((tp.topic, tp.partition), 0)
