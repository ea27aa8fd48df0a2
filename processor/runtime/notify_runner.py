"""``axmon notify``: alert transitions from ``<prefix>alerts`` to webhooks, at least once.

The protocol, in the order it happens:

1. Join the consumer group ``<prefix>notify`` on the alerts topic (several notifiers share its
   partitions); a group with no committed offset starts at the earliest record.
2. Take the records one at a time, in offset order per partition (so one alert's transitions
   reach a webhook in the order they happened). A record that is not an alert transition is
   counted and skipped with a warning.
3. POST the record to every webhook at once; each webhook retries on its own, by the
   :class:`~processor.runtime.notify.RetryPolicy`, until it is delivered or finally fails (counted,
   logged with the URL and the reason, and skipped: a dead webhook delays the stream by the
   bounded retry time, never forever).
4. When every webhook has finished with the record, commit the next offset.

A kill at any moment re-sends at most the record in flight (to every webhook) on the next
start: receivers see each transition at least once and deduplicate on the pair
(``X-Axmon-Alert-Id``, ``X-Axmon-Alert-Status``). On SIGTERM/Ctrl-C no new attempt starts, a
wait between attempts ends, requests in flight finish (bounded by the request timeout); the
record in progress is not committed, so the next start sends it again.

The delivery policy (what a response means, when to try again) is :mod:`processor.runtime.notify`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.structs import OffsetAndMetadata

from processor.errors import BrokerError, ConfigError
from processor.runtime.admin import partition_counts
from processor.runtime.metrics_collectors import serve_notify_metrics
from processor.runtime.metrics_export import MetricsAddress
from processor.runtime.notify import (
    Alert,
    BadAlert,
    NotifyCounters,
    RetryPolicy,
    Verdict,
    classify_exception,
    classify_status,
    describe_exception,
    parse_retry_after,
    read_alert,
)
from processor.runtime.supervise import Restarts, run_restarting
from processor.settings import ENV_WEBHOOKS, Settings
from processor.urls import display_url

log = logging.getLogger(__name__)

USER_AGENT = "axmon-notify"
REASON_BYTES = 300
"""How much of a failed response's body goes into the log line."""


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    webhooks: tuple[str, ...]
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    request_timeout_s: float = 10.0
    """One request (connect, send, answer) at most this long; then it is a retryable timeout."""

    def validate(self) -> None:
        if not self.webhooks:
            raise ConfigError(f"no webhook: pass --webhook URL (or set {ENV_WEBHOOKS})")
        if not self.request_timeout_s > 0:
            raise ConfigError(f"the request timeout must be positive, not {self.request_timeout_s}")
        self.retry.validate()

    @property
    def longest_record_s(self) -> float:
        """The longest one record can take: the last attempt starts within the retry time."""
        return self.retry.max_elapsed_s + self.request_timeout_s


Attempt = tuple[Verdict, str, float | None]
"""One attempt's verdict, the reason for a log line, and the ``Retry-After`` it asked for."""


class Deliverer:
    """Delivers one alert to one webhook: attempts, waits and counts, by the policy."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        policy: RetryPolicy,
        counters: NotifyCounters,
        stopping: asyncio.Event,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.session = session
        self.policy = policy
        self.counters = counters
        self.stopping = stopping
        self.clock = clock

    async def deliver(self, url: str, alert: Alert) -> Verdict | None:
        """``DELIVERED``, or ``PERMANENT`` when it finally failed (counted and logged);
        ``None`` when a stop interrupted it (nothing counted as failed)."""
        counts = self.counters.url(url)
        shown = display_url(url)
        started = self.clock()
        attempts = 0
        while True:
            if self.stopping.is_set():
                return None
            attempts += 1
            verdict, reason, retry_after = await self.attempt(url, alert)
            if verdict is Verdict.DELIVERED:
                counts.delivered += 1
                if attempts > 1:
                    log.info("webhook %s: alert %s (%s) delivered at attempt %d", shown, alert.alert_id, alert.status, attempts)
                return verdict
            if verdict is Verdict.PERMANENT:
                counts.failed += 1
                log.error("webhook %s: alert %s (%s) refused, not retried: %s; skipped",
                          shown, alert.alert_id, alert.status, reason)
                return verdict
            elapsed = self.clock() - started
            delay = self.policy.next_delay(attempts, elapsed, retry_after)
            if delay is None:
                counts.failed += 1
                log.error("webhook %s: alert %s (%s) failed %d times in %.1f s, giving up: %s; skipped",
                          shown, alert.alert_id, alert.status, attempts, elapsed, reason)
                return Verdict.PERMANENT
            log.warning("webhook %s: alert %s (%s) attempt %d failed: %s; trying again in %.1f s",
                        shown, alert.alert_id, alert.status, attempts, reason, delay)
            if await self._stopped_within(delay):
                return None
            counts.retried += 1

    async def attempt(self, url: str, alert: Alert) -> Attempt:
        """One POST; never raises (but for cancellation)."""
        try:
            async with self.session.post(url, data=alert.body, headers=alert.headers(), allow_redirects=False) as response:
                verdict = classify_status(response.status)
                if verdict is Verdict.DELIVERED:
                    return verdict, "", None
                try:
                    body = await response.content.read(REASON_BYTES)
                except (aiohttp.ClientError, TimeoutError):
                    body = b""  # the status decides; the body is only for the log line
                text = " ".join(body.decode("utf-8", errors="replace").split())
                reason = f"HTTP {response.status} {response.reason or ''}".rstrip()
                if 300 <= response.status < 400 and response.headers.get("Location"):
                    reason += f" (redirect to {response.headers['Location']}, not followed)"
                if text:
                    reason += f": {text}"
                return verdict, reason, parse_retry_after(response.headers.get("Retry-After"), time.time())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is a verdict, never a crash
            return classify_exception(exc), describe_exception(exc), None

    async def _stopped_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self.stopping.wait(), seconds)
        except TimeoutError:
            return False
        return True


class NotifyRunner:
    """Consumes the alerts topic and delivers; see the module docstring for the protocol."""

    def __init__(self, settings: Settings, bootstrap: str, config: NotifyConfig) -> None:
        self.bootstrap = bootstrap
        self.config = config
        self.topic = settings.topics.alerts
        self.group = f"{settings.topics.prefix}notify"
        self.counters = NotifyCounters()
        for url in config.webhooks:
            self.counters.url(url)
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def wait_stopped(self, seconds: float) -> bool:
        """Sleep ``seconds`` or until :meth:`stop`; whether it was stopped."""
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def run(self, on_progress: Callable[[NotifyCounters], None] | None = None) -> NotifyCounters:
        """Run until :meth:`stop`."""
        consumer = await self._consumer()
        try:
            timeout = aiohttp.ClientTimeout(total=self.config.request_timeout_s)
            async with aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": USER_AGENT}) as session:
                deliverer = Deliverer(session, self.config.retry, self.counters, self._stopping)
                await self._loop(consumer, deliverer, on_progress)
        finally:
            await consumer.stop()
        return self.counters

    async def _consumer(self) -> AIOKafkaConsumer:
        counts = await partition_counts(self.bootstrap, [self.topic])
        if self.topic not in counts:
            raise BrokerError(f"topic {self.topic} does not exist: start 'axmon worker' first (it creates it)")
        consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # one record may hold the loop for the whole retry time: stay in the group meanwhile
            max_poll_interval_ms=int(max(300.0, self.config.longest_record_s + 60.0) * 1000),
        )
        try:
            await consumer.start()
        except KafkaConnectionError as exc:
            await consumer.stop()
            raise BrokerError(f"cannot reach Kafka at {self.bootstrap}: {exc}") from exc
        return consumer

    async def _loop(
        self,
        consumer: AIOKafkaConsumer,
        deliverer: Deliverer,
        on_progress: Callable[[NotifyCounters], None] | None,
    ) -> None:
        while not self._stopping.is_set():
            fetched = await consumer.getmany(timeout_ms=500, max_records=1)
            for tp, messages in fetched.items():
                for m in messages:
                    if not await self.handle(deliverer, m.key, m.value, f"{tp.topic}/{tp.partition}/{m.offset}"):
                        return  # stopped mid-record: not committed, the next start sends it again
                    await self._commit(consumer, tp, m.offset + 1)
            if on_progress is not None:
                on_progress(self.counters)

    async def handle(self, deliverer: Deliverer, key: bytes | None, value: bytes | None, where: str) -> bool:
        """Deliver one record to every webhook; ``False`` when a stop interrupted it."""
        try:
            alert = read_alert(key, value)
        except BadAlert as exc:
            self.counters.invalid += 1
            log.warning("skipping record %s, not an alert transition: %s", where, exc)
            return True
        results = await asyncio.gather(
            *(deliverer.deliver(url, alert) for url in self.config.webhooks), return_exceptions=True
        )
        interrupted = False
        for url, result in zip(self.config.webhooks, results):
            if isinstance(result, asyncio.CancelledError):
                raise result
            if isinstance(result, BaseException):  # a bug, not a delivery outcome: counted, never fatal
                self.counters.url(url).failed += 1
                log.error("webhook %s: alert %s (%s) failed unexpectedly: %r; skipped",
                          display_url(url), alert.alert_id, alert.status, result)
            elif result is None:
                interrupted = True
        if interrupted:
            return False
        self.counters.records += 1
        return True

    async def _commit(self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> None:
        try:
            await consumer.commit({tp: OffsetAndMetadata(offset, "")})
        except KafkaError as exc:  # e.g. the partition moved to another notifier: it sends the record again
            log.warning("could not commit %s/%d at offset %d (the record may be sent again): %r",
                        tp.topic, tp.partition, offset, exc)


def run_notify(
    settings: Settings, bootstrap: str, config: NotifyConfig, *, report: Callable[[NotifyCounters], None] | None = None,
    metrics_at: MetricsAddress | None = None,
) -> NotifyCounters:
    """Run until SIGTERM/SIGINT; Kafka trouble restarts the consumer with backoff. With
    ``metrics_at``, serve its metrics and its group's consumer lag there."""

    async def main() -> NotifyCounters:
        runner = NotifyRunner(settings, bootstrap, config)
        restarts = Restarts()
        if metrics_at is not None:
            serve_notify_metrics(runner, restarts, metrics_at)
        # nothing is lost: the group's committed offsets are where the next attempt starts
        return await run_restarting("notify", runner, lambda: runner.run(on_progress=report), runner.wait_stopped, restarts)

    return asyncio.run(main())
