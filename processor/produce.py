"""``axmon produce``: JSON lines from a file or stdin, validated and published."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from rich.console import Console

from processor.admin import contract_topics, ensure_topics
from processor.errors import ConfigError
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
        console.print(f"line {error.line}: {error.reason}: {error.detail}", markup=False)

    config = ProducerConfig(bootstrap=bootstrap, topics=settings.topics, source="axmon-produce")
    with _open_input(path) as handle:
        async with AxmonProducer(config=config) as producer:
            result = await produce_lines(producer, handle, strict=strict, on_error=report)
    console.print(
        f"published {result.published} event(s)"
        + (f", {len(result.invalid)} invalid line(s) skipped" if result.invalid else "")
    )
    return 1 if result.invalid else 0
