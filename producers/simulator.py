"""A simulated workflow engine: several tenants running AI-agent workflows whose steps call
models, spend tokens and money, fail, retry and sometimes take the whole execution down.

:func:`generate_scenario` is pure and deterministic for a seed (ids aside): it returns the
events in event-time order, built through the SDK's :class:`~producers.factory.EventFactory`.
The demo, the tests and the benchmarks all draw their traffic from it.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass

from producers.factory import EventFactory
from schemas.events import Event

WORKFLOWS: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    (
        "wf_code_review",
        "Code Review Workflow",
        (
            ("fetch_diff", "Fetch Diff"),
            ("security_audit", "Security Audit"),
            ("quality_analysis", "Quality Analysis"),
            ("summarise", "Summarise Findings"),
        ),
    ),
    (
        "wf_support_triage",
        "Support Ticket Triage",
        (("classify", "Classify Ticket"), ("retrieve", "Retrieve Context"), ("draft", "Draft Reply")),
    ),
    (
        "wf_research",
        "Deep Research Agent",
        (
            ("plan", "Plan"),
            ("search", "Web Search"),
            ("read", "Read Sources"),
            ("synthesise", "Synthesise"),
            ("cite", "Check Citations"),
        ),
    ),
)
MODELS = ("gpt-small", "gpt-large", "claude-fast")


@dataclass(frozen=True, slots=True)
class ScenarioConfig:
    seed: int = 7
    tenants: int = 3
    executions: int = 60
    start_ms: int = 1_767_225_600_000
    """Event time of the scenario's beginning (default 2026-01-01T00:00:00Z)."""
    span_ms: int = 10 * 60_000
    """Executions start uniformly within this span."""
    step_failure_rate: float = 0.08
    """Chance that a step attempt fails; a failed step is retried up to twice."""
    cancel_rate: float = 0.03
    unfinished_rate: float = 0.05
    """Chance that an execution is still running when the scenario ends."""
    samples_per_step: int = 2
    """api.request.duration samples per step attempt."""
    system_sample_interval_ms: int = 15_000
    """cpu.usage / worker.pool.utilization / workflow.queue.length cadence per tenant."""


def generate_scenario(config: ScenarioConfig = ScenarioConfig()) -> list[Event]:
    """All events of the scenario, ordered by ``occurred_at``."""
    rng = random.Random(config.seed)
    factory = EventFactory(source="axmon-simulator")
    tenants = [f"tenant_{chr(ord('a') + i)}" if i < 26 else f"tenant_{i}" for i in range(config.tenants)]
    streams: list[list[Event]] = []
    for n in range(config.executions):
        tenant = tenants[n % len(tenants)]
        start = config.start_ms + rng.randrange(max(1, config.span_ms))
        events = _execution(rng, factory, config, tenant, n, start)
        events.sort(key=lambda e: e.occurred_at)  # stable: same-time events keep their order
        streams.append(events)
    end = max((s[-1].occurred_at for s in streams if s), default=config.start_ms)
    streams.append(_system_samples(rng, factory, config, tenants, end))
    return list(heapq.merge(*streams, key=lambda e: e.occurred_at))


def _execution(
    rng: random.Random,
    factory: EventFactory,
    config: ScenarioConfig,
    tenant: str,
    n: int,
    start: int,
) -> list[Event]:
    workflow_id, workflow_name, steps = WORKFLOWS[rng.randrange(len(WORKFLOWS))]
    events: list[Event] = []
    started = factory.start_execution(
        workflow_id,
        workflow_name,
        tenant,
        f"user_{rng.randrange(5)}",
        len(steps),
        {"run": n, "priority": rng.choice(["low", "normal", "high"])},
        occurred_at=start,
    )
    execution_id = started.execution_id
    events.append(started)
    now = start
    unfinished = rng.random() < config.unfinished_rate
    cancel_at = rng.randrange(len(steps)) if rng.random() < config.cancel_rate else None
    for index, (step_key, step_name) in enumerate(steps):
        if unfinished and index == len(steps) - 1:
            return events
        if cancel_at == index:
            events.append(
                factory.end_execution(
                    "execution.cancelled", execution_id, reason="cancelled by user", occurred_at=now + 1
                )
            )
            return events
        now += rng.randrange(1, 50)
        events.append(factory.update_execution(execution_id, current_step=step_key, occurred_at=now))
        step = factory.start_step(execution_id, step_key, step_name, occurred_at=now)
        events.append(step)
        model = rng.choice(MODELS)
        for attempt in range(3):
            took = int(rng.lognormvariate(6.5, 0.6))  # ~650 ms median
            for _ in range(config.samples_per_step):
                events.append(
                    factory.record(
                        "api.request.duration",
                        round(took * rng.uniform(0.2, 0.5), 3),
                        unit="ms",
                        labels={"model": model, "endpoint": "chat"},
                        tenant_id=tenant,
                        occurred_at=now + rng.randrange(1, took + 1),
                    )
                )
            now += took
            if rng.random() >= config.step_failure_rate:
                events.append(
                    factory.step_event(
                        "step.completed",
                        step.step_id,
                        tokens_used=rng.randrange(200, 4000),
                        cost=round(rng.uniform(0.0005, 0.02), 6),
                        input_size=rng.randrange(500, 20_000),
                        output_size=rng.randrange(100, 5_000),
                        occurred_at=now,
                    )
                )
                break
            events.append(
                factory.step_event(
                    "step.failed", step.step_id, error_message=f"{model}: rate limited", occurred_at=now
                )
            )
            if attempt == 2 or rng.random() < 0.35:  # retries exhausted or not retryable
                events.append(
                    factory.end_execution(
                        "execution.failed",
                        execution_id,
                        error_message=f"step {step_key} failed after {attempt + 1} attempt(s)",
                        occurred_at=now + 1,
                    )
                )
                return events
            now += rng.randrange(100, 1_000)
            events.append(factory.step_event("step.retried", step.step_id, occurred_at=now))
    events.append(factory.end_execution("execution.completed", execution_id, occurred_at=now + 1))
    return events


def _system_samples(
    rng: random.Random, factory: EventFactory, config: ScenarioConfig, tenants: list[str], end: int
) -> list[Event]:
    events: list[Event] = []
    interval = max(1, config.system_sample_interval_ms)
    for t in range(config.start_ms, end + 1, interval):
        for tenant in tenants:
            jitter = rng.randrange(interval // 10 + 1)
            events.append(
                factory.record("cpu.usage", round(rng.uniform(5, 95), 2), unit="percent",
                               labels={"host": "worker-1"}, tenant_id=tenant, occurred_at=t + jitter)
            )
            events.append(
                factory.record("workflow.queue.length", rng.randrange(0, 40), unit="count",
                               tenant_id=tenant, occurred_at=t + jitter)
            )
        events.append(
            factory.record("worker.pool.utilization", round(rng.uniform(10, 100), 2),
                           unit="percent", labels={"pool": "default"}, occurred_at=t)
        )
    events.sort(key=lambda e: e.occurred_at)
    return events


def disorder(events: list[Event], rng: random.Random, max_shift_ms: int) -> list[Event]:
    """The events in a shuffled order where no event moves more than about ``max_shift_ms`` of
    event time away from its place: what a fleet of engines with skewed clocks and retrying
    clients delivers."""
    keyed = [(e.occurred_at + rng.uniform(-max_shift_ms / 2, max_shift_ms / 2), n, e) for n, e in enumerate(events)]
    keyed.sort(key=lambda item: (item[0], item[1]))
    return [e for _, _, e in keyed]


def with_resends(events: list[Event], rng: random.Random, fraction: float) -> list[Event]:
    """Some events sent again a little later (same event id), as a client retrying after a
    timeout does."""
    later: dict[int, list[Event]] = {}
    for index in rng.sample(range(len(events)), int(len(events) * fraction)):
        later.setdefault(min(len(events) - 1, index + rng.randrange(1, 20)), []).append(events[index])
    out: list[Event] = []
    for index, event in enumerate(events):
        out.append(event)
        out.extend(later.get(index, ()))
    return out
