"""Finished executions to an OTLP/HTTP receiver: from the database, or as they finish.

:func:`export_database` pages through the finished executions of a SQLite database (oldest end
first) and sends each page as one request. :func:`follow_execution_state` consumes
``axmon.execution-state`` in a consumer group and sends the executions whose snapshot is
finished; it commits a batch's offsets only after the receiver accepted its spans, so a crash
re-sends rather than loses (at least once: the derived ids make a re-send the same spans).
Both build the spans with :func:`processor.folds.spans.execution_spans`.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError

from processor.errors import BrokerError
from processor.folds.spans import Span, execution_spans, is_finished
from processor.runtime.otlp import OtlpClient, encode_traces
from processor.store.queries import Monitor
from processor.urls import DbLocation

DEFAULT_GROUP = "axmon-traces"
"""The consumer group of ``axmon traces``: its committed offsets are how far it has exported."""


@dataclass(slots=True)
class ExportCounts:
    executions: int = 0
    spans: int = 0
    requests: int = 0
    skipped: int = 0
    """Snapshots not exported: unfinished, tombstones, undecodable, or the same as last sent."""


async def export_database(
    db_path: DbLocation,
    client: OtlpClient,
    *,
    since_ms: int | None = None,
    tenant_id: str | None = None,
    page: int = 200,
    service_name: str = "axmon",
    on_page: Callable[[ExportCounts], None] | None = None,
) -> ExportCounts:
    """Send every finished execution of the database that ended at or after ``since_ms``."""
    counts = ExportCounts()
    after: tuple[int, str] | None = None
    with Monitor(db_path) as monitor:
        while True:
            rows = monitor.get_finished_executions(since_ms=since_ms, after=after, tenant_id=tenant_id, limit=page)
            if not rows:
                return counts
            steps = monitor.get_steps_of([r["id"] for r in rows])
            spans: list[Span] = []
            for row in rows:
                spans += execution_spans(row, steps[row["id"]])
            await client.send_with_retry(encode_traces(spans, service_name=service_name))
            counts.executions += len(rows)
            counts.spans += len(spans)
            counts.requests += 1
            after = (rows[-1]["completed_at"], rows[-1]["id"])
            if on_page is not None:
                on_page(counts)


class _Sent:
    """A bounded memory of the last snapshot sent per execution (a digest), so that the same
    finished snapshot seen again (a redelivery, a republish) is not sent twice."""

    def __init__(self, limit: int = 100_000) -> None:
        self._digests: OrderedDict[str, bytes] = OrderedDict()
        self._limit = limit

    def is_new(self, execution_id: str, raw: bytes) -> bool:
        digest = hashlib.blake2b(raw, digest_size=16).digest()
        if self._digests.get(execution_id) == digest:
            return False
        self._digests[execution_id] = digest
        self._digests.move_to_end(execution_id)
        while len(self._digests) > self._limit:
            self._digests.popitem(last=False)
        return True


def spans_of_snapshot(value: bytes | None) -> list[Span] | None:
    """The spans of one ``axmon.execution-state`` value, or ``None`` when it is a tombstone, not
    a snapshot, or not finished."""
    if value is None:
        return None
    try:
        snapshot: Any = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(snapshot, dict) or "id" not in snapshot or not is_finished(snapshot):
        return None
    return execution_spans(snapshot, snapshot.get("steps") or [])


async def follow_execution_state(
    bootstrap: str,
    topic: str,
    client: OtlpClient,
    *,
    group_id: str = DEFAULT_GROUP,
    from_beginning: bool = False,
    stop: asyncio.Event | None = None,
    service_name: str = "axmon",
    max_records: int = 500,
    on_batch: Callable[[ExportCounts], None] | None = None,
) -> ExportCounts:
    """Export finished executions from ``topic`` until ``stop`` is set. A group seen for the
    first time starts at the end of the topic, or at its beginning with ``from_beginning``; after
    that at its committed offsets. A receiver that fails is retried (doubling delays up to 30 s)
    and the offsets wait: nothing is committed that was not accepted."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
        max_poll_records=max_records,
    )
    try:
        await consumer.start()
    except KafkaConnectionError as exc:
        raise BrokerError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    counts = ExportCounts()
    sent = _Sent()
    try:
        while stop is None or not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500, max_records=max_records)
            if not batch:
                continue
            spans: list[Span] = []
            executions = 0
            for messages in batch.values():
                for m in messages:
                    built = spans_of_snapshot(m.value)
                    key = m.key.decode("utf-8", "replace") if m.key else ""
                    if built is None or m.value is None or not sent.is_new(key, m.value):
                        counts.skipped += 1
                        continue
                    spans += built
                    executions += 1
            if spans:
                await client.send_with_retry(encode_traces(spans, service_name=service_name), attempts=0, stop=stop)
                counts.requests += 1
            await consumer.commit()
            counts.executions += executions
            counts.spans += len(spans)
            if on_batch is not None:
                on_batch(counts)
        return counts
    finally:
        await consumer.stop()
