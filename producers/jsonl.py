"""Producing JSON lines: the path for shells and services in any language.

Each non-blank line is one event object. Lines that do not satisfy the contract, that are too
large for the broker, or that the broker refuses are reported with their line number and
reason and skipped; every other line is published.

Unless ``strict``, a line may leave out the envelope's bookkeeping: ``version`` defaults to the
contract version, ``event_id`` to a new UUIDv7 and ``occurred_at`` to now. (A resent line then
gets a new id: give ``event_id`` yourself where a resend must be recognised.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka.errors import KafkaError
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from producers.client import AxmonProducer, route
from producers.factory import wall_clock_ms
from schemas.codec import encode_event, event_from_dict
from schemas.errors import InvalidEvent
from schemas.events import CONTRACT_VERSION, Event
from schemas.ids import uuid7


@dataclass(frozen=True, slots=True)
class LineError:
    line: int
    """1-based line number in the input."""
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class ProduceReport:
    published: int
    invalid: tuple[LineError, ...]
    """Every line not published, in line order: contract errors, ``too_large``, ``refused``."""


def parse_line(
    raw: bytes | str, *, strict: bool = False, clock: Callable[[], int] = wall_clock_ms
) -> Event:
    """One line to a validated event; raises :class:`InvalidEvent` and nothing else."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("undecodable", f"not valid JSON: {exc}") from None
    if not strict and isinstance(obj, dict):
        obj.setdefault("version", CONTRACT_VERSION)
        if obj.get("event_id") is None:
            obj["event_id"] = uuid7()
        if obj.get("occurred_at") is None:
            obj["occurred_at"] = clock()
    event = event_from_dict(obj)
    encode_event(event)  # the size limit applies to what is published, defaults filled in
    return event


def parse_lines(
    lines: Iterable[bytes | str], *, strict: bool = False, clock: Callable[[], int] = wall_clock_ms
) -> Iterator[tuple[int, Event | LineError]]:
    """``(line number, event or error)`` for every non-blank line."""
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            yield number, parse_line(raw, strict=strict, clock=clock)
        except InvalidEvent as exc:
            yield number, LineError(number, exc.reason, exc.detail)


CLIENT_MAX_REQUEST_BYTES = 1_048_576
"""aiokafka's ``max_request_size`` (its default, which the SDK keeps): the client refuses a
record larger than this before sending it."""


def record_size(key: bytes | None, value: bytes) -> int:
    """The bytes of a record batch that holds only this record, uncompressed: what the
    client checks against its ``max_request_size`` and, at most, what the broker checks
    against ``max.message.bytes``."""
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, []))


@dataclass(frozen=True, slots=True)
class _Sent:
    line: int
    topic: str
    key: bytes | None
    value: bytes
    future: asyncio.Future[Any] | None
    """``None``: the client refused it before sending (``error``)."""
    error: BaseException | None = None


async def produce_lines(
    producer: AxmonProducer,
    lines: Iterable[bytes | str],
    *,
    strict: bool = False,
    on_error: Callable[[LineError], None] | None = None,
    max_record_bytes: Mapping[str, int] | None = None,
    reconnect: Callable[[], AxmonProducer] | None = None,
) -> ProduceReport:
    """Publish every valid line, wait for the broker, and report what was not published.

    A line whose record is larger than its topic's limit (``max_record_bytes``, the broker's
    ``max.message.bytes`` by topic; and never more than the client's
    :data:`CLIENT_MAX_REQUEST_BYTES`) is reported as ``too_large`` and not sent. A line the
    client or the broker refuses anyway fails with the records batched with it, and an
    idempotent producer's later records on that partition then fail too (their sequence
    numbers no longer follow on); so every failed line is sent again, alone, on a producer
    from ``reconnect`` (a new one after each refusal), and only the lines refused alone are
    reported (``refused``). A line resent after a timeout may be published twice, with the
    same event id: the worker counts it once."""
    limits = max_record_bytes or {}
    published = 0
    invalid: list[LineError] = []
    in_flight: list[_Sent] = []
    failed: list[_Sent] = []

    def reject(error: LineError) -> None:
        invalid.append(error)
        if on_error is not None:
            on_error(error)

    def settle_done(*, everything: bool = False) -> None:
        nonlocal published, in_flight
        waiting = []
        for sent in in_flight:
            if sent.future is not None and not sent.future.done() and not everything:
                waiting.append(sent)
            elif sent.future is not None and not sent.future.cancelled() and sent.future.exception() is None:
                published += 1
            else:
                error = sent.error if sent.future is None else _outcome_error(sent.future)
                failed.append(_Sent(sent.line, sent.topic, sent.key, sent.value, None, error))
        in_flight = waiting

    for number, item in parse_lines(lines, strict=strict):
        if isinstance(item, LineError):
            reject(item)
            continue
        topic, key = route(item, producer.config.topics)
        value = encode_event(item)
        limit = min(limits.get(topic, CLIENT_MAX_REQUEST_BYTES), CLIENT_MAX_REQUEST_BYTES)
        if (size := record_size(key, value)) > limit:
            reject(LineError(number, "too_large", f"the event is {size:,} bytes as a Kafka record, over the "
                             f"limit of {limit:,} bytes for {topic} (the broker's max.message.bytes)"))
            continue
        try:
            in_flight.append(_Sent(number, topic, key, value, await producer.send_record(topic, key, value)))
        except KafkaError as exc:
            in_flight.append(_Sent(number, topic, key, value, None, exc))
        if len(in_flight) >= 1024:
            settle_done()
    await producer.flush()
    if futures := [s.future for s in in_flight if s.future is not None]:
        await asyncio.wait(futures)
    settle_done(everything=True)
    refused: list[LineError] = []
    if failed:
        again, refused = await _send_alone(failed, reconnect)
        published += again
        for error in refused:
            if on_error is not None:
                on_error(error)
    return ProduceReport(published, tuple(sorted(invalid + refused, key=lambda e: e.line)))


def _outcome_error(future: asyncio.Future[Any]) -> BaseException:
    if future.cancelled():
        return asyncio.CancelledError()
    error = future.exception()
    return error if error is not None else RuntimeError("no outcome")


async def _send_alone(
    failed: list[_Sent], reconnect: Callable[[], AxmonProducer] | None
) -> tuple[int, list[LineError]]:
    """Send each failed line again on its own; the lines refused alone, and how many went."""
    if reconnect is None:
        return 0, [_refusal(s.line, s.error) for s in failed]
    published, refused = 0, []
    producer: AxmonProducer | None = None
    try:
        for sent in failed:
            if producer is None:
                producer = reconnect()
                await producer.start()
            try:
                future = await producer.send_record(sent.topic, sent.key, sent.value)
                await producer.flush()
                await future
                published += 1
            except Exception as exc:  # any refusal of this one line: report it, go on
                refused.append(_refusal(sent.line, exc))
                await producer.close()  # its sequence numbers now have a gap
                producer = None
    finally:
        if producer is not None:
            await producer.close()
    return published, refused


def _refusal(line: int, error: BaseException | None) -> LineError:
    what = type(error).__name__ if error is not None else "unknown error"
    detail = str(error).strip() if error is not None else ""
    return LineError(line, "refused", f"not published: {what}" + (f": {detail}" if detail else ""))
