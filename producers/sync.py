"""A synchronous facade over :class:`~producers.client.AxmonProducer` for code that is not async.

One background thread runs an event loop with the async producer. A call validates and builds
its event in the caller's thread (so a bad argument raises right there), hands the encoded
message to the loop and returns without waiting for the broker; ``flush()`` waits for every
message handed over so far. At most ``max_pending`` messages wait to be batched: beyond that a
call blocks, so a fast caller cannot run the process out of memory.

Messages are handed over through a list under a lock; only the call that finds no wake-up
pending wakes the loop (a write to its self-pipe), and that one wake-up moves every message
handed over until it runs. Waking the loop for each message made the system call, the loop's
turn and the GIL hand-offs between the two threads cost more than building the event.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from types import TracebackType
from typing import Any, TypeVar

from producers.client import AxmonProducer, ProducerClosedError, ProducerConfig, route
from producers.factory import wall_clock_ms
from schemas.codec import encode_event
from schemas.events import Event

T = TypeVar("T")
_STOP = object()


class SyncAxmonProducer:
    """Thread-safe blocking producer. Use as ``with SyncAxmonProducer(...) as monitor:``."""

    def __init__(
        self,
        bootstrap: str | None = None,
        *,
        config: ProducerConfig | None = None,
        clock: Callable[[], int] = wall_clock_ms,
        max_pending: int = 10_000,
        start_timeout: float = 30.0,
    ) -> None:
        self._async = AxmonProducer(bootstrap, config=config, clock=clock)
        self._lock = threading.Lock()  # guards the event factory's bookkeeping
        self._slots = threading.BoundedSemaphore(max_pending)
        self._loop = asyncio.new_event_loop()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()  # binds to the loop on first use
        self._handoff_lock = threading.Lock()
        self._handoff: list[tuple[str, bytes, bytes]] = []  # handed over, not yet in _queue
        self._wake_pending = False  # a _transfer is scheduled on the loop
        self._thread = threading.Thread(target=self._loop.run_forever, name="axmon-producer", daemon=True)
        self._start_timeout = start_timeout
        self._started = False
        self._sender: Future[None] | None = None

    @property
    def config(self) -> ProducerConfig:
        return self._async.config

    @property
    def delivered(self) -> int:
        return self._async.delivered

    def start(self) -> None:
        if self._started:
            return
        self._thread.start()
        try:
            self._call(self._async.start(), self._start_timeout)
        except BaseException:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            raise
        self._sender = asyncio.run_coroutine_threadsafe(self._send_loop(), self._loop)
        self._started = True

    async def _send_loop(self) -> None:
        while True:
            item = await self._queue.get()
            if item is _STOP:
                self._queue.task_done()
                return
            topic, key, value = item
            try:
                await self._async.send_raw(topic, key, value)
            except Exception as exc:  # reported by the next flush(), never lost silently
                self._async.note_failure(exc)
            finally:
                self._slots.release()
                self._queue.task_done()

    def _call(self, coro: Any, timeout: float | None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def publish(self, event: Event) -> None:
        """Hand one validated event to the background sender."""
        if not self._started:
            raise ProducerClosedError("the producer is not started (use 'with' or start())")
        topic, key = route(event, self._async.config.topics)
        value = encode_event(event)
        self._slots.acquire()
        with self._handoff_lock:
            self._handoff.append((topic, key, value))
            if self._wake_pending:
                return
            self._wake_pending = True
        self._loop.call_soon_threadsafe(self._transfer)

    def _transfer(self) -> None:
        """On the loop: move every message handed over so far into the sender's queue."""
        with self._handoff_lock:
            items, self._handoff = self._handoff, []
            self._wake_pending = False
        for item in items:
            self._queue.put_nowait(item)

    def flush(self, timeout: float | None = 60.0) -> None:
        """Block until every event handed over so far is acknowledged; raise
        :class:`~producers.client.DeliveryError` if any was not."""
        if not self._started:
            return
        self._call(self._drain_and_flush(), timeout)

    async def _drain_and_flush(self) -> None:
        self._transfer()
        await self._queue.join()
        await self._async.flush()

    def close(self, timeout: float | None = 60.0) -> None:
        """Flush, stop the sender and the loop thread. Raises DeliveryError like flush()."""
        if not self._started:
            return
        self._started = False
        try:
            self._call(self._drain_and_flush(), timeout)
        finally:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, _STOP)
            if self._sender is not None:
                self._sender.result(timeout)
            try:
                self._call(self._async.close(), timeout)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(timeout)
                self._loop.close()

    def __enter__(self) -> SyncAxmonProducer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _build(self, make: Callable[[], T]) -> T:
        with self._lock:
            return make()

    # -- WorkflowMonitor -------------------------------------------------------------------

    def start_execution(
        self,
        workflow_id: str,
        workflow_name: str,
        tenant_id: str,
        user_id: str,
        steps_total: int,
        metadata: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> str:
        event = self._build(
            lambda: self._async.events.start_execution(
                workflow_id, workflow_name, tenant_id, user_id, steps_total, metadata, **options
            )
        )
        self.publish(event)
        return event.execution_id

    def update_execution(self, execution_id: str, **changes: Any) -> None:
        self.publish(self._build(lambda: self._async.events.update_execution(execution_id, **changes)))

    def start_step(self, execution_id: str, step_key: str, step_name: str, **options: Any) -> str:
        event = self._build(
            lambda: self._async.events.start_step(execution_id, step_key, step_name, **options)
        )
        self.publish(event)
        return event.step_id

    def complete_step(
        self,
        step_id: str,
        *,
        tokens_used: int | None = None,
        cost: float | None = None,
        input_size: int | None = None,
        output_size: int | None = None,
        **options: Any,
    ) -> None:
        self._step("step.completed", step_id, tokens_used=tokens_used, cost=cost,
                   input_size=input_size, output_size=output_size, **options)

    def fail_step(self, step_id: str, error_message: str, **options: Any) -> None:
        self._step("step.failed", step_id, error_message=error_message, **options)

    def retry_step(self, step_id: str, **options: Any) -> None:
        self._step("step.retried", step_id, **options)

    def _step(self, type_: str, step_id: str, **fields: Any) -> None:
        self.publish(self._build(lambda: self._async.events.step_event(type_, step_id, **fields)))

    def complete_execution(self, execution_id: str, **options: Any) -> None:
        self._end("execution.completed", execution_id, **options)

    def fail_execution(self, execution_id: str, error_message: str, **options: Any) -> None:
        self._end("execution.failed", execution_id, error_message=error_message, **options)

    def cancel_execution(self, execution_id: str, reason: str | None = None, **options: Any) -> None:
        self._end("execution.cancelled", execution_id, reason=reason, **options)

    def _end(self, type_: str, execution_id: str, **fields: Any) -> None:
        self.publish(self._build(lambda: self._async.events.end_execution(type_, execution_id, **fields)))

    def log(self, level: str, message: str, **options: Any) -> None:
        """Publish one ``log.recorded`` (see :meth:`AxmonProducer.log`)."""
        self.publish(self._build(lambda: self._async.events.log(level, message, **options)))

    # -- MetricsCollector ------------------------------------------------------------------

    def record(
        self,
        metric_type: str,
        value: float,
        *,
        unit: str = "",
        labels: Mapping[str, str] | None = None,
        tenant_id: str | None = None,
        occurred_at: int | None = None,
    ) -> None:
        self.publish(
            self._build(
                lambda: self._async.events.record(
                    metric_type, value, unit=unit, labels=labels, tenant_id=tenant_id,
                    occurred_at=occurred_at,
                )
            )
        )
