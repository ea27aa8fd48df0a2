"""The commit-offset rule and the corrections to Faust around it (processor.runtime.faust_patches)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from intervaltree import IntervalTree

from processor.runtime.commit_offsets import next_commit_offset
from processor.runtime.faust_patches import _new_offset, task_stacks


def test_the_run_of_acked_offsets_from_the_committed_one():
    assert next_commit_offset(10, [10, 11, 12, 14]) == 13


def test_duplicates_do_not_end_the_run():
    """Faust's own rule commits one offset per commit interval here."""
    acked = [o for o in range(26, 60) for _ in (0, 1)] + list(range(60, 1200))
    assert next_commit_offset(26, acked) == 1200


def test_a_missing_first_offset_commits_nothing():
    """Faust's own rule lets ``min(acked) - committed == 1`` through, past offset 10."""
    assert next_commit_offset(10, [11, 12, 13]) is None


def test_gaps_are_offsets_that_never_come():
    assert next_commit_offset(10, [10, 11, 15, 16], gaps=[(12, 15)]) == 17
    assert next_commit_offset(10, [10, 11, 16], gaps=[(12, 15)]) == 12 + 3


def test_nothing_new_is_none():
    assert next_commit_offset(10, []) is None
    assert next_commit_offset(10, [5, 6, 7]) is None


def test_without_a_committed_offset_the_run_starts_at_the_smallest():
    assert next_commit_offset(None, [7, 5, 6, 9]) == 8


@given(
    committed=st.integers(0, 50),
    acked=st.lists(st.integers(0, 120), max_size=200),
    gaps=st.lists(st.tuples(st.integers(0, 120), st.integers(1, 10)), max_size=5),
)
def test_every_offset_below_the_commit_is_done_and_the_next_is_not(committed: int, acked: list[int], gaps: list[tuple[int, int]]):
    spans = [(begin, begin + length) for begin, length in gaps]
    done = set(acked) | {o for begin, end in spans for o in range(begin, end)}
    new = next_commit_offset(committed, acked, spans)
    if new is None:
        assert committed not in done or not set(acked)
    else:
        assert new > committed
        assert all(o in done for o in range(committed, new))
        assert new not in done


def _consumer(committed: int | None, acked: list[int], gaps: tuple[tuple[int, int], ...] = ()) -> Any:
    tree = IntervalTree()
    for begin, end in gaps:
        tree.addi(begin, end)
    return SimpleNamespace(
        _acked=defaultdict(list, {"tp": list(acked)}),
        _acked_index=defaultdict(set, {"tp": set(acked)}),
        _committed_offset=defaultdict(lambda: None, {"tp": committed}),
        _gap=defaultdict(IntervalTree, {"tp": tree} if gaps else {}),
    )


def test_the_patched_consumer_prunes_what_was_committed_and_keeps_the_rest():
    consumer = _consumer(10, [10, 11, 12, 14, 15])
    assert _new_offset(consumer, "tp") == 13
    consumer._committed_offset["tp"] = 13  # what Faust records once it committed
    assert _new_offset(consumer, "tp") is None  # 13 is not acked yet
    assert consumer._acked["tp"] == [14, 15]
    assert consumer._acked_index["tp"] == {14, 15}
    consumer._acked["tp"].append(13)
    consumer._acked_index["tp"].add(13)
    assert _new_offset(consumer, "tp") == 16


def test_the_patched_consumer_recomputes_after_a_commit_that_did_not_happen():
    """Faust's rule removes offsets from its list before the commit; a commit that then does
    not happen loses them. Here they stay until the committed offset passes them."""
    consumer = _consumer(10, [10, 11, 12])
    assert _new_offset(consumer, "tp") == 13
    assert _new_offset(consumer, "tp") == 13


def test_the_patched_consumer_uses_and_chops_gaps():
    consumer = _consumer(10, [10, 11, 15], gaps=((12, 15),))
    assert _new_offset(consumer, "tp") == 16
    consumer._committed_offset["tp"] = 16
    assert _new_offset(consumer, "tp") is None
    assert not consumer._gap["tp"]


def test_with_nothing_committed_the_run_starts_where_the_partition_starts():
    """A partition nothing was committed for: Faust's rule (and ours before) committed from the
    smallest offset done, here past the 177 records dropped during a rebalance."""
    consumer = _consumer(None, list(range(177, 200)))
    assert _new_offset(consumer, "tp") is None  # where it starts is not known: commit nothing
    consumer._axmon_start = {"tp": 0}
    assert _new_offset(consumer, "tp") is None  # 0..176 were never done
    consumer._acked["tp"].extend(range(0, 177))
    assert _new_offset(consumer, "tp") == 200
    consumer = _consumer(None, [5, 6, 7])
    consumer._axmon_start = {"tp": 5}  # a log whose first records were deleted
    assert _new_offset(consumer, "tp") == 8


def test_a_partition_with_no_committed_offset_is_sought_to_its_first_offset():
    from processor.runtime.faust_patches import _seek_to_committed_or_start

    sought: list[tuple[str, int]] = []

    class Thread:
        async def seek_to_committed(self) -> dict[str, int | None]:
            return {"committed": 40, "never": None}

    class Consumer:
        _thread = Thread()

        async def earliest_offsets(self, *partitions: str) -> dict[str, int]:
            return {tp: 3 for tp in partitions}

        async def _seek(self, tp: str, offset: int) -> None:
            sought.append((tp, offset))

    consumer = Consumer()
    assert asyncio.run(_seek_to_committed_or_start(consumer)) == {"committed": 40, "never": None}
    assert sought == [("never", 3)]
    assert consumer._axmon_start == {"never": 3}  # type: ignore[attr-defined]


def test_task_stacks_follow_the_chain_of_awaits():
    async def innermost() -> None:
        await asyncio.sleep(10)

    async def outer() -> None:
        await innermost()

    async def main() -> str:
        task = asyncio.get_running_loop().create_task(outer(), name="the-outer-task")
        await asyncio.sleep(0.01)
        text = task_stacks(asyncio.get_running_loop())
        task.cancel()
        return text

    text = asyncio.run(main())
    assert "task the-outer-task" in text
    assert text.index(" outer") < text.index(" innermost")


def test_resuming_flow_that_runs_keeps_the_queued_records():
    """Faust resumes its flow control when a recovery begins and again when it ends; the
    second must not drop the records fetched in between."""
    from mode.utils.queues import FlowControlEvent, FlowControlQueue

    from processor.runtime.faust_patches import patch_faust_flow_control

    patch_faust_flow_control()

    async def main() -> tuple[int, int]:
        flow = FlowControlEvent(initially_suspended=True)
        queue: FlowControlQueue[int] = FlowControlQueue(flow_control=flow, clear_on_resume=True)
        queue.put_nowait(1)  # from before the rebalance
        flow.resume()  # the recovery begins: stale records go
        after_first = queue.qsize()
        queue.put_nowait(2)
        queue.put_nowait(3)
        flow.resume()  # the recovery ends: live records stay
        return after_first, queue.qsize()

    assert asyncio.run(main()) == (0, 2)


def test_a_faust_that_no_longer_fits_is_a_clear_error():
    import pytest

    from processor.runtime.faust_patches import _require
    from schemas.errors import AxmonError

    class Consumer:
        _acked: list[int]

    _require(Consumer, "_acked")
    with pytest.raises(AxmonError, match="has no _gap"):
        _require(Consumer, "_acked", "_gap")


class _SlowChannel:
    """A channel whose every publish takes a while (a slow or restarting broker)."""

    def __init__(self) -> None:
        self.published: list[Any] = []

    async def publish_message(self, fut: Any, wait: bool = False) -> None:
        await asyncio.sleep(0.25)
        self.published.append(fut)


def test_the_producer_buffer_flush_waits_for_every_message() -> None:
    """Faust's own flush gives up when no message went within 0.1 s, with changelog records
    still buffered; Faust then commits the offsets whose table writes those are."""
    from faust.transport.producer import ProducerBuffer

    from processor.runtime.faust_patches import patch_faust_producer_buffer

    patch_faust_producer_buffer()
    patch_faust_producer_buffer()  # idempotent

    async def run() -> tuple[int, int]:
        buffer = ProducerBuffer()
        buffer.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))  # type: ignore[assignment]
        await buffer.start()
        channel = _SlowChannel()
        try:
            await buffer.flush()  # nothing buffered: at once
            for _ in range(5):
                buffer.put(SimpleNamespace(message=SimpleNamespace(channel=channel)))  # type: ignore[arg-type]
            await buffer.flush()
            return len(channel.published), buffer.size
        finally:
            await buffer.stop()

    assert asyncio.run(run()) == (5, 0)


def test_the_worker_consumer_is_built_with_the_short_fetch_wait(monkeypatch: Any) -> None:
    """Faust builds its consumer with a fixed 1,500 ms fetch wait: records of partitions left out
    of a fetch in flight waited that long (processor.runtime.faust_app.FETCH_MAX_WAIT_MS)."""
    from aiokafka import AIOKafkaConsumer
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    from processor.runtime.faust_app import FETCH_MAX_WAIT_MS
    from processor.runtime.faust_patches import patch_faust_fetch_wait

    built: list[AIOKafkaConsumer] = []

    def fausts_create(self: Any, transport: Any) -> AIOKafkaConsumer:
        built.append(AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1", fetch_max_wait_ms=1500))
        return built[-1]

    async def main() -> None:
        monkeypatch.setattr(AIOKafkaConsumerThread, "_create_worker_consumer", fausts_create)
        patch_faust_fetch_wait(FETCH_MAX_WAIT_MS)
        patch_faust_fetch_wait(FETCH_MAX_WAIT_MS)  # idempotent: wraps Faust's own once
        consumer = AIOKafkaConsumerThread._create_worker_consumer(SimpleNamespace(), None)
        assert consumer is built[0] and len(built) == 1
        assert consumer._fetch_max_wait_ms == FETCH_MAX_WAIT_MS < 1500
        await consumer.stop()  # never started: only marks it closed

    asyncio.run(main())
