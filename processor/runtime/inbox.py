"""A source topic's records handed to its agent in batches, past Faust's per-message stream.

Faust delivers every record through a chain that costs about 0.1 ms of CPU per record here
(``../shared/FAUST.md``): the fetch loop waits on two tasks per record (``Service.wait_first``),
the conductor takes a lock, awaits flow control and the producer buffer, wraps the record in an
``Event`` and queues it, and the stream takes it back out with its sensors, processors and a
``take_events`` buffer filled by a second task. The worker's agents need none of it: they fold
raw bytes, write their tables themselves (:class:`~processor.runtime.table_store.TableStore`)
and ack a batch at once.

So for the topics an :class:`Inbox` is opened for, the consumer's fetch loop (patched by
:func:`processor.runtime.faust_patches.patch_faust_inboxes`) appends each record here, and the
agent takes them in batches. What Faust's path guaranteed is kept:

- **Acks and commits.** A record is tracked as unacknowledged when its batch is taken and
  acknowledged (``Consumer.ack``, Faust's commit bookkeeping) only after the agent's body has
  finished with the batch; a body that raises acks nothing. A rebalance waits for the taken
  batch (``Consumer.wait_empty``), as for a stream's event.
- **Rebalances.** Faust's flow control clears the inbox when partitions are revoked (it is
  managed like a stream's queue); a record is dropped, neither processed nor acked, when the
  flow is suspended while it is fetched or taken, or when it was fetched in an earlier
  consumer generation: the partition is sought to its committed offset and fetches it again.
- **Back-pressure.** A partition with ``high_water`` records waiting stops being fetched until
  fewer than half wait (Faust's ``on_buffer_full``/``on_buffer_drop``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from aiokafka.errors import IllegalStateError
from faust.types import TP

INBOXES_ATTRIBUTE = "_axmon_inboxes"
"""The app's attribute mapping a topic name to its :class:`Inbox` (read by the fetch loop)."""

SEEK_AGAIN_AFTER_S = 1.0
"""How long a partition sought back waits for its dropped offset before it is sought again."""


class Inbox:
    """The records of one topic waiting for its agent (one agent, concurrency 1)."""

    def __init__(self, app: Any, topic: str, *, high_water: int) -> None:
        self.app = app
        self.topic = topic
        self.high_water = high_water
        self._waiting: list[Any] = []
        self._paused: set[Any] = set()
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()
        self._full_at = 1
        self._first_at = 0.0
        """When the oldest record waiting arrived (``time.monotonic()``; for what a take left: the take)."""
        self.dropped = 0
        """Records dropped unprocessed (fetched before a rebalance): fetched again later."""
        self.refused = 0
        """Records refused by :meth:`admits` (a partition's later offsets after a drop)."""
        self._resume_at: dict[TP, int] = {}
        """Per partition whose records were dropped, the first offset dropped: until it is
        fetched again, that partition's later records are refused."""
        self._sought_at: dict[TP, float] = {}

    @classmethod
    def open(cls, app: Any, topic: str, *, high_water: int) -> Inbox:
        """The inbox of ``topic`` (the one already open, if any): the fetch loop hands it that
        topic's records from now on."""
        inboxes: dict[str, Inbox] = app.__dict__.setdefault(INBOXES_ATTRIBUTE, {})
        if topic in inboxes:
            return inboxes[topic]
        inbox = inboxes[topic] = cls(app, topic, high_water=high_water)
        app.flow_control.manage_queue(inbox)  # cleared with the streams' queues at a revocation
        return inbox

    def __len__(self) -> int:
        return len(self._waiting)

    # -- the fetch loop's side ----------------------------------------------------------------

    def admits(self, message: Any) -> bool:
        """Whether a fetched record may be put here now (the fetch loop asks first, never awaits).

        After records of a partition were dropped, its records must still reach the agent in
        offset order, from the first one dropped: folding a later one first would judge lateness
        and windows differently from a single pass, and Faust would commit past the dropped
        ones once the later ones are acked. A rebalance seeks every partition to its committed
        offset, but its end (``flow_control.resume``) clears this inbox after that seek, so the
        records fetched in between are dropped with their offsets already read. So a later
        record is refused and the partition is sought back to the first offset dropped (again
        every second while only later ones arrive); the first record at or before it puts the
        partition back in order."""
        if not self._resume_at:
            return True
        tp = TP(message.topic, message.partition)
        resume_at = self._resume_at.get(tp)
        if resume_at is None:
            return True
        if message.offset <= resume_at:
            del self._resume_at[tp]
            self._sought_at.pop(tp, None)
            return True
        self.refused += 1
        now = time.monotonic()
        if now - self._sought_at.get(tp, -1e9) >= SEEK_AGAIN_AFTER_S:
            self._sought_at[tp] = now
            self._seek(tp, resume_at)
        return False

    def put(self, message: Any) -> bool:
        """A record fetched (called by the fetch loop, never awaits); False if it is refused
        (:meth:`admits`): the fetch loop must then treat it as not read."""
        if self._resume_at and not self.admits(message):
            return False
        waiting = self._waiting
        if not waiting:
            self._first_at = time.monotonic()
        waiting.append(message)
        self._arrived.set()
        if len(waiting) >= self._full_at:
            self._full.set()
        if len(waiting) >= self.high_water:
            tp = TP(message.topic, message.partition)  # Faust's own type: its consumer asserts it (message.tp is aiokafka's)
            if tp not in self._paused:
                self._paused.add(tp)
                self.app.consumer.on_buffer_full(tp)
        return True

    def clear(self) -> None:
        """Drop what waits (Faust's flow control: when partitions are revoked, and when the flow
        resumes at a rebalance's end).

        At a revocation (the flow suspended) every partition is sought to its committed offset
        before records flow again, and nothing past a dropped record was acked (records are
        taken in order), so nothing is remembered. At a resume the partitions were already
        sought, and the records dropped may be ones fetched after that seek: each partition's
        first dropped offset is remembered, for :meth:`admits`."""
        if self.app.flow_control.is_active():
            self._remember_dropped(self._waiting)
        else:
            self._resume_at.clear()
            self._sought_at.clear()
        self.dropped += len(self._waiting)
        self._waiting.clear()
        self._resume_fetching()

    # -- the agent's side ---------------------------------------------------------------------

    async def batches(self, max_records: int, within_s: float) -> AsyncIterator[list[Any]]:
        """Batches of up to ``max_records`` records, each once ``max_records`` wait or
        ``within_s`` after the first of it arrived (records that arrived while the caller
        folded the previous batch have waited that long already); each acked once the caller
        asks for the next (a caller that raises acks nothing)."""
        while True:
            if not self._waiting:
                self._arrived.clear()
                await self._arrived.wait()
            left = self._first_at + within_s - time.monotonic()
            if len(self._waiting) < max_records and left > 0:
                self._full_at = max_records
                self._full.clear()
                try:
                    await asyncio.wait_for(self._full.wait(), left)
                except TimeoutError:
                    pass
            batch = self._take(max_records)
            if batch:
                yield batch
                self._ack(batch)

    def _take(self, max_records: int) -> list[Any]:
        waiting = self._waiting
        taken, self._waiting = waiting[:max_records], waiting[max_records:]
        if self._waiting:
            self._first_at = time.monotonic()  # they arrived earlier: they wait within_s at most from now
        if len(self._waiting) < self.high_water // 2:
            self._resume_fetching()
        app = self.app
        if not app.flow_control.is_active():
            self._drop(taken)
            return []
        generation = app.consumer_generation_id
        batch = [message for message in taken if message.generation_id == generation]
        if len(batch) < len(taken):
            self._drop([message for message in taken if message.generation_id != generation])
            if self._resume_at:  # what follows a dropped record on its partition waits for it
                kept = [message for message in batch if self._in_order(message)]
                self.dropped += len(batch) - len(kept)
                batch = kept
        unacked = app.consumer.unacked
        for message in batch:
            message.tracked = True
            unacked.add(message)
        inbound = app.monitor.stream_inbound_time  # Faust's slow-processing check reads it
        now = time.monotonic()
        for topic, partition in {(message.topic, message.partition) for message in batch}:
            inbound[TP(topic, partition)] = now
        return batch

    def _drop(self, dropped: list[Any]) -> None:
        """Drop taken records unprocessed, and the records waiting behind them on their
        partitions (they come again after the dropped ones, in order)."""
        self._remember_dropped(dropped)
        self.dropped += len(dropped)
        kept = [message for message in self._waiting if self._in_order(message)]
        self.dropped += len(self._waiting) - len(kept)
        self._waiting = kept

    def _in_order(self, message: Any) -> bool:
        resume_at = self._resume_at.get(TP(message.topic, message.partition))
        return resume_at is None or message.offset <= resume_at

    def _remember_dropped(self, dropped: list[Any]) -> None:
        resume_at = self._resume_at
        for message in dropped:
            tp = TP(message.topic, message.partition)
            known = resume_at.get(tp)
            if known is None or message.offset < known:
                resume_at[tp] = message.offset

    def _seek(self, tp: TP, offset: int) -> None:
        """Fetch ``tp`` again from ``offset`` (Faust's ``Consumer.seek`` without its await: the
        fetch loop calls this)."""
        consumer = self.app.consumer
        try:
            consumer._thread.seek(tp, offset)
        except IllegalStateError:  # not assigned any more: its next owner starts at the committed offset
            self._resume_at.pop(tp, None)
            self._sought_at.pop(tp, None)
            return
        consumer._read_offset[tp] = offset

    def _ack(self, batch: list[Any]) -> None:
        ack = self.app.consumer.ack
        for message in batch:
            ack(message)

    def _resume_fetching(self) -> None:
        if self._paused:
            consumer = self.app.consumer
            for tp in self._paused:
                consumer.on_buffer_drop(tp)
            self._paused.clear()
