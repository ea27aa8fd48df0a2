"""The execution fold is a function of the set of events: order, duplicates and redeliveries
do not change the final state."""

from __future__ import annotations

import functools
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from processor.folds.execution import apply, snapshot, state_from_json, state_to_json
from producers.factory import EventFactory
from producers.simulator import ScenarioConfig, generate_scenario
from schemas.events import LifecycleEvent


def fold(events: list[LifecycleEvent]) -> dict:
    state = functools.reduce(apply, events, None)  # type: ignore[arg-type]
    assert state is not None
    return snapshot(state)


@st.composite
def execution_events(draw: st.DrawFn) -> list[LifecycleEvent]:
    """One execution's events with realistic and adversarial shapes: steps that fail, retry,
    complete; updates; a terminal event; equal timestamps (ties broken by event id)."""
    clock = iter(range(10_000))
    times = st.integers(0, 50)
    factory = EventFactory(clock=lambda: next(clock))
    start = draw(times)
    started = factory.start_execution("wf", "Workflow", "t1", "u1", draw(st.integers(0, 5)), {"k": draw(st.integers(0, 3))}, occurred_at=start)
    events: list[LifecycleEvent] = [started]
    for n in range(draw(st.integers(0, 4))):
        step = factory.start_step(started.execution_id, f"s{n}", f"Step {n}", occurred_at=draw(times))
        events.append(step)
        for _ in range(draw(st.integers(0, 3))):
            kind = draw(st.sampled_from(["step.completed", "step.failed", "step.retried"]))
            fields = {}
            if kind == "step.completed":
                fields = {"tokens_used": draw(st.integers(0, 100)), "cost": draw(st.sampled_from([0.1, 0.25, 1.5]))}
            elif kind == "step.failed":
                fields = {"error_message": draw(st.sampled_from(["a", "b"]))}
            events.append(factory.step_event(kind, step.step_id, occurred_at=draw(times), **fields))  # type: ignore[arg-type]
    for _ in range(draw(st.integers(0, 2))):
        events.append(factory.update_execution(started.execution_id, current_step=draw(st.sampled_from(["x", "y"])),
                                               steps_total=draw(st.integers(0, 9)), occurred_at=draw(times)))
    for _ in range(draw(st.integers(0, 2))):
        kind = draw(st.sampled_from(["execution.completed", "execution.failed", "execution.cancelled"]))
        fields = {"error_message": "boom"} if kind == "execution.failed" else {}
        events.append(factory.end_execution(kind, started.execution_id, occurred_at=draw(times), **fields))  # type: ignore[arg-type]
    return events


@settings(max_examples=300)
@given(execution_events(), st.randoms(use_true_random=False), st.integers(0, 10))
def test_any_order_and_duplicates_give_the_same_state(events: list[LifecycleEvent], rng: random.Random, dups: int) -> None:
    expected = fold(events)
    shuffled = events + [rng.choice(events) for _ in range(dups)]
    rng.shuffle(shuffled)
    assert fold(shuffled) == expected


@settings(max_examples=100)
@given(execution_events())
def test_state_survives_serialisation(events: list[LifecycleEvent]) -> None:
    state = functools.reduce(apply, events, None)  # type: ignore[arg-type]
    assert state is not None
    assert state_from_json(state_to_json(state)) == state


def test_step_completed_before_its_start_ends_completed() -> None:
    f = EventFactory()
    started = f.start_execution("wf", "W", "t", "u", 1, occurred_at=100)
    step = f.start_step(started.execution_id, "k", "K", occurred_at=110)
    done = f.step_event("step.completed", step.step_id, tokens_used=5, cost=0.5, occurred_at=150)
    end = f.end_execution("execution.completed", started.execution_id, occurred_at=160)
    view = fold([end, done, step, started])
    assert view["status"] == "completed" and view["duration"] == 60
    [s] = view["steps"]
    assert (s["status"], s["started_at"], s["completed_at"], s["duration"]) == ("completed", 110, 150, 40)
    assert (view["steps_completed"], view["tokens_used"], view["cost"]) == (1, 5, 0.5)
    assert view["current_step"] == "k"


def test_retry_then_success() -> None:
    f = EventFactory()
    started = f.start_execution("wf", "W", "t", "u", 1, occurred_at=0)
    step = f.start_step(started.execution_id, "k", "K", occurred_at=1)
    events = [
        started,
        step,
        f.step_event("step.failed", step.step_id, error_message="rate limited", occurred_at=2),
        f.step_event("step.retried", step.step_id, occurred_at=3),
        f.step_event("step.completed", step.step_id, occurred_at=9),
    ]
    [s] = fold(events)["steps"]
    assert (s["status"], s["retry_count"], s["error_message"], s["duration"]) == ("completed", 1, "rate limited", 8)
    running = fold(events[:4])
    assert running["steps"][0]["status"] == "running" and running["status"] == "running"


def test_events_without_start_are_pending_then_running() -> None:
    f = EventFactory()
    step = f.start_step("e1", "k", "K", tenant_id="t", occurred_at=5)
    assert fold([step])["status"] == "pending"
    started = f.start_execution("wf", "W", "t", "u", 2, execution_id="e1", occurred_at=1)
    view = fold([step, started])
    assert view["status"] == "running" and view["workflow_name"] == "W"


def test_the_simulator_scenario_folds_the_same_shuffled() -> None:
    events = [e for e in generate_scenario(ScenarioConfig(seed=5, executions=30)) if isinstance(e, LifecycleEvent)]
    by_execution: dict[str, list[LifecycleEvent]] = {}
    for e in events:
        by_execution.setdefault(e.execution_id, []).append(e)
    rng = random.Random(1)
    for evs in by_execution.values():
        shuffled = evs + evs[:2]
        rng.shuffle(shuffled)
        assert fold(shuffled) == fold(evs)
    statuses = {fold(evs)["status"] for evs in by_execution.values()}
    assert "completed" in statuses and len(statuses) >= 3


