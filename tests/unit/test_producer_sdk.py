"""The SDK's pure parts: event building, routing, JSON lines, ids, the simulator, settings."""

from __future__ import annotations

import uuid

import orjson
import pytest

from processor.errors import ConfigError
from processor.settings import Settings
from producers import EventFactory, UnknownExecutionError, route
from producers.jsonl import LineError, parse_lines
from producers.simulator import ScenarioConfig, generate_scenario
from schemas import InvalidEvent, StepCompleted, Topics, series_key
from schemas.events import LifecycleEvent
from schemas.ids import uuid7, uuid7_time_ms


def test_factory_remembers_tenants_and_steps() -> None:
    factory = EventFactory(source="svc", clock=lambda: 42)
    started = factory.start_execution("wf", "Workflow", "tenant_a", "alice", 2, {"pr": "#1"})
    step = factory.start_step(started.execution_id, "audit", "Audit")
    done = factory.step_event("step.completed", step.step_id, tokens_used=10, cost=0.5)
    assert isinstance(done, StepCompleted)
    assert done.execution_id == started.execution_id
    assert done.tenant_id == "tenant_a"
    assert done.source == "svc" and done.occurred_at == 42
    assert (done.tokens_used, done.cost) == (10, 0.5)


def test_unknown_steps_and_executions_need_explicit_ids() -> None:
    factory = EventFactory()
    with pytest.raises(UnknownExecutionError, match="tenant_id"):
        factory.end_execution("execution.completed", "nope")
    with pytest.raises(UnknownExecutionError, match="execution_id"):
        factory.step_event("step.failed", "nope", error_message="x")
    event = factory.step_event("step.retried", "s", execution_id="e", tenant_id="t")
    assert (event.execution_id, event.tenant_id) == ("e", "t")  # type: ignore[attr-defined]


def test_bad_arguments_raise_in_the_caller() -> None:
    factory = EventFactory()
    with pytest.raises(InvalidEvent, match="steps_total"):
        factory.start_execution("wf", "W", "t", "u", -3)
    with pytest.raises(InvalidEvent, match="metric_type"):
        factory.record("Not A Metric", 1.0)
    with pytest.raises(InvalidEvent, match="value"):
        factory.record("cpu.usage", float("nan"))


def test_factory_memory_is_bounded() -> None:
    factory = EventFactory(remember=10)
    ids = [factory.start_execution("wf", "W", "t", "u", 1).execution_id for _ in range(25)]
    factory.tenant_of(ids[-1], None)
    with pytest.raises(UnknownExecutionError):
        factory.tenant_of(ids[0], None)


def test_routing_follows_the_contract() -> None:
    factory = EventFactory()
    topics = Topics("x.")
    started = factory.start_execution("wf", "W", "t", "u", 1)
    assert route(started, topics) == ("x.workflow-events", started.execution_id.encode())
    sample = factory.record("cpu.usage", 3, labels={"b": "2", "a": "1"}, tenant_id="t")
    topic, key = route(sample, topics)
    assert topic == "x.metrics"
    assert key == series_key("t", "cpu.usage", {"a": "1", "b": "2"})
    assert orjson.loads(key) == ["t", "cpu.usage", [["a", "1"], ["b", "2"]]]


def test_jsonl_reports_line_numbers_and_keeps_valid_lines() -> None:
    lines = [
        b'{"type":"metric.recorded","metric_type":"cpu.usage","value":3}\n',
        b"\n",
        b"not json\n",
        b'{"type":"metric.recorded","metric_type":"cpu.usage","value":"x"}\n',
        b'{"type":"execution.completed","tenant_id":"t","execution_id":"e"}\n',
    ]
    results = list(parse_lines(lines, clock=lambda: 7))
    assert [n for n, _ in results] == [1, 3, 4, 5]
    errors = [r for _, r in results if isinstance(r, LineError)]
    assert [(e.line, e.reason) for e in errors] == [(3, "undecodable"), (4, "invalid_field")]
    first = results[0][1]
    assert not isinstance(first, LineError) and first.occurred_at == 7


def test_jsonl_strict_needs_the_envelope() -> None:
    [(_, result)] = list(parse_lines([b'{"type":"metric.recorded","metric_type":"cpu.usage","value":3}'], strict=True))
    assert isinstance(result, LineError) and result.reason == "missing_field"


def test_uuid7_is_time_ordered_and_valid() -> None:
    ids = [uuid7() for _ in range(5000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    parsed = uuid.UUID(ids[0])
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert uuid7_time_ms(uuid7(1_700_000_000_123)) >= 1_700_000_000_123


def test_simulator_is_deterministic_and_ordered() -> None:
    config = ScenarioConfig(seed=3, executions=40)
    a, b = generate_scenario(config), generate_scenario(config)
    strip = lambda events: [(e.TYPE, e.occurred_at, getattr(e, "step_key", None)) for e in events]  # noqa: E731
    assert strip(a) == strip(b)
    assert all(x.occurred_at <= y.occurred_at for x, y in zip(a, a[1:]))
    types = {e.TYPE for e in a}
    assert {"execution.started", "step.completed", "metric.recorded", "execution.completed"} <= types
    executions = {e.execution_id for e in a if isinstance(e, LifecycleEvent)}
    assert len(executions) == 40


def test_settings_precedence_and_validation() -> None:
    env = {"AXMON_BOOTSTRAP": "10.0.0.1:9092", "AXMON_PARTITIONS": "6"}
    settings = Settings.load({"partitions": 2, "bootstrap": None}, environ=env)
    assert settings.bootstrap == "10.0.0.1:9092" and settings.partitions == 2
    with pytest.raises(ConfigError, match="AXMON_PARTITIONS"):
        Settings.load(environ={"AXMON_PARTITIONS": "many"})
    with pytest.raises(ConfigError, match="bootstrap"):
        Settings.load({"bootstrap": "no-port"}, environ={})
    with pytest.raises(ConfigError, match="partitions"):
        Settings.load({"partitions": 0}, environ={})
