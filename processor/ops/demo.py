"""``axmon demo``, the main job: the whole pipeline on one machine.

It starts the worker and the sink (as child processes, as a user would), runs a simulated
workflow engine in real time for a while (several tenants, AI-agent workflows whose steps
spend tokens and money, fail, retry; metric samples), waits until the database has caught up
with the topics, shows ``axmon stats``, ``axmon workflows`` and ``axmon alerts`` from the database, and
ends by starting ``axmon serve`` over it in the background (the dashboard's URL and how to stop
it are its last lines; see :mod:`processor.ops.demo_dashboard`). The demo uses
5-second windows and a small rules file so that alerts fire within its minute. Each run has its
own topics (``axmon.demo-<time>.``, unless a prefix is given) and a fresh database (unless
``--keep-db``), so one run's numbers are not mixed with another's.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from processor.errors import AxmonError, ConfigError
from processor.folds.config import FoldConfig
from processor.ops.children import AxmonChild
from processor.ops.demo_dashboard import start_dashboard
from processor.ops.settle import settled
from processor.runtime.admin import contract_topics, ensure_topics
from processor.settings import Settings, default_data_home
from producers.client import AxmonProducer, ProducerConfig
from producers.factory import EventFactory
from producers.simulator import ScenarioConfig, generate_scenario
from schemas.events import Event

DEMO_RULES = """\
# The demo's alert rules (axmon worker --rules). Its windows are 5 s long so that it shows alerts
# within a minute; a real deployment keeps the defaults (60 s windows, 5 min grace). Besides the
# simulated engine's random load, the demo runs one host and one queue through a fixed spike in
# the middle of the run (host demo-spike, queue demo-burst), so both rules fire in every run.
rules:
  - name: hot-cpu
    metric_type: cpu.usage
    aggregation: p95
    operator: gt
    threshold: 90
    resolve_threshold: 80
    window: 10s
    for: 5s
    cooldown: 10s
    severity: warning
  - name: long-queue
    metric_type: workflow.queue.length
    aggregation: max
    operator: gte
    threshold: 38
    window: 5s
    severity: info
"""
DEMO_WINDOW_MS, DEMO_GRACE_MS = 5_000, 2_000
DEMO_FOLD = ["--window-ms", str(DEMO_WINDOW_MS), "--grace-ms", str(DEMO_GRACE_MS)]
DEMO_ALERTS = ("hot-cpu", "long-queue")
"""The rules the demo's spike makes fire: the demo waits until the database shows each firing."""
SPIKE = (0.1, 0.45)
"""The spike's start and end, as fractions of the run: more than a 5 s window after any
alignment, so hot-cpu's 10 s p95 holds at two window closes 5 s apart (pending, then firing)."""


def spike_load_end(span_ms: int) -> int:
    """How long the spike's host and queue report (ms from the start): the run, or longer, until
    stream time has closed the windows that make hot-cpu fire. The worker closes windows when
    stream time crosses a multiple of its sweep interval, after their end plus the grace."""
    spike_from = int(span_ms * SPIKE[0])
    firing_closes = spike_from + 2 * DEMO_WINDOW_MS + DEMO_GRACE_MS + FoldConfig().sweep_interval_ms
    return max(span_ms, firing_closes + 1_000)


class DemoError(AxmonError):
    """A part of the pipeline did not come up or did not catch up."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    seconds: float = 20.0
    executions: int = 200
    tenants: int = 3
    seed: int = 7
    keep_db: bool = False
    """Write into the existing database instead of a fresh one."""
    local_broker: bool = True
    """The broker is the local one (``axmon kafka``): say how to stop it at the end."""
    serve: bool = True
    """End by starting ``axmon serve`` over the database in the background (the dashboard)."""
    serve_port: int = 8321
    """The dashboard's port, or the next free one."""


async def run_demo(settings: Settings, bootstrap: str, options: DemoOptions, console: Console) -> int:
    topics = settings.topics
    await ensure_topics(bootstrap, contract_topics(topics, settings.partitions))
    if isinstance(settings.db_path, str):
        raise ConfigError("the demo writes a SQLite file: --db must be a path")
    db = settings.db_path.resolve()
    if not options.keep_db:
        set_aside(db, console)
    common = ["--bootstrap", bootstrap, "--topic-prefix", settings.topic_prefix, "--partitions", str(settings.partitions)]
    log_dir = default_data_home() / "demo"
    log_dir.mkdir(parents=True, exist_ok=True)
    console.print(f"Kafka at [bold]{bootstrap}[/], topics [bold]{settings.topic_prefix}*[/]; database [bold]{db}[/]; "
                  f"logs in {log_dir}")
    rules = log_dir / "rules.yaml"
    rules.write_text(DEMO_RULES)
    children = [
        AxmonChild("worker", ["worker", *common, *DEMO_FOLD, "--rules", str(rules)], log_dir).start(),
        AxmonChild("sink", ["sink", *common, *DEMO_FOLD, "--db", str(db)], log_dir).start(),
    ]
    try:
        now = int(time.time() * 1000)
        span = int(options.seconds * 1000 * 0.6)
        events = generate_scenario(
            ScenarioConfig(seed=options.seed, tenants=options.tenants, executions=options.executions,
                           start_ms=now, span_ms=max(1, span), system_sample_interval_ms=2_000)
        )
        events = sorted([*events, *spike_load(now, int(options.seconds * 1000))], key=lambda e: e.occurred_at)
        await _run_engine(bootstrap, settings, events, now, children, console)
        await _wait_for_database(bootstrap, settings, db, children, console)
        _wait_for_alerts(db, DEMO_ALERTS, console)
    finally:
        for child in children:
            child.stop()
    _show(db, console)
    _say_what_runs(settings, bootstrap, options, console)
    if options.serve:
        start_dashboard(db, log_dir, options.serve_port, console)
    return 0


def spike_load(start_ms: int, span_ms: int, tenant: str = "tenant_a") -> list[Event]:
    """One sample a second of a host's CPU and a queue's length over ``span_ms`` (or
    :func:`spike_load_end`): calm, then a spike (:data:`SPIKE`), then calm again. Fixed values,
    so the demo's rules fire every run."""
    factory = EventFactory(source="axmon-demo")
    spike_from, spike_to = (start_ms + int(span_ms * f) for f in SPIKE)
    events: list[Event] = []
    for n, at in enumerate(range(start_ms, start_ms + spike_load_end(span_ms) + 1, 1_000)):
        hot = spike_from <= at < spike_to
        events.append(factory.record("cpu.usage", 97.0 if hot else 40.0 + n % 5 * 5, unit="percent",
                                     labels={"host": "demo-spike"}, tenant_id=tenant, occurred_at=at))
        events.append(factory.record("workflow.queue.length", 45 if hot else 5 + n % 4, unit="count",
                                     labels={"queue": "demo-burst"}, tenant_id=tenant, occurred_at=at))
    return events


def set_aside(db: Path, console: Console) -> None:
    """Start the demo on a fresh database: an existing one is kept as ``<name>.previous``
    (replacing the one kept before), its write-ahead log checkpointed into it first."""
    if not db.exists():
        return
    try:
        conn = sqlite3.connect(db)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise DemoError(f"{db} is in use or unreadable ({exc}); stop the sink that writes it, or pass --keep-db") from exc
    previous = db.with_name(db.name + ".previous")
    db.replace(previous)
    for suffix in ("-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)
    console.print(f"a fresh database: the one there before is now {previous} (--keep-db to add to it instead)")


async def _run_engine(
    bootstrap: str, settings: Settings, events: list[Event], start_ms: int, children: list[AxmonChild], console: Console
) -> None:
    """Publish each event when its event time comes, as a live engine would."""
    config = ProducerConfig(bootstrap=bootstrap, topics=settings.topics, source="axmon-demo")
    began = time.monotonic()
    with Progress(
        TextColumn("simulated engine"), BarColumn(), MofNCompleteColumn(), TextColumn("events"), TimeElapsedColumn(),
        console=console, transient=True,
    ) as progress:
        task = progress.add_task("engine", total=len(events))
        async with AxmonProducer(config=config) as producer:
            for n, event in enumerate(events, 1):
                due = (event.occurred_at - start_ms) / 1000 - (time.monotonic() - began)
                if due > 0:
                    await producer.flush()
                    progress.update(task, completed=n - 1)
                    for child in children:
                        child.check()
                    await asyncio.sleep(due)
                await producer.publish(event)
            await producer.flush()
            progress.update(task, completed=len(events))
    console.print(f"the simulated engine published {len(events):,} events in {time.monotonic() - began:.1f} s")


async def _wait_for_database(bootstrap: str, settings: Settings, db: Path, children: list[AxmonChild], console: Console) -> None:
    """Until the worker has committed all its input and the sink has written everything the
    topics hold, twice in a row."""
    deadline = time.monotonic() + 180
    previous = None
    with console.status("waiting for the worker and the sink to catch up") as status:
        while True:
            for child in children:
                child.check()
            done, previous = await settled(bootstrap, settings.topics, db, previous)
            if done:
                return
            status.update(f"waiting for the worker ({previous.worker:,} records behind) and the sink ({previous.sink:,})")
            if time.monotonic() > deadline:
                raise DemoError(f"the pipeline did not catch up in 180 s ({previous})")
            await asyncio.sleep(1.5)


def _show(db: Path, console: Console) -> None:
    """``axmon stats`` and ``axmon workflows`` on the demo's database, as a user would run them."""
    for args in (["stats"], ["workflows", "--limit", "15"], ["alerts", "--limit", "10"]):
        console.print(f"\n[bold]$ axmon {' '.join(args)} --db {db}[/]")
        subprocess.run(
            [sys.executable, "-m", "processor.cli", *args, "--db", str(db)],
            check=False, env={**os.environ, "COLUMNS": str(console.width)},
        )


def _wait_for_alerts(db: Path, rules: tuple[str, ...], console: Console, timeout: float = 60.0) -> None:
    """Until the database shows each of ``rules`` firing (at some point of its history)."""
    deadline = time.monotonic() + timeout
    with console.status("waiting for the alerts to reach the database"):
        while (missing := [r for r in rules if not _fired(db, r)]) and time.monotonic() < deadline:
            time.sleep(0.5)
    if missing:
        console.print(f"[yellow]no {', '.join(missing)} alert fired within {timeout:.0f} s[/]: see the worker's log")


def _fired(db: Path, rule: str) -> bool:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    except sqlite3.Error:
        return False
    try:
        return conn.execute(
            "SELECT 1 FROM alerts JOIN alert_history ON alert_history.alert_id = alerts.id "
            "WHERE alerts.rule = ? AND alert_history.status = 'firing' LIMIT 1", (rule,)).fetchone() is not None
    except sqlite3.Error:  # not created yet
        return False
    finally:
        conn.close()


def _say_what_runs(settings: Settings, bootstrap: str, options: DemoOptions, console: Console) -> None:
    prefix = settings.topic_prefix
    console.print(f"\nThe demo's topics are {prefix}*: e.g. [bold]axmon tail execution-state --from-beginning "
                  f"--topic-prefix {prefix}[/]")
    if options.local_broker:
        console.print(f"The local Kafka broker is still running at {bootstrap}: stop it with [bold]axmon kafka stop[/] "
                      "(or make kafka-stop); [bold]axmon kafka reset[/] also removes its data.")
