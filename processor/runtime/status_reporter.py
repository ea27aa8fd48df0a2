"""The worker's heartbeat: a thread with its own event loop and producer that publishes a
:class:`~processor.runtime.worker_status.WorkerStatus` to ``<prefix>worker-status`` every few seconds.

It shares nothing with Faust but a read of the worker's flags and counters, so it goes on
beating while Faust is stuck (then saying ``stalled``), starting, or backing off before a
restart (``restarting``). Errors of the process (log records of exceptions, a restart's reason)
become its ``last_error``. A failed send is dropped: the next beat says the same, newer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer

from processor.runtime.worker_status import (
    HISTORY_ENV,
    History,
    LastError,
    WorkerStatus,
)

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 5.0
_SEND_TIMEOUT_S = 10.0
BURST_MS = 5_000
"""Errors within this of the last one are its consequences."""


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Observed:
    """What the worker says about itself at one moment."""

    state: str
    waiting: int | None = None
    stalled_for_s: float | None = None
    counters: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    partitions: Mapping[str, tuple[int, ...]] | None = None
    """The partitions it holds per source topic (``None``: not known)."""


class StatusReporter:
    """Publishes the worker's status every ``interval_s`` until :meth:`stop`."""

    def __init__(self, bootstrap: str, topic: str, group: str, observe: Callable[[], Observed], *,
                 stall_timeout_s: float, interval_s: float = DEFAULT_INTERVAL_S, state_dir: str | None = None) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.group = group
        self.interval_s = interval_s
        self.stall_timeout_s = stall_timeout_s
        self.state_dir = state_dir
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.worker = f"{self.host}:{self.pid}"
        self.run_started_at_ms = now_ms()
        self.history = History.from_text(os.environ.get(HISTORY_ENV), self.run_started_at_ms)
        self._observe = observe
        self._final: str | None = None
        """``restarting`` or ``stopped``: the state from now on, whatever the worker says."""
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._sent = threading.Condition()
        self._requested = 0
        self._published = 0
        self._thread: threading.Thread | None = None

    # -- what the worker tells it -------------------------------------------------------------

    def failed(self, exc_type: str, message: str) -> None:
        """An error of the process (it may go on, or restart)."""
        with self._lock:
            self.history = self.history.failed(LastError(now_ms(), exc_type, message[:2000]))

    def restarting(self, reason: str, timeout_s: float = 5.0) -> None:
        """The process starts itself again: record the restart, carry the history into the next
        run through the environment, and publish at once. The last error is the exception this
        run recorded, if any (the cause; ``reason`` is added), else ``reason``."""
        at = now_ms()
        with self._lock:
            last = self.history.last_error
            if last is None or last.at_ms < self.run_started_at_ms:
                last = LastError(at, "stalled" if reason.startswith("stalled") else "exit", reason)
            else:
                last = LastError(last.at_ms, last.type, f"{last.message} ({reason})")
            self.history = self.history.restarted(at, last)
            self._final = "restarting"
            os.environ[HISTORY_ENV] = self.history.to_text()
        self.publish_now(timeout_s)

    def status(self) -> WorkerStatus:
        try:
            seen = self._observe()
        except Exception as exc:  # the worker's objects changing under a read: say so, beat on
            seen = Observed("running", counters={"reporter": {"observe_failed": 1}})
            log.debug("worker status: %s", exc)
        with self._lock:
            history, final = self.history, self._final
        return WorkerStatus(
            worker=self.worker, host=self.host, pid=self.pid, group=self.group, state=final or seen.state,
            heartbeat_at_ms=now_ms(), run_started_at_ms=self.run_started_at_ms, history=history,
            interval_s=self.interval_s, stall_timeout_s=self.stall_timeout_s, waiting=seen.waiting,
            stalled_for_s=None if seen.stalled_for_s is None else round(seen.stalled_for_s, 1), counters=seen.counters,
            partitions=seen.partitions, state_dir=self.state_dir,
        )

    # -- the thread ------------------------------------------------------------------------------

    def start(self) -> StatusReporter:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="axmon-status", daemon=True)
        self._thread.start()
        return self

    def beat(self) -> None:
        """Publish soon, without waiting (from the event loop: the partitions it holds changed)."""
        self._wake.set()

    def publish_now(self, timeout_s: float = 5.0) -> bool:
        """Publish a record now; wait until it is sent (or ``timeout_s``)."""
        with self._sent:
            self._requested += 1
            wanted = self._requested
        self._wake.set()
        with self._sent:
            return self._sent.wait_for(lambda: self._published >= wanted, timeout_s)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Publish ``stopped`` and end the thread."""
        with self._lock:
            self._final = "stopped"
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    async def _run(self) -> None:
        producer: AIOKafkaProducer | None = None
        while True:
            self._wake.clear()
            stopping = self._stopping
            with self._sent:
                requested = self._requested
            try:
                if producer is None:
                    producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks=1, linger_ms=0,
                                                request_timeout_ms=int(_SEND_TIMEOUT_S * 1000))
                    try:
                        await asyncio.wait_for(producer.start(), _SEND_TIMEOUT_S)
                    except BaseException:
                        await _stop(producer)
                        producer = None
                        raise
                status = self.status()
                await asyncio.wait_for(producer.send_and_wait(self.topic, status.to_bytes(), key=self.worker.encode()),
                                       _SEND_TIMEOUT_S)
            except Exception as exc:  # the broker away: the next beat tries again
                log.debug("worker status not published: %s", exc)
            with self._sent:
                self._published = max(self._published, requested)
                self._sent.notify_all()
            if stopping:
                break
            await asyncio.to_thread(self._wake.wait, self.interval_s)
        if producer is not None:
            await _stop(producer)


async def _stop(producer: AIOKafkaProducer) -> None:
    try:
        await asyncio.wait_for(producer.stop(), _SEND_TIMEOUT_S)
    except Exception:  # closing a producer of a broker that went away: nothing to do
        pass


class ErrorRecorder(logging.Handler):
    """Log records of exceptions (level ERROR and above, with a traceback) become the reporter's
    last error: Faust logs an agent's or a service's crash so before it stops. The first of a
    burst is the cause; what is logged in the next seconds (children failing to stop) follows
    from it and is not recorded."""

    def __init__(self, reporter: StatusReporter | None = None) -> None:
        super().__init__(logging.ERROR)
        self.reporter = reporter

    def emit(self, record: logging.LogRecord) -> None:
        reporter = self.reporter
        if reporter is None or not record.exc_info or record.exc_info[1] is None:
            return
        last = reporter.history.last_error
        if last is not None and int(record.created * 1000) - last.at_ms < BURST_MS:
            return
        exc = record.exc_info[1]
        reporter.failed(type(exc).__name__, str(exc) or record.getMessage())
