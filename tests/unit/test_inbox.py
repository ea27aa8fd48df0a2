"""The worker's inboxes (processor.runtime.inbox): what Faust's stream guaranteed about acks,
rebalances and back-pressure, on a stand-in for the app's consumer and flow control."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiokafka.errors import IllegalStateError
from faust.types import TP

from processor.runtime.inbox import INBOXES_ATTRIBUTE, Inbox


@dataclass
class Message:
    tp: tuple[str, int]  # aiokafka's TopicPartition in a real message: equal to Faust's TP, not one
    offset: int
    generation_id: int = 1
    tracked: bool = False

    @property
    def topic(self) -> str:
        return self.tp[0]

    @property
    def partition(self) -> int:
        return self.tp[1]


@dataclass
class Thread:
    sought: list[tuple[Any, int]] = field(default_factory=list)
    assigned: bool = True

    def seek(self, tp: Any, offset: int) -> None:
        if not self.assigned:
            raise IllegalStateError("No current assignment for partition")
        self.sought.append((tp, offset))


@dataclass
class Consumer:
    unacked: set[int] = field(default_factory=set)
    acked: list[int] = field(default_factory=list)
    paused: set[Any] = field(default_factory=set)
    _thread: Thread = field(default_factory=Thread)
    _read_offset: dict[Any, int] = field(default_factory=dict)

    def ack(self, message: Message) -> None:
        self.unacked.discard(id(message))
        self.acked.append(message.offset)

    def on_buffer_full(self, tp: Any) -> None:
        assert type(tp) is TP, "Faust's consumer asserts its own TP type (a crash of the fetch loop)"
        self.paused.add(tp)

    def on_buffer_drop(self, tp: Any) -> None:
        assert type(tp) is TP
        self.paused.discard(tp)


class Unacked(set):  # type: ignore[type-arg]
    def add(self, message: Any) -> None:  # holds ids: the stand-in messages are not hashable
        super().add(id(message))


class Flow:
    def __init__(self) -> None:
        self.active = True
        self.queues: list[Any] = []

    def is_active(self) -> bool:
        return self.active

    def manage_queue(self, queue: Any) -> None:
        self.queues.append(queue)

    def clear(self) -> None:
        for queue in self.queues:
            queue.clear()


class Monitor:
    def __init__(self) -> None:
        self.stream_inbound_time: dict[Any, float] = {}


class App:
    def __init__(self) -> None:
        self.consumer = Consumer(unacked=Unacked())
        self.flow_control = Flow()
        self.consumer_generation_id = 1
        self.monitor = Monitor()


PARTITION = ("t", 0)


def messages(offsets: range, generation: int = 1) -> list[Message]:
    return [Message(PARTITION, offset, generation) for offset in offsets]


async def _first(inbox: Inbox, max_records: int = 10, within_s: float = 0.01) -> tuple[list[Any], Any]:
    batches = inbox.batches(max_records, within_s)
    return await asyncio.wait_for(anext(batches), 5), batches


def test_a_batch_is_tracked_when_taken_and_acked_only_when_the_next_is_asked_for() -> None:
    async def run() -> None:
        app = App()
        inbox = Inbox.open(app, "t", high_water=100)
        for message in messages(range(5)):
            inbox.put(message)
        batch, batches = await _first(inbox)
        assert [m.offset for m in batch] == [0, 1, 2, 3, 4]
        assert all(m.tracked for m in batch) and len(app.consumer.unacked) == 5
        assert app.consumer.acked == []  # the agent still works on it: a rebalance waits for it
        assert app.monitor.stream_inbound_time.keys() == {TP("t", 0)}
        assert all(type(tp) is TP for tp in app.monitor.stream_inbound_time)
        inbox.put(Message(PARTITION, 5))
        second = await asyncio.wait_for(anext(batches), 5)
        assert app.consumer.acked == [0, 1, 2, 3, 4] and not app.consumer.unacked - {id(m) for m in second}
        await batches.aclose()  # the agent stops (or raises) with the second batch: never acked
        assert app.consumer.acked == [0, 1, 2, 3, 4]

    asyncio.run(run())


def test_a_batch_is_at_most_max_records_and_waits_within_for_more() -> None:
    async def run() -> None:
        app = App()
        inbox = Inbox.open(app, "t", high_water=100)
        for message in messages(range(25)):
            inbox.put(message)
        batch, batches = await _first(inbox, max_records=10)
        assert len(batch) == 10 and len(inbox) == 15
        second = await asyncio.wait_for(anext(batches), 5)
        assert [m.offset for m in second] == list(range(10, 20))

        late = Inbox.open(App(), "t", high_water=100)
        late.put(Message(PARTITION, 0))
        waiting = asyncio.ensure_future(_first(late, max_records=3, within_s=2.0))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # one record, far from full: waits for more within 2 s
        late.put(Message(PARTITION, 1))
        late.put(Message(PARTITION, 2))
        batch, _ = await asyncio.wait_for(waiting, 1.0)  # full: at once
        assert [m.offset for m in batch] == [0, 1, 2]

    asyncio.run(run())


def test_records_that_waited_while_the_agent_folded_are_taken_within_of_their_arrival() -> None:
    """``within_s`` counts from the first record's arrival, not from when the agent asks: what
    arrived while the agent folded the previous batch has waited already."""

    async def run() -> None:
        loop = asyncio.get_running_loop()
        inbox = Inbox.open(App(), "t", high_water=100)
        inbox.put(Message(PARTITION, 0))
        batches = inbox.batches(100, 0.3)
        asked = loop.time()
        first = await asyncio.wait_for(anext(batches), 5)
        assert [m.offset for m in first] == [0] and loop.time() - asked >= 0.29  # alone: it waited within_s
        inbox.put(Message(PARTITION, 1))
        await asyncio.sleep(0.4)  # the agent folds for longer than within_s
        asked = loop.time()
        second = await asyncio.wait_for(anext(batches), 5)
        assert [m.offset for m in second] == [1] and loop.time() - asked < 0.2  # at once
        inbox.put(Message(PARTITION, 2))
        await asyncio.sleep(0.1)  # folds for a third of within_s
        asked = loop.time()
        third = await asyncio.wait_for(anext(batches), 5)
        assert [m.offset for m in third] == [2] and 0.1 <= loop.time() - asked < 0.29  # the rest of within_s

    asyncio.run(run())


def _revoke(app: App) -> None:
    """Faust's revocation: the flow is suspended, then its queues are cleared."""
    app.flow_control.active = False
    app.flow_control.clear()


def _resume(app: App) -> None:
    """Faust's ``flow_control.resume`` at a rebalance's end: active first, then cleared."""
    app.flow_control.active = True
    app.flow_control.clear()


def test_a_revocation_clears_what_waits_and_the_sought_partition_starts_again_at_its_committed_offset() -> None:
    async def run() -> None:
        app = App()
        inbox = Inbox.open(app, "t", high_water=100)
        for message in messages(range(3)):
            inbox.put(message)
        _revoke(app)
        assert len(inbox) == 0 and inbox.dropped == 3
        app.consumer_generation_id = 2
        _resume(app)
        # perform_seek put the partition at its committed offset (1): later or not, all are taken
        assert all(inbox.put(message) for message in messages(range(1, 4), generation=2))
        batch, _ = await _first(inbox)
        assert [m.offset for m in batch] == [1, 2, 3]
        assert app.consumer._thread.sought == [] and inbox.refused == 0

    asyncio.run(run())


def test_records_fetched_after_the_seek_and_cleared_by_the_resume_are_fetched_again_before_any_later_one() -> None:
    async def run() -> None:
        app = App()
        inbox = Inbox.open(app, "t", high_water=100)
        for message in messages(range(10, 13)):  # fetched between perform_seek and flow_control.resume
            inbox.put(message)
        _resume(app)
        assert len(inbox) == 0 and inbox.dropped == 3
        assert not inbox.put(Message(PARTITION, 13)) and not inbox.admits(Message(PARTITION, 14))
        assert app.consumer._thread.sought == [(TP("t", 0), 10)]  # sought back once, not per record
        assert app.consumer._read_offset == {TP("t", 0): 10}
        assert inbox.refused == 2 and len(inbox) == 0
        assert all(inbox.put(message) for message in messages(range(10, 15)))  # fetched again
        batch, _ = await _first(inbox)
        assert [m.offset for m in batch] == [10, 11, 12, 13, 14]
        assert inbox.admits(Message(PARTITION, 20))  # back in order: no more refusals

        other = App()
        gone = Inbox.open(other, "t", high_water=100)
        gone.put(Message(PARTITION, 5))
        _resume(other)
        other.consumer._thread.assigned = False  # revoked meanwhile: its next owner starts at the committed offset
        assert not gone.admits(Message(PARTITION, 6))
        assert gone.admits(Message(PARTITION, 7))

    asyncio.run(run())


def test_records_of_an_old_generation_are_dropped_with_what_follows_them_on_their_partition() -> None:
    async def run() -> None:
        app = App()
        inbox = Inbox.open(app, "t", high_water=100)
        inbox.put(Message(("t", 1), 0, 1))
        for message in messages(range(4, 6), generation=1) + messages(range(2, 7), generation=2):
            inbox.put(message)
        app.consumer_generation_id = 2
        batch, _ = await _first(inbox)
        # the old generation's 4 and 5 dropped: of the new one's, 2, 3 and 4 come before them, 5 and 6 after
        assert [(m.partition, m.offset) for m in batch] == [(0, 2), (0, 3), (0, 4)]
        assert inbox.dropped == 1 + 2 + 2
        assert not inbox.put(Message(PARTITION, 7))
        assert app.consumer._thread.sought == [(TP("t", 0), 4)]

        suspended = App()
        paused = Inbox.open(suspended, "t", high_water=100)
        for message in messages(range(3)):
            paused.put(message)
        suspended.flow_control.active = False  # a take while the flow is suspended drops its batch
        assert paused._take(2) == [] and paused.dropped == 3  # and the record waiting behind it
        _revoke(suspended)  # the revocation that follows forgets it: the seek to committed refetches all
        suspended.flow_control.active = True
        assert paused.admits(Message(PARTITION, 9))

    asyncio.run(run())


def test_a_partition_with_high_water_records_waiting_is_paused_until_half_drain() -> None:
    async def run() -> None:
        app = App()
        inbox = Inbox.open(app, "t", high_water=8)
        for message in messages(range(7)):
            inbox.put(message)
        assert not app.consumer.paused
        inbox.put(Message(PARTITION, 7))
        assert app.consumer.paused == {TP("t", 0)}
        batch, _ = await _first(inbox, max_records=4)
        assert len(inbox) == 4 and app.consumer.paused == {TP("t", 0)}  # 4 wait: not below half yet
        inbox.put(Message(PARTITION, 8))
        await _first(inbox, max_records=2)
        assert len(inbox) == 3 and not app.consumer.paused

    asyncio.run(run())


def test_open_registers_the_inbox_once_per_topic_with_the_app_and_its_flow_control() -> None:
    app = App()
    inbox = Inbox.open(app, "t", high_water=8)
    assert Inbox.open(app, "t", high_water=8) is inbox
    assert getattr(app, INBOXES_ATTRIBUTE) == {"t": inbox}
    assert app.flow_control.queues == [inbox]
