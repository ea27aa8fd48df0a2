"""Alert notifications: the delivery policy of ``axmon notify``, pure and unit-tested.

The worker publishes every alert transition (pending, firing, acknowledged, resolved) to
``<prefix>alerts``, keyed by alert id. ``axmon notify`` (:mod:`processor.runtime.notify_runner`) POSTs
each one to every configured webhook. This module decides, without any I/O:

- what a record is (:func:`read_alert`): the value is passed on verbatim as the JSON body;
  only ``id`` and ``status`` are read, for the headers ``X-Axmon-Alert-Id`` and
  ``X-Axmon-Alert-Status`` and for logging;
- what a response means (:func:`classify_status`): 2xx delivered; 408, 429 and 5xx retried;
  any other status (3xx, other 4xx) a permanent failure, not retried. Timeouts and connection
  errors are retried (:func:`classify_exception`);
- when to try again (:class:`RetryPolicy`): exponential backoff, 0.5 s doubling up to 30 s by
  default, stretched to a ``Retry-After`` the receiver sends (never past the cap), within a
  bounded number of attempts and a bounded time per record and webhook;
- what is counted (:class:`NotifyCounters`).

Delivery is at least once: the consumer commits a record's offset only after its delivery to
every webhook has finished (delivered, or finally failed and skipped), so a crash re-sends the
records in flight. Receivers deduplicate on the pair (``X-Axmon-Alert-Id``,
``X-Axmon-Alert-Status``), the idempotency key: an alert passes through each status once, so
a pair seen before is a repeated delivery of the same transition.
"""

from __future__ import annotations

import asyncio
import enum
import math
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

import orjson

from processor.errors import AxmonError, ConfigError
from processor.urls import display_url

HEADER_ALERT_ID = "X-Axmon-Alert-Id"
HEADER_ALERT_STATUS = "X-Axmon-Alert-Status"
RETRYABLE_CLIENT_STATUSES = frozenset({408, 429})
"""4xx answers that mean "not now" (request timeout, too many requests) rather than "never"."""


class Verdict(enum.Enum):
    """What one attempt to deliver a record to one webhook came to."""

    DELIVERED = "delivered"
    RETRY = "retry"
    """Worth trying again: 408, 429, 5xx, a timeout, a connection error."""
    PERMANENT = "permanent"
    """Trying again would not help: 3xx, 4xx other than 408/429, a request that cannot be made."""


def classify_status(status: int) -> Verdict:
    """2xx delivered; 408, 429 and 5xx retried; everything else (1xx, 3xx, other 4xx, nonsense)
    a permanent failure. Redirects are not followed: a webhook URL that redirects is wrong."""
    if 200 <= status <= 299:
        return Verdict.DELIVERED
    if status in RETRYABLE_CLIENT_STATUSES or 500 <= status <= 599:
        return Verdict.RETRY
    return Verdict.PERMANENT


def classify_exception(exc: BaseException) -> Verdict:
    """Timeouts and connection-level errors (refused, reset, DNS, TLS, a server that hung up)
    are retried; anything else (an invalid URL, a bug) is permanent, so it cannot loop."""
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError, ConnectionError)):
        return Verdict.RETRY
    try:
        import aiohttp
    except ImportError:  # pragma: no cover - aiohttp is a dependency
        return Verdict.PERMANENT
    if isinstance(exc, aiohttp.InvalidURL):
        return Verdict.PERMANENT
    if isinstance(exc, aiohttp.ClientError):
        return Verdict.RETRY
    return Verdict.PERMANENT


def describe_exception(exc: BaseException) -> str:
    """A short reason for a log line: ``timeout`` or ``ClientConnectorError: ...``."""
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return "timeout"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), or
    ``None`` when absent or unreadable. ``now`` is the wall clock (epoch seconds)."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff, bounded in attempts and in time, per record and webhook."""

    initial_backoff_s: float = 0.5
    """Wait before the second attempt; doubled for each one after."""
    max_backoff_s: float = 30.0
    """No wait is longer (not even one a ``Retry-After`` asks for)."""
    max_attempts: int = 10
    """Attempts per record and webhook, the first included; 1: never retry."""
    max_elapsed_s: float = 300.0
    """No attempt starts later than this after the first one."""

    def validate(self) -> None:
        if not (self.initial_backoff_s > 0 and math.isfinite(self.initial_backoff_s)):
            raise ConfigError(f"the initial backoff must be a positive number of seconds, not {self.initial_backoff_s}")
        if not (self.max_backoff_s >= self.initial_backoff_s and math.isfinite(self.max_backoff_s)):
            raise ConfigError(
                f"the maximum backoff ({self.max_backoff_s} s) must be at least the initial one ({self.initial_backoff_s} s)"
            )
        if self.max_attempts < 1:
            raise ConfigError(f"max attempts must be at least 1, not {self.max_attempts}")
        if not (self.max_elapsed_s >= 0 and math.isfinite(self.max_elapsed_s)):
            raise ConfigError(f"the retry time must not be negative, not {self.max_elapsed_s}")

    def backoff(self, retry: int) -> float:
        """The wait before retry number ``retry`` (1: the second attempt):
        ``initial * 2**(retry-1)``, capped at ``max_backoff_s``."""
        if retry < 1:
            raise ValueError(f"retry numbers start at 1, not {retry}")
        return min(self.max_backoff_s, self.initial_backoff_s * 2.0 ** min(retry - 1, 1000))

    def schedule(self) -> list[float]:
        """The waits between the attempts, when every attempt fails at once (and no
        ``Retry-After`` is sent), ignoring the time bound: ``max_attempts - 1`` of them."""
        return [self.backoff(n) for n in range(1, self.max_attempts)]

    def next_delay(self, attempts: int, elapsed_s: float, retry_after_s: float | None = None) -> float | None:
        """After ``attempts`` failed attempts, ``elapsed_s`` seconds after the first one
        started: how long to wait before the next, or ``None`` to give up."""
        if attempts >= self.max_attempts:
            return None
        delay = self.backoff(attempts)
        if retry_after_s is not None:
            delay = min(self.max_backoff_s, max(delay, retry_after_s))
        if elapsed_s + delay > self.max_elapsed_s:
            return None
        return delay


# -- records ----------------------------------------------------------------------------------


class BadAlert(AxmonError):
    """A record on the alerts topic that is not an alert transition (not a JSON object with a
    string ``status``); it is counted and skipped."""


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert transition as it is delivered: the record value is the body, untouched."""

    alert_id: str
    status: str
    body: bytes

    def headers(self) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            HEADER_ALERT_ID: header_value(self.alert_id),
            HEADER_ALERT_STATUS: header_value(self.status),
        }


def read_alert(key: bytes | None, value: bytes | None) -> Alert:
    """The alert transition in a record of the alerts topic, or :class:`BadAlert`. The id is
    the value's ``id`` (the record key when the value has none)."""
    if value is None:
        raise BadAlert("no value (a tombstone)")
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise BadAlert(f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise BadAlert(f"not a JSON object but {type(document).__name__}")
    status = document.get("status")
    if not isinstance(status, str) or not status:
        raise BadAlert("no 'status'")
    alert_id = document.get("id")
    if not isinstance(alert_id, str) or not alert_id:
        alert_id = key.decode("utf-8", errors="replace") if key else ""
    if not alert_id:
        raise BadAlert("no 'id' and no key")
    return Alert(alert_id, status, value)


def header_value(text: str) -> str:
    """``text`` as a header value: printable ASCII stays, anything else (control characters,
    non-ASCII) is percent-encoded as UTF-8, so a value can never break the header block."""
    out = []
    for char in text:
        if " " <= char <= "~":
            out.append(char)
        else:
            out.extend(f"%{byte:02X}" for byte in char.encode("utf-8"))
    return "".join(out)


# -- webhooks ---------------------------------------------------------------------------------


# -- counters ---------------------------------------------------------------------------------


@dataclass
class UrlCounters:
    delivered: int = 0
    """Records this webhook accepted (2xx)."""
    retried: int = 0
    """Attempts made again after a retryable failure."""
    failed: int = 0
    """Records given up on: a permanent failure, or retries exhausted."""

    def describe(self) -> str:
        return f"{self.delivered:,} delivered, {self.retried:,} retried, {self.failed:,} failed"


@dataclass
class NotifyCounters:
    records: int = 0
    """Alert transitions whose delivery finished (to every webhook, delivered or failed)."""
    invalid: int = 0
    """Records skipped because they are not alert transitions."""
    urls: dict[str, UrlCounters] = field(default_factory=dict)

    def url(self, url: str) -> UrlCounters:
        counters = self.urls.get(url)
        if counters is None:
            counters = self.urls[url] = UrlCounters()
        return counters

    def summary(self) -> str:
        """The one progress line."""
        head = f"{self.records:,} alert transitions, {self.invalid:,} invalid"
        return "; ".join([head, *(f"{display_url(u)}: {c.describe()}" for u, c in self.urls.items())])

    def report(self) -> list[str]:
        """The counters at the end: a head line, then one line per webhook."""
        return [
            f"{self.records:,} alert transitions, {self.invalid:,} invalid records skipped",
            *(f"  {display_url(u)}: {c.describe()}" for u, c in self.urls.items()),
        ]

    def snapshot(self) -> tuple[int, ...]:
        """Changes whenever a counter does (to print progress only when there is some)."""
        return (self.records, self.invalid, *(n for c in self.urls.values() for n in (c.delivered, c.retried, c.failed)))
