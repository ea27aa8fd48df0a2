"""``axmon demo``, the main job: the whole pipeline on one machine.

It starts the worker and the sink (as child processes, as a user would), runs a simulated
workflow engine in real time for a while (several tenants, AI-agent workflows whose steps
spend tokens and money, fail, retry; metric samples), waits until the database has caught up
with the topics, and shows ``axmon stats``, ``axmon workflows`` and ``axmon alerts`` from the database. The demo uses
5-second windows and a small rules file so that alerts fire within its minute.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from processor.admin import contract_topics, ensure_topics
from processor.children import AxmonChild
from processor.errors import AxmonError
from processor.settings import Settings, default_data_home
from processor.settle import settled
from producers.client import AxmonProducer, ProducerConfig
from producers.simulator import ScenarioConfig, generate_scenario
from schemas.events import Event


DEMO_RULES = """\
# The demo's alert rules (axmon worker --rules). Its windows are 5 s long so that it shows alerts
# within a minute; a real deployment keeps the defaults (60 s windows, 5 min grace).
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
DEMO_FOLD = ["--window-ms", "5000", "--grace-ms", "2000"]


class DemoError(AxmonError):
    """A part of the pipeline did not come up or did not catch up."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    seconds: float = 20.0
    executions: int = 200
    tenants: int = 3
    seed: int = 7


async def run_demo(settings: Settings, bootstrap: str, options: DemoOptions, console: Console) -> int:
    topics = settings.topics
    await ensure_topics(bootstrap, contract_topics(topics, settings.partitions))
    db = settings.db_path.resolve()
    common = ["--bootstrap", bootstrap, "--topic-prefix", settings.topic_prefix, "--partitions", str(settings.partitions)]
    log_dir = default_data_home() / "demo"
    log_dir.mkdir(parents=True, exist_ok=True)
    console.print(f"Kafka at [bold]{bootstrap}[/]; database [bold]{db}[/]; logs in {log_dir}")
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
        await _run_engine(bootstrap, settings, events, now, children, console)
        await _wait_for_database(bootstrap, settings, db, children, console)
    finally:
        for child in children:
            child.stop()
    _show(db, console)
    return 0


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
