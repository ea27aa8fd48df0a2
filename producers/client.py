"""The asyncio producer SDK over aiokafka.

``AxmonProducer`` follows the original WorkflowMonitor and MetricsCollector API. Each call
validates its event, appends it to aiokafka's batch and returns at once (``await`` blocks only
when the batch buffer is full); ``flush()`` waits until everything sent so far is acknowledged
by the broker (acks=all, idempotent) and raises :class:`DeliveryError` if anything was not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaProducer

from producers.factory import EventFactory, wall_clock_ms
from schemas.codec import encode_event
from schemas.errors import AxmonError
from schemas.events import Event, LifecycleEvent, LogRecorded, MetricRecorded
from schemas.partitioning import partition_for
from schemas.topics import Topics, series_key

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


class DeliveryError(AxmonError):
    """The broker did not acknowledge some events; ``failed`` counts them."""

    def __init__(self, failed: int, first: BaseException) -> None:
        super().__init__(f"{failed} event(s) were not delivered; first error: {first!r}")
        self.failed = failed
        self.first = first


class ProducerClosedError(AxmonError):
    """The producer was used before ``start()`` or after ``close()``."""


@dataclass(frozen=True, slots=True)
class ProducerConfig:
    """How the SDK talks to Kafka. The defaults favour throughput with safe delivery."""

    bootstrap: str = DEFAULT_BOOTSTRAP
    topics: Topics = Topics()
    source: str | None = None
    """Written into every event's ``source``."""
    linger_ms: int = 5
    max_batch_size: int = 256 * 1024
    compression: str | None = "lz4"
    request_timeout_ms: int = 30_000
    client_id: str = "axmon-producer"


def route(event: Event, topics: Topics) -> tuple[str, bytes]:
    """The topic and message key of an event, as the contract defines them."""
    if isinstance(event, LifecycleEvent):
        return topics.workflow_events, event.execution_id.encode()
    if isinstance(event, MetricRecorded):
        return topics.metrics, series_key(event.tenant_id, event.metric_type, event.labels)
    if isinstance(event, LogRecorded):
        return topics.logs, (event.execution_id or event.tenant_id or "").encode()
    raise TypeError(f"no topic for {type(event).__name__}")


class DeliveryTracker:
    """Counts sends in flight and remembers failures until the next ``flush``."""

    def __init__(self) -> None:
        self.failed = 0
        self.first_error: BaseException | None = None
        self.delivered = 0
        self.pending: set[asyncio.Future[Any]] = set()

    def track(self, future: asyncio.Future[Any]) -> None:
        self.pending.add(future)
        future.add_done_callback(self.on_done)

    async def settle(self) -> None:
        """Wait until every tracked send has its outcome counted."""
        while self.pending:
            await asyncio.wait(set(self.pending))

    def on_done(self, future: asyncio.Future[Any]) -> None:
        self.pending.discard(future)
        if future.cancelled():
            self.fail(asyncio.CancelledError())
        elif future.exception() is not None:
            self.fail(future.exception())  # type: ignore[arg-type]
        else:
            self.delivered += 1

    def fail(self, error: BaseException) -> None:
        self.failed += 1
        if self.first_error is None:
            self.first_error = error

    def raise_failures(self) -> None:
        if self.failed:
            failed, first = self.failed, self.first_error
            self.failed, self.first_error = 0, None
            raise DeliveryError(failed, first or RuntimeError("unknown"))


class AxmonProducer:
    """Publishes lifecycle events and metric samples. Use as ``async with AxmonProducer(...)``."""

    def __init__(
        self,
        bootstrap: str | None = None,
        *,
        config: ProducerConfig | None = None,
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        base = config or ProducerConfig()
        if bootstrap is not None:
            base = ProducerConfig(**{**_asdict(base), "bootstrap": bootstrap})
        self.config = base
        self.events = EventFactory(source=base.source, clock=clock)
        self._tracker = DeliveryTracker()
        self._kafka: AIOKafkaProducer | None = None

    async def start(self) -> None:
        if self._kafka is not None:
            return
        c = self.config
        kafka = AIOKafkaProducer(
            bootstrap_servers=c.bootstrap,
            client_id=c.client_id,
            acks="all",
            enable_idempotence=True,
            compression_type=c.compression,
            linger_ms=c.linger_ms,
            max_batch_size=c.max_batch_size,
            request_timeout_ms=c.request_timeout_ms,
            partitioner=partition_for,
        )
        await kafka.start()
        self._kafka = kafka

    async def close(self) -> None:
        """Flush what is pending, then disconnect. Raises :class:`DeliveryError` if some events
        could not be delivered (the connection is closed either way)."""
        kafka, self._kafka = self._kafka, None
        if kafka is None:
            return
        try:
            await kafka.flush()
            await self._tracker.settle()
        finally:
            await kafka.stop()
        self._tracker.raise_failures()

    async def __aenter__(self) -> AxmonProducer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def delivered(self) -> int:
        """Events acknowledged by the broker so far."""
        return self._tracker.delivered

    async def publish(self, event: Event) -> None:
        """Send one already validated event to its topic, keyed by the contract."""
        topic, key = route(event, self.config.topics)
        await self.send_raw(topic, key, encode_event(event))

    async def send_raw(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None) -> None:
        """Send bytes as they are; ``partition`` overrides the partitioner (for tests and tools
        that must put a record where a foreign producer would)."""
        if self._kafka is None:
            raise ProducerClosedError("the producer is not started (use 'async with' or start())")
        self._tracker.track(await self._kafka.send(topic, value, key=key, partition=partition))

    async def send_record(self, topic: str, key: bytes | None, value: bytes | None) -> asyncio.Future[Any]:
        """Hand one record to the client and return its delivery future. Unlike
        :meth:`send_raw`, its outcome is the caller's to judge: :meth:`flush` waits for it but
        does not raise for it. Raises the client's own error (e.g. a record over its
        ``max_request_size``) at once."""
        if self._kafka is None:
            raise ProducerClosedError("the producer is not started (use 'async with' or start())")
        future: asyncio.Future[Any] = await self._kafka.send(topic, value, key=key)
        return future

    def note_failure(self, error: BaseException) -> None:
        """Count an event that could not even be handed to the client; the next flush raises."""
        self._tracker.fail(error)

    async def flush(self) -> None:
        """Wait until every event sent so far is acknowledged; raise if any was not."""
        if self._kafka is not None:
            await self._kafka.flush()
        await self._tracker.settle()
        self._tracker.raise_failures()

    # -- WorkflowMonitor -------------------------------------------------------------------

    async def start_execution(
        self,
        workflow_id: str,
        workflow_name: str,
        tenant_id: str,
        user_id: str,
        steps_total: int,
        metadata: Mapping[str, Any] | None = None,
        *,
        execution_id: str | None = None,
        occurred_at: int | None = None,
        trace_id: str | None = None,
        span_id: str | None = None,
    ) -> str:
        """Publish ``execution.started``; returns the execution id (generated unless given).
        Every lifecycle call takes ``trace_id=``/``span_id=`` (the engine's W3C ids); without
        them the current OpenTelemetry span's are used when ``opentelemetry-api`` is installed."""
        event = self.events.start_execution(
            workflow_id,
            workflow_name,
            tenant_id,
            user_id,
            steps_total,
            metadata,
            execution_id=execution_id,
            occurred_at=occurred_at,
            trace_id=trace_id,
            span_id=span_id,
        )
        await self.publish(event)
        return event.execution_id

    async def update_execution(self, execution_id: str, **changes: Any) -> None:
        """Publish ``execution.updated`` with any of ``current_step``, ``steps_total``,
        ``metadata`` (and ``tenant_id``/``occurred_at`` when needed)."""
        await self.publish(self.events.update_execution(execution_id, **changes))

    async def start_step(
        self, execution_id: str, step_key: str, step_name: str, **options: Any
    ) -> str:
        """Publish ``step.started``; returns the step id (generated unless ``step_id=`` given)."""
        event = self.events.start_step(execution_id, step_key, step_name, **options)
        await self.publish(event)
        return event.step_id

    async def complete_step(
        self,
        step_id: str,
        *,
        tokens_used: int | None = None,
        cost: float | None = None,
        input_size: int | None = None,
        output_size: int | None = None,
        **options: Any,
    ) -> None:
        await self.publish(
            self.events.step_event(
                "step.completed",
                step_id,
                tokens_used=tokens_used,
                cost=cost,
                input_size=input_size,
                output_size=output_size,
                **options,
            )
        )

    async def fail_step(self, step_id: str, error_message: str, **options: Any) -> None:
        await self.publish(
            self.events.step_event("step.failed", step_id, error_message=error_message, **options)
        )

    async def retry_step(self, step_id: str, **options: Any) -> None:
        await self.publish(self.events.step_event("step.retried", step_id, **options))

    async def complete_execution(self, execution_id: str, **options: Any) -> None:
        await self.publish(
            self.events.end_execution("execution.completed", execution_id, **options)
        )

    async def fail_execution(self, execution_id: str, error_message: str, **options: Any) -> None:
        await self.publish(
            self.events.end_execution(
                "execution.failed", execution_id, error_message=error_message, **options
            )
        )

    async def cancel_execution(
        self, execution_id: str, reason: str | None = None, **options: Any
    ) -> None:
        await self.publish(
            self.events.end_execution("execution.cancelled", execution_id, reason=reason, **options)
        )

    async def log(self, level: str, message: str, **options: Any) -> None:
        """Publish one ``log.recorded``: ``level`` trace, debug, info, warn, error or fatal;
        options ``execution_id``, ``step_id``, ``attributes``, ``tenant_id``, ``trace_id``,
        ``span_id``, ``occurred_at`` (see :meth:`EventFactory.log`)."""
        await self.publish(self.events.log(level, message, **options))

    # -- MetricsCollector ------------------------------------------------------------------

    async def record(
        self,
        metric_type: str,
        value: float,
        *,
        unit: str = "",
        labels: Mapping[str, str] | None = None,
        tenant_id: str | None = None,
        occurred_at: int | None = None,
    ) -> None:
        """Publish one ``metric.recorded`` sample."""
        await self.publish(
            self.events.record(
                metric_type,
                value,
                unit=unit,
                labels=labels,
                tenant_id=tenant_id,
                occurred_at=occurred_at,
            )
        )


def _asdict(config: ProducerConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in ProducerConfig.__slots__}
