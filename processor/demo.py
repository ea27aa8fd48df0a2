"""``axmon demo``, the main job: a simulated workflow engine publishes through the SDK to the
real broker, and what the broker holds is read back, decoded and summarised.

The summary is computed from the records read back, not from what was sent, so it shows
that the events made the round trip.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from processor.admin import contract_topics, end_offsets, ensure_topics, read_topic
from processor.settings import Settings
from producers.client import AxmonProducer, ProducerConfig
from producers.simulator import ScenarioConfig, generate_scenario
from schemas.codec import decode_event
from schemas.errors import InvalidEvent
from schemas.events import Event, ExecutionStarted

_ENDINGS = {"execution.completed": "completed", "execution.failed": "failed", "execution.cancelled": "cancelled"}


async def run_demo(
    settings: Settings, bootstrap: str, *, executions: int, tenants: int, seed: int, console: Console
) -> int:
    topics = settings.topics
    created = await ensure_topics(bootstrap, contract_topics(topics, settings.partitions))
    console.print(f"Kafka at [bold]{bootstrap}[/]" + (f"; created {len(created)} topics" if created else ""))
    starts = {t: await end_offsets(bootstrap, t) for t in topics.sources}

    now = int(time.time() * 1000)
    scenario = generate_scenario(
        ScenarioConfig(seed=seed, tenants=tenants, executions=executions, start_ms=now - 10 * 60_000)
    )
    config = ProducerConfig(bootstrap=bootstrap, topics=topics, source="axmon-demo")
    began = time.perf_counter()
    with Progress(
        TextColumn("publishing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console, transient=True,
    ) as progress:
        task = progress.add_task("publish", total=len(scenario))
        async with AxmonProducer(config=config) as producer:
            for i, event in enumerate(scenario, 1):
                await producer.publish(event)
                if i % 500 == 0:
                    progress.update(task, completed=i)
            await producer.flush()
            progress.update(task, completed=len(scenario))
    took = time.perf_counter() - began
    console.print(
        f"published {len(scenario):,} events from {executions} simulated executions "
        f"in {took:.2f} s ({len(scenario) / took:,.0f} events/s, acks=all)"
    )

    read_back: list[Event] = []
    invalid = 0
    for topic in topics.sources:
        async for record in read_topic(bootstrap, topic, from_offsets=starts[topic]):
            try:
                read_back.append(decode_event(record.value or b""))
            except InvalidEvent:
                invalid += 1
    console.print(f"read back {len(read_back):,} events from the broker ({invalid} undecodable)")
    console.print(_type_table(read_back))
    console.print(_tenant_table(read_back))
    sent_ids = {e.event_id for e in scenario}
    got_ids = {e.event_id for e in read_back}
    if sent_ids != got_ids:
        console.print(f"[red]mismatch: {len(sent_ids - got_ids)} missing, {len(got_ids - sent_ids)} unexpected[/]")
        return 1
    console.print("[green]every published event came back from the broker[/]")
    return 0


def _type_table(events: list[Event]) -> Table:
    table = Table(title="Events by type (read back from Kafka)")
    table.add_column("type")
    table.add_column("count", justify="right")
    for type_, count in sorted(Counter(e.TYPE for e in events).items()):
        table.add_row(type_, f"{count:,}")
    return table


def _tenant_table(events: list[Event]) -> Table:
    outcome: dict[str, str] = {}
    tenant_of: dict[str, str] = {}
    tokens: defaultdict[str, int] = defaultdict(int)
    cost: defaultdict[str, float] = defaultdict(float)
    for event in events:
        if isinstance(event, ExecutionStarted):
            tenant_of[event.execution_id] = event.tenant_id
            outcome.setdefault(event.execution_id, "running")
        elif event.TYPE in _ENDINGS:
            outcome[event.execution_id] = _ENDINGS[event.TYPE]  # type: ignore[attr-defined]
        elif event.TYPE == "step.completed":
            tokens[event.tenant_id or ""] += getattr(event, "tokens_used", None) or 0
            cost[event.tenant_id or ""] += getattr(event, "cost", None) or 0.0
    per_tenant: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for execution_id, state in outcome.items():
        per_tenant[tenant_of.get(execution_id, "?")][state] += 1
    table = Table(title="Executions per tenant")
    for column in ("tenant", "total", "running", "completed", "failed", "cancelled", "tokens", "cost"):
        table.add_column(column, justify="left" if column == "tenant" else "right")
    for tenant in sorted(per_tenant):
        c = per_tenant[tenant]
        table.add_row(
            tenant, str(sum(c.values())), str(c["running"]), str(c["completed"]), str(c["failed"]),
            str(c["cancelled"]), f"{tokens[tenant]:,}", f"{cost[tenant]:.4f}",
        )
    return table
