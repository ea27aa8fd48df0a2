"""``axmon produce``: JSON lines from a file or stdin, validated and published; a line over
the broker's record limit (its topic's ``max.message.bytes``, read from the broker) or refused
by it is reported by number, and the others are published."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from rich.console import Console

from processor.errors import ConfigError
from processor.runtime.admin import (
    contract_topics,
    ensure_topics,
    topic_max_message_bytes,
)
from processor.settings import Settings
from producers.client import AxmonProducer, ProducerConfig
from producers.jsonl import LineError, produce_lines


@contextmanager
def _open_input(path: str) -> Iterator[BinaryIO]:
    if path == "-":
        yield sys.stdin.buffer
        return
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        yield handle


async def run_produce(
    settings: Settings, bootstrap: str, path: str, *, strict: bool, console: Console
) -> int:
    await ensure_topics(bootstrap, contract_topics(settings.topics, settings.partitions))

    def report(error: LineError) -> None:
        console.print(f"line {error.line}: {error.reason}: {error.detail}", markup=False, soft_wrap=True)

    config = ProducerConfig(bootstrap=bootstrap, topics=settings.topics, source="axmon-produce")
    limits = await topic_max_message_bytes(bootstrap, [settings.topics.workflow_events, settings.topics.metrics, settings.topics.logs])
    with _open_input(path) as handle:
        async with AxmonProducer(config=config) as producer:
            result = await produce_lines(producer, handle, strict=strict, on_error=report, max_record_bytes=limits,
                                         reconnect=lambda: AxmonProducer(config=config))
    undelivered = sum(1 for e in result.invalid if e.reason in _UNDELIVERED)
    invalid = len(result.invalid) - undelivered
    console.print(
        f"published {result.published} event(s)"
        + (f", {invalid} invalid line(s) skipped" if invalid else "")
        + (f", {undelivered} line(s) the broker would not take" if undelivered else "")
    )
    return 1 if result.invalid else 0


_UNDELIVERED = frozenset({"refused"})
"""The reason of a line that is a valid event the broker refused (the others break a limit of the
contract or of the broker, and are skipped)."""
