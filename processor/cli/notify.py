"""``axmon notify``: alert transitions to webhooks, at least once (:mod:`processor.runtime.notify_runner`
runs the protocol, :mod:`processor.runtime.notify` is the delivery policy)."""

from __future__ import annotations

import argparse
import time

from processor.cli.options import (
    Subparsers,
    add_broker_options,
    add_metrics_port,
    positive,
    resolve_bootstrap,
    seconds,
    seconds_or_zero,
)
from processor.cli.render import stderr_console
from processor.runtime.notify import NotifyCounters, RetryPolicy, display_url
from processor.runtime.notify_runner import NotifyConfig, run_notify
from processor.settings import ENV_WEBHOOKS, Settings


def register(subparsers: Subparsers) -> None:
    notify = subparsers.add_parser(
        "notify",
        help="POST every alert transition to webhooks (at least once)",
        description="Consumes the alerts topic (consumer group <prefix>notify, from the earliest "
        "record the first time) and POSTs each alert transition to every webhook: the record "
        "value as the JSON body, with the headers X-Axmon-Alert-Id and X-Axmon-Alert-Status. 2xx "
        "is delivered; 408, 429, 5xx, timeouts and connection errors are retried with "
        "exponential backoff; other answers are permanent failures. A record that finally "
        "fails is counted, logged and skipped. Offsets are committed once a record is done with, "
        "so a crash sends the records in flight again: receivers deduplicate on the pair "
        "(X-Axmon-Alert-Id, X-Axmon-Alert-Status). Stops gracefully on SIGTERM/Ctrl-C and prints "
        "the counters.",
    )
    notify.add_argument("--webhook", action="append", metavar="URL",
                        help=f"POST alert transitions to URL; repeat for several (env {ENV_WEBHOOKS}: URLs separated by spaces)")
    notify.add_argument("--timeout", type=seconds, default=10.0, metavar="S", help="one request at most S seconds (default 10)")
    notify.add_argument("--max-attempts", type=positive, default=10, metavar="N",
                        help="attempts per record and webhook, the first included (default 10)")
    notify.add_argument("--max-retry-time", type=seconds_or_zero, default=300.0, metavar="S",
                        help="no retry starts later than S seconds after a record's first attempt (default 300)")
    notify.add_argument("--backoff", type=seconds, default=0.5, metavar="S",
                        help="wait before the first retry, doubled for each one after (default 0.5)")
    notify.add_argument("--max-backoff", type=seconds, default=30.0, metavar="S", help="longest wait between attempts (default 30)")
    notify.add_argument("--progress-every", type=seconds, default=10.0, metavar="S",
                        help="a progress line on stderr at most every S seconds while counters change (default 10)")
    add_metrics_port(notify)
    add_broker_options(notify)
    notify.set_defaults(handler=cmd_notify)


def cmd_notify(args: argparse.Namespace) -> int:
    console = stderr_console()
    settings = Settings.load({
        "bootstrap": args.bootstrap,
        "kafka_dir": args.data_dir,
        "topic_prefix": args.topic_prefix,
        "partitions": args.partitions,
        "webhooks": tuple(dict.fromkeys(args.webhook)) if args.webhook else None,
    })
    config = NotifyConfig(
        webhooks=settings.webhooks,
        retry=RetryPolicy(
            initial_backoff_s=args.backoff, max_backoff_s=args.max_backoff,
            max_attempts=args.max_attempts, max_elapsed_s=args.max_retry_time,
        ),
        request_timeout_s=args.timeout,
    )
    config.validate()
    bootstrap = resolve_bootstrap(settings)

    def say(text: str) -> None:
        console.print(text, markup=False, soft_wrap=True)

    say(f"axmon notify: {bootstrap} {settings.topics.alerts} -> " + ", ".join(display_url(u) for u in config.webhooks))
    initial = NotifyCounters()
    for url in config.webhooks:
        initial.url(url)
    last_at, last_seen = float("-inf"), initial.snapshot()  # the first change is shown at once

    def report(counters: NotifyCounters) -> None:
        nonlocal last_at, last_seen
        now = time.monotonic()
        snapshot = counters.snapshot()
        if now - last_at >= args.progress_every and snapshot != last_seen:
            say(counters.summary())
            last_at, last_seen = now, snapshot

    counters = run_notify(settings, bootstrap, config, report=report, metrics_at=args.metrics_port)
    say("stopped: " + counters.report()[0])
    for line in counters.report()[1:]:
        say(line)
    return 0
