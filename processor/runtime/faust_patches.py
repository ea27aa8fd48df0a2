"""Where this project corrects or looks into faust-streaming at run time.

- :func:`patch_faust_commit_offsets`: Faust's consumer computes the offset to commit with a
  rule that crawls (one offset per commit interval) when its bookkeeping holds duplicates, and
  that can pass an unacknowledged first offset; see :mod:`processor.runtime.commit_offsets`.
- :func:`patch_faust_flow_control`: at the end of a recovery Faust resumes the stream
  partitions, seeks them, and only then "resumes" its flow control, which it had already
  resumed when the recovery began; resuming clears the stream queues, and the records fetched
  in between are dropped unprocessed. Faust's commit rule then stalls behind them, or, when a
  single record was dropped, commits past it: a lost event. Resuming flow that is not
  suspended now clears nothing.
- :func:`patch_faust_seek_to_start`: with no committed offset, Faust's commit rule started at the
  smallest offset done, and the seek at the end of a recovery left such a partition where
  its fetcher was: records fetched and dropped during a rebalance (the flow suspended) were
  skipped for good. A worker that took over a partition its killed owner had never committed
  lost its first 177 records so (the three-worker test). Now such a partition is sought to
  its first offset, and commits start there.
- :func:`patch_faust_producer_buffer`: Faust's producer buffer (the table changelog records
  wait there until a task hands them to the Kafka producer) "flushes" by waiting 0.1 s for the
  next message to go, and returns when none went: with a slow or restarting broker it returns
  with changelog records still waiting. Faust flushes so before every commit and before the
  recovery of a rebalance: the source offsets were committed while their table writes were
  not yet even sent, so a SIGKILL then lost them (a worker of a group lost executions that
  way), and a rebalance recovered the table from a changelog without them (the in-memory
  state went back; a CI run of the live-equals-replay proof published a window's count 1
  after 2 so). The flush now returns when every buffered message is handed to the producer.
- :func:`patch_faust_inboxes`: the consumer's fetch loop hands the records of a topic that has
  an :class:`~processor.runtime.inbox.Inbox` straight to it, without Faust's per-record tasks,
  lock, events and stream (about 0.1 ms of CPU a record); other topics go Faust's way.
- :func:`patch_faust_fetch_wait`: Faust builds its consumer with a fetch wait of 1,500 ms
  (not a setting), which held lifecycle records back for up to that long behind busy
  partitions; see :data:`processor.runtime.faust_app.FETCH_MAX_WAIT_MS`.
- :func:`task_stacks`: every task of an event loop with its whole chain of awaits, for the log
  when the stall watchdog restarts a worker.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from processor.runtime.commit_offsets import next_commit_offset
from processor.runtime.faust_app import FETCH_MAX_WAIT_MS
from processor.runtime.inbox import INBOXES_ATTRIBUTE
from schemas.errors import AxmonError

CONSUMER_FETCHING = "FETCHING"
"""Faust's diagnostic flag while its fetch loop runs (``faust.transport.consumer.CONSUMER_FETCHING``)."""


def _new_offset(consumer: Any, tp: Any) -> int | None:
    """Faust's ``Consumer._new_offset`` by :func:`next_commit_offset`: the offset to commit for
    ``tp``, from the consumer's own bookkeeping (``_acked``, ``_acked_index``, ``_gap``,
    ``_committed_offset``). Offsets below the committed one are dropped here, once the commit
    that passed them is recorded (Faust drops them before it commits, and loses them when the
    commit then does not happen)."""
    acked: list[int] = consumer._acked[tp]
    committed: int | None = consumer._committed_offset[tp]
    if committed is None:
        # Nothing committed yet: the run starts where the partition starts (found when it was
        # sought: _seek_to_committed_or_start), never at the smallest offset done, which is past
        # any record dropped before it was processed.
        committed = getattr(consumer, "_axmon_start", {}).get(tp)
        if committed is None:
            return None
    gap_tree = consumer._gap.get(tp)
    if acked and min(acked) < committed:
        acked[:] = [offset for offset in acked if offset >= committed]
        index = consumer._acked_index[tp]
        index.difference_update([offset for offset in index if offset < committed])
    if gap_tree:
        gap_tree.chop(0, committed)
    if not acked:
        return None
    return next_commit_offset(committed, acked, [(span.begin, span.end) for span in gap_tree] if gap_tree else [])


def patch_faust_commit_offsets() -> None:
    """Make every Faust consumer in this process compute its commit offsets with
    :func:`_new_offset`. Idempotent."""
    from faust.transport.consumer import Consumer

    _require(Consumer, "_new_offset", "_acked", "_acked_index", "_gap", "_committed_offset")
    Consumer._new_offset = _new_offset  # type: ignore[method-assign,assignment]


async def _seek_to_committed_or_start(self: Any) -> Any:
    """Faust's ``ThreadDelegateConsumer.seek_to_committed``, and a partition without a committed
    offset is sought to its first offset (remembered in ``_axmon_start`` for the commit rule):
    aiokafka leaves such a partition where its fetcher is, which after a rebalance is past the
    records fetched and then dropped while the flow was suspended."""
    committed = await self._thread.seek_to_committed()
    missing = [tp for tp, offset in committed.items() if offset is None or offset < 0]
    if missing:
        starts = await self.earliest_offsets(*missing)
        known = getattr(self, "_axmon_start", None)
        if known is None:
            known = self._axmon_start = {}
        for tp in missing:
            start = starts.get(tp)
            if start is not None:
                await self._seek(tp, start)
                known[tp] = start
    return committed


def patch_faust_seek_to_start() -> None:
    """Make Faust's consumer seek a partition nothing was committed for to its first offset, and
    commit it only from there. Idempotent."""
    from faust.transport.consumer import ThreadDelegateConsumer

    _require(ThreadDelegateConsumer, "seek_to_committed", "earliest_offsets", "_seek")
    ThreadDelegateConsumer.seek_to_committed = _seek_to_committed_or_start  # type: ignore[method-assign]


def _resume_flow(self: Any) -> None:
    """``mode``'s ``FlowControlEvent.resume``, clearing the managed queues only when it was
    suspended (what they hold then is from before a rebalance; otherwise it is live work)."""
    was_suspended = self._suspend.is_set()
    self._suspend.clear()
    self._resume.set()
    if was_suspended:
        self.clear()


def patch_faust_flow_control() -> None:
    """Make Faust's flow control drop queued records only when it really resumes. Idempotent."""
    from mode.utils.queues import FlowControlEvent

    _require(FlowControlEvent, "resume", "clear")
    _require(FlowControlEvent, "_suspend", "_resume", instance=FlowControlEvent(initially_suspended=True))
    FlowControlEvent.resume = _resume_flow  # type: ignore[method-assign]


async def _flush_buffer(self: Any) -> None:
    """``ProducerBuffer.flush``, waiting until every buffered message (also the one being
    handed over) is with the Kafka producer. A buffer that stops with messages in it cannot
    flush them (Faust raises the same)."""
    while self.size or getattr(self, "_axmon_sending", 0):
        if self.state != "running" and self.size:
            raise RuntimeError("Cannot flush: Producer not Running")
        self.message_sent.clear()
        try:
            await asyncio.wait_for(self.message_sent.wait(), timeout=1.0)
        except TimeoutError:
            continue  # a slow broker: go on waiting (a commit that waits is what the stall watchdog sees)


def patch_faust_producer_buffer() -> None:
    """Make Faust's producer buffer flush everything it holds. Idempotent; before the app starts
    (the buffer's sending task looks up ``_send_pending`` once)."""
    from faust.transport.producer import ProducerBuffer

    _require(ProducerBuffer, "flush", "_send_pending", "_handle_pending", "size", "__post_init__")
    if getattr(ProducerBuffer, "_axmon_patched", False):
        return
    send_pending = ProducerBuffer._send_pending

    async def _send_pending_counted(self: Any, fut: Any) -> None:
        self._axmon_sending = getattr(self, "_axmon_sending", 0) + 1
        try:
            await send_pending(self, fut)
        finally:
            self._axmon_sending -= 1

    ProducerBuffer._send_pending = _send_pending_counted  # type: ignore[method-assign]
    ProducerBuffer.flush = _flush_buffer  # type: ignore[method-assign]
    ProducerBuffer._axmon_patched = True  # type: ignore[attr-defined]


async def _drain_messages(self: Any, fetcher: Any) -> None:  # pragma: no cover - the fetch loop of a running app
    """Faust's ``Consumer._drain_messages`` (faust-streaming 0.15.3) with one change: a record of
    a topic with an :class:`~processor.runtime.inbox.Inbox` is put there, synchronously, unless
    the flow is suspended (a rebalance: Faust's own path drops it then too), instead of going
    through ``wait_first(callback(message), suspend_flow.wait())``, two tasks a record.

    A record the inbox refuses (:meth:`~processor.runtime.inbox.Inbox.admits`: a later offset of
    a partition whose earlier records it dropped) is skipped as if never fetched: no read offset,
    no gap (Faust would count a gap's offsets as acked and commit past them); the inbox has
    sought the partition back to the dropped offset."""
    callback = self.callback
    getmany = self.getmany
    consumer_should_stop = self._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set
    get_read_offset = self._read_offset.__getitem__
    set_read_offset = self._read_offset.__setitem__
    suspended = self.suspend_flow.is_set
    flow_control = self.app.flow_control
    flow_active = flow_control.is_active
    commit_every = self._commit_every
    acks_enabled_for = self.app.topics.acks_enabled_for
    inboxes: dict[str, Any] = self.app.__dict__.setdefault(INBOXES_ATTRIBUTE, {})
    yield_every = 100
    num_since_yield = 0
    sleep = asyncio.sleep
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            self.diag.set_flag(CONSUMER_FETCHING)
            ait = getmany(timeout=1.0)
            await self.sleep(0)  # getmany may be called in a loop that never releases the event loop
            if not self.should_stop:
                async for tp, message in ait:
                    num_since_yield += 1
                    if num_since_yield > yield_every:
                        await sleep(0)
                        num_since_yield = 0
                    offset = message.offset
                    inbox = inboxes.get(message.topic)
                    if inbox is not None and not inbox.admits(message):
                        continue  # out of order after a drop: not read, fetched again (the inbox sought back)
                    r_offset = get_read_offset(tp)
                    if r_offset is None or offset >= r_offset:
                        gap = offset - (r_offset or 0)
                        if gap > 1 and r_offset and acks_enabled_for(message.topic):
                            await self._add_gap(tp, r_offset + 1, offset)
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        if inbox is None:
                            await self.wait_first(callback(message), self.suspend_flow.wait())
                        elif not suspended():
                            if not flow_active():
                                # The end of a rebalance: the partitions are sought and fetched
                                # again before the app's flow resumes, and its resume clears the
                                # inbox. Put now, this record would be cleared with its offset
                                # already read, and the next ones folded (and committed) past it.
                                # So wait, as Faust's stream queue's put does.
                                await self.wait_first(flow_control.acquire(), self.suspend_flow.wait())
                            if not suspended() and not inbox.put(message):
                                continue  # a drop while this loop awaited: fetched again
                        set_read_offset(tp, offset)
                self.diag.unset_flag(CONSUMER_FETCHING)
    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        self.diag.unset_flag(CONSUMER_FETCHING)


def patch_faust_inboxes() -> None:
    """Make Faust's fetch loop hand the records of topics with an inbox to it. Idempotent;
    other topics are delivered as before."""
    from faust.transport.consumer import CONSUMER_FETCHING as FAUSTS_FLAG
    from faust.transport.consumer import Consumer

    if FAUSTS_FLAG != CONSUMER_FETCHING:
        raise AxmonError(f"faust's fetch flag is {FAUSTS_FLAG!r}: not the faust-streaming 0.15.x faust_patches.py corrects")
    _require(Consumer, "_drain_messages", "getmany", "_read_offset", "suspend_flow", "_commit_every",
             "_add_gap", "_n_acked", "commit", "consumer_stopped_errors", "on_buffer_full", "on_buffer_drop",
             "unacked", "ack")
    Consumer._drain_messages = _drain_messages  # type: ignore[method-assign]


def patch_faust_fetch_wait(wait_ms: int) -> None:
    """Build the worker's consumer with a fetch wait of ``wait_ms`` instead of Faust's fixed
    1,500 ms. Idempotent (the last ``wait_ms`` given holds)."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    _require(AIOKafkaConsumerThread, "_create_worker_consumer")
    create = getattr(AIOKafkaConsumerThread._create_worker_consumer, "_axmon_original",
                     AIOKafkaConsumerThread._create_worker_consumer)

    def _create_worker_consumer(self: Any, *args: Any, **kwargs: Any) -> Any:
        consumer = create(self, *args, **kwargs)
        _require(type(consumer), "_fetch_max_wait_ms", instance=consumer)
        consumer._fetch_max_wait_ms = wait_ms  # read by aiokafka's Fetcher, built when the consumer starts
        return consumer

    _create_worker_consumer._axmon_original = create  # type: ignore[attr-defined]
    AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]


def patch_faust() -> None:
    """Every correction of this module that applies process-wide (idempotent; before the app starts)."""
    patch_faust_fetch_wait(FETCH_MAX_WAIT_MS)
    patch_faust_commit_offsets()
    patch_faust_flow_control()
    patch_faust_producer_buffer()
    patch_faust_seek_to_start()


def _require(cls: type, *names: str, instance: object = None) -> None:
    """Refuse to patch a class that no longer looks like the one these corrections were written
    for (faust-streaming 0.15, mode-streaming 0.7): better a clear error than a silent misfit.
    A name is found on ``instance`` if given, else on the class or among its annotations."""
    def has(name: str) -> bool:
        if instance is not None:
            return hasattr(instance, name)
        return hasattr(cls, name) or name in getattr(cls, "__annotations__", {})

    missing = [name for name in names if not has(name)]
    if missing:
        raise AxmonError(
            f"{cls.__module__}.{cls.__qualname__} has no {', '.join(missing)}: this Faust or mode version is not the "
            "one processor/runtime/faust_patches.py corrects (faust-streaming 0.15.x)"
        )


def task_stacks(loop: asyncio.AbstractEventLoop) -> str:
    """Where every task of ``loop`` waits, the whole chain of awaits of each. Safe to call from
    another thread (for diagnostics: the loop may be changing its tasks meanwhile)."""
    lines: list[str] = []
    try:
        for task in list(asyncio.all_tasks(loop)):
            lines.append(f"task {task.get_name()[:120]}")
            awaited: Any = task.get_coro()
            for _ in range(40):
                if type(awaited).__name__ in ("coroutine_wrapper", "async_generator_asend"):
                    # what `await coro` and `async for` hold: their coroutine is a referent
                    awaited = next((r for r in gc.get_referents(awaited) if hasattr(r, "cr_frame") or hasattr(r, "ag_frame")), None)
                frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "ag_frame", None) or getattr(awaited, "gi_frame", None)
                if frame is None:
                    if awaited is not None:
                        lines.append(f"    awaits {awaited!r}"[:300])
                    break
                lines.append(f"    {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
                awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "ag_await", None) or getattr(awaited, "gi_yieldfrom", None)
    except Exception as exc:  # noqa: BLE001 - diagnostics only: never keep the watchdog from restarting
        lines.append(f"(no task stacks: {exc})")
    return "\n".join(lines)


def consumer_bookkeeping(consumer: Any) -> str:
    """What a Faust consumer believes about each partition (for the log of a stall): what it
    committed and read, what its streams acknowledged, its gaps, and whether it fetches the
    partition at all (flow control and pauses)."""
    lines: list[str] = []
    try:
        active = consumer._active_partitions
        buffered: set[Any] = getattr(consumer, "_buffered_partitions", set())
        paused: set[Any] = getattr(consumer, "_paused_partitions", set())
        lines.append(f"flow_active={getattr(consumer, 'flow_active', '?')} buffered={sorted(map(tuple, buffered))} "
                     f"paused={len(paused)} active={'all' if active is None else len(active)}")
        for tp in sorted(consumer.assignment(), key=lambda t: (t.topic, t.partition)):
            acked = list(consumer._acked.get(tp, ()))
            gaps = sorted((span.begin, span.end) for span in consumer._gap.get(tp, ()))
            fetching = active is None or tp in active
            lines.append(
                f"{tp.topic}[{tp.partition}] committed={consumer._committed_offset.get(tp)} read={consumer._read_offset.get(tp)} "
                f"acked={len(acked)} min={min(acked) if acked else None} max={max(acked) if acked else None} "
                f"duplicates={len(acked) - len(set(acked))} gaps={gaps[:4]} fetching={fetching} paused={tp in paused}"
            )
    except Exception as exc:  # noqa: BLE001 - diagnostics only
        lines.append(f"(no bookkeeping: {exc})")
    return "\n".join(lines)
