"""Running a long-lived consumer (the sink, the notifier) until SIGTERM/SIGINT, starting it
again with backoff when Kafka fails it. Its committed offsets are where the next attempt
starts, so an attempt given up loses nothing."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from aiokafka.errors import KafkaError

from processor.errors import BrokerError

log = logging.getLogger(__name__)

C = TypeVar("C")
C_co = TypeVar("C_co", covariant=True)


class Stoppable(Protocol, Generic[C_co]):
    @property
    def stopping(self) -> bool: ...

    @property
    def counters(self) -> C_co: ...

    def stop(self) -> None: ...


@dataclass
class Restarts:
    """How often :func:`run_restarting` started an attempt again, and when the last one failed."""

    count: int = 0
    last_error_at_s: float | None = None
    """Epoch seconds."""


async def run_restarting(
    name: str,
    runner: Stoppable[C],
    attempt: Callable[[], Awaitable[C]],
    pause: Callable[[float], Awaitable[bool]],
    restarts: Restarts | None = None,
) -> C:
    """``attempt()`` until it returns; on a Kafka error, ``pause(delay)`` (1 s doubling up to
    30 s; it returns whether the runner was stopped meanwhile) and attempt again, counted in
    ``restarts``. SIGTERM and SIGINT call ``runner.stop()``."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runner.stop)
    delay = 1.0
    while True:
        try:
            return await attempt()
        except (BrokerError, KafkaError) as exc:
            if runner.stopping:
                return runner.counters
            if restarts is not None:
                restarts.count += 1
                restarts.last_error_at_s = time.time()
            log.warning("%s: %s; starting again in %.0f s", name, exc, delay)
            sys.stderr.write(f"axmon {name}: {exc}; starting again in {delay:.0f} s\n")
            if await pause(delay):
                return runner.counters
            delay = min(30.0, delay * 2)
