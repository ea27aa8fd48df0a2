"""Faust's floor: the fastest the worker's Faust runtime consumes a topic when the agent does
nothing but decode, so the worker benchmark can tell Faust's own per-message cost from the
worker's work.

``python -m bench.faust_floor --bootstrap B --topic T --partitions N --expected E --app-id ID
[--tuned] [--set NAME=JSON ...]``

One ``faust.App(ID, **processor.runtime.faust_app.app_options(B, N))`` (the worker's exact settings, and
its two corrections of Faust: :mod:`processor.runtime.faust_patches`) with one agent on ``T``
(``key_type=bytes, value_type=bytes, internal=False``), reading batches as the worker's agents
do (``stream.take_events(2000, within=0.02)``) and doing only
:func:`schemas.codec.decode_event` on each value. Once ``E`` events are decoded it prints one
JSON line, ``{"events": E, "seconds": <first event to last>, "cpu_s": <process CPU time>,
"processing_cpu_s": <of it, from the first event to the last>}``, and exits 0. ``consumer_auto_offset_reset`` is ``earliest``: a fresh app id (consumer group)
reads the topic from the beginning.

``--tuned`` applies :func:`tuned_options` and :func:`tune_app`: only tunings that are safe for
the real worker and measurably help (see there). ``--set NAME=JSON`` overrides one more app
setting (a measuring aid: ``--set consumer_max_fetch_size=4194304``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import faust
from faust.sensors import Monitor
from faust.types import TP, EventT, Message, StreamT

from processor.runtime.faust_app import app_options
from processor.runtime.faust_patches import (
    patch_faust_commit_offsets,
    patch_faust_flow_control,
    patch_faust_inboxes,
)
from processor.runtime.inbox import Inbox
from processor.settings import Settings
from schemas.codec import decode_event

_BATCHES = Settings()
"""The worker's default batches (``--batch-max``, ``--batch-ms``): the floor takes the same."""


class LeanMonitor(Monitor):
    """Faust's Monitor sensor without its per-message bookkeeping (counters by topic, stream
    and task, per-event timings; all only read by Faust's web views and ``app.monitor``'s
    ``asdict``, which the worker does not use). Everything else is kept: the consumer calls
    ``app.monitor.on_tp_commit`` and ``track_tp_end_offset`` directly, and the consumer's
    slow-processing check reads ``stream_inbound_time``, which is still kept current."""

    def on_message_in(self, tp: TP, offset: int, message: Message) -> None:
        pass

    def on_stream_event_in(self, tp: TP, offset: int, stream: StreamT, event: EventT) -> dict[str, Any] | None:
        self.stream_inbound_time[tp] = time.monotonic()
        return None

    def on_stream_event_out(self, tp: TP, offset: int, stream: StreamT, event: EventT,
                            state: dict[str, Any] | None = None) -> None:
        pass

    def on_message_out(self, tp: TP, offset: int, message: Message) -> None:
        pass


def tuned_options() -> dict[str, Any]:
    """App settings on top of :func:`processor.runtime.faust_app.app_options` for ``--tuned``: none.

    Measured here (2026-12-01; 50,000 lifecycle events on 4 partitions, 2 cores shared with the
    broker and with other test runs: run-to-run noise +-25%), events/s of the floor, median of
    3-6 interleaved runs, change against the default run of the same sweep:

    - ``consumer_max_fetch_size`` 4 MiB: +5%, +6%; 16 MiB: +15%, +7% (CPU per event unchanged);
    - ``broker_max_poll_records`` 500: +2%; 5000: -2% (the default is unlimited);
    - ``stream_buffer_maxsize`` 32768: +22%, +9%, -6%; 2048: -32% (the worker's 8192 is
      already well above a 2000-event batch; smaller starves the stream, larger gains nothing
      that repeats);
    - ``broker_commit_interval`` 5 s: -6% (and the worker's crash replay and the benchmark's
      caught-up time would grow with it).

    None helps beyond the noise, so none is applied; the larger fetches and buffers would also
    cost the real worker memory and longer drains on a rebalance."""
    return {}


def tune_app(app: faust.App) -> None:
    """Sensor changes for ``--tuned``, before the app starts: :class:`LeanMonitor` instead of
    Faust's Monitor (``conf.Monitor``: the monitor object still exists for the consumer's
    direct calls, and ``app.sensors`` holds it as before).

    The Monitor's four per-message hooks cost 5.8-6.1 us a message, LeanMonitor's 0.7 us
    (measured in isolation, 200,000 calls of each): ~5 us of the floor's ~180 us per event
    here, ~3%. In the floor that is below the noise (+30%, +15%, -8% and -5% in four
    sweeps); removing the Monitor from ``app.sensors`` altogether measured the same (+34%) and
    would stop ``stream_inbound_time``, which the consumer's slow-processing check reads
    (false "stream idle" errors). Kept because the saving is certain, if small, and safe: the
    worker reads none of the Monitor's counters (its web views are off)."""
    app.conf.Monitor = LeanMonitor  # type: ignore[assignment]  # faust types the setting oddly


TUNED_SUMMARY = ("Faust's Monitor sensor without its per-message counters and timings\n"
                 "(`bench.faust_floor.LeanMonitor`: ~5 us a message less, measured in isolation; in the floor\n"
                 "within its run-to-run noise of about +-25% on a shared 2-core machine). Larger fetches\n"
                 "(`consumer_max_fetch_size`), `broker_max_poll_records`, `stream_buffer_maxsize` and\n"
                 "`broker_commit_interval` showed no gain beyond that noise and are not applied")
"""For the worker benchmark's method text."""


def build_app(app_id: str, bootstrap: str, topic: str, partitions: int, expected: int, *,
              tuned: bool = False, inbox: bool = False, overrides: dict[str, Any] | None = None) -> faust.App:
    """The app with its one decode-only agent, which ends the process after ``expected`` events.
    ``inbox``: the agent takes its batches from an :class:`~processor.runtime.inbox.Inbox`, as
    the worker's agents do, instead of Faust's ``take_events``."""
    patch_faust_commit_offsets()
    patch_faust_flow_control()
    if inbox:
        patch_faust_inboxes()
    options = app_options(bootstrap, partitions)
    if tuned:
        options.update(tuned_options())
    options.update(overrides or {})
    app = faust.App(app_id, **options)
    if tuned:
        tune_app(app)
    source = app.topic(topic, partitions=partitions, key_type=bytes, value_type=bytes, internal=False)

    async def floor(stream: Any) -> None:
        count = 0
        first: float | None = None
        cpu_first = 0.0
        if inbox:
            batches = Inbox.open(app, topic, high_water=app.conf.stream_buffer_maxsize).batches(
                _BATCHES.batch_max, _BATCHES.batch_ms / 1000)
            aiter(stream.channel)  # subscribes the topic
        else:
            batches = stream.take_events(_BATCHES.batch_max, within=_BATCHES.batch_ms / 1000)
        async for events in batches:
            if first is None:
                first, cpu_first = time.perf_counter(), time.process_time()
            for event in events:
                decode_event((event.value if inbox else event.message.value) or b"")
            count += len(events)
            if count >= expected:
                seconds = time.perf_counter() - first
                cpu = time.process_time()
                line = json.dumps({"events": count, "seconds": seconds, "cpu_s": cpu,
                                   "processing_cpu_s": cpu - cpu_first})
                # to fd 1 itself: Faust's worker redirects sys.stdout to its logger
                os.write(1, line.encode() + b"\n")
                sys.stderr.flush()
                os._exit(0)

    app.agent(source, name="floor", concurrency=1)(floor)
    return app


def _setting(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=JSON, got {text!r}")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"{name}: not JSON: {exc}") from exc


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.faust_floor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--expected", type=int, required=True, help="exit once this many events are decoded")
    parser.add_argument("--app-id", required=True, help="a fresh one per run (the consumer group)")
    parser.add_argument("--tuned", action="store_true", help="apply tuned_options() and tune_app()")
    parser.add_argument("--inbox", action="store_true", help="take batches from an Inbox (the worker's way), not take_events")
    parser.add_argument("--set", type=_setting, action="append", default=[], metavar="NAME=JSON",
                        help="override one app setting (repeatable)")
    args = parser.parse_args(argv)
    app = build_app(args.app_id, args.bootstrap, args.topic, args.partitions, args.expected,
                    tuned=args.tuned, inbox=args.inbox, overrides=dict(args.set))
    runner = faust.Worker(app, loglevel="warning", quiet=True)
    # Faust's terminal spinner sets the root logger to DEBUG (processor.runtime.worker.run_worker).
    runner.spinner = None
    runner.execute_from_commandline()


if __name__ == "__main__":
    main()
