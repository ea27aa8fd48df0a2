"""Hostile input through the contract and the pure cores: every value the contract accepts
folds, publishes and stores as a finite number; what it refuses is an InvalidEvent with a
reason; and no exception raised while folding one record escapes a core."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.folds.config import FoldConfig
from processor.folds.decode import decode_input
from processor.folds.guard import PROCESSING_ERROR
from processor.folds.lifecycle_core import LifecycleCore
from processor.folds.metrics_core import MetricsCore
from processor.folds.records import Emit, Origin, Stream
from processor.folds.sketch import QuantileSketch
from processor.folds.stats_core import StatsCore
from processor.folds.windows import MetricWindow
from processor.store.db import open_for_writing
from processor.store.sinkdb import SinkBatch, write_batch
from producers import AxmonProducer, EventFactory
from producers.jsonl import parse_lines
from schemas import (
    InvalidEvent,
    MetricRecorded,
    decode_event,
    encode_event,
    parse_event,
)
from schemas.events import LifecycleEvent
from schemas.limits import MAX_ABS_VALUE, MAX_EVENT_BYTES, MAX_RECORD_BYTES
from tests.pg import DbAt

CONFIG = FoldConfig(window_ms=1000, grace_ms=2000, execution_horizon_ms=10_000, sweep_interval_ms=500, marker_ms=10_000, evicted_keep_ms=10_000)
MAX_FLOAT = 1.7976931348623157e308
EXTREMES = [MAX_FLOAT, -MAX_FLOAT, 1e308, -1e308, 5e-324, -5e-324, -0.0, 0.0, 1e15, -1e15, 1e15 + 0.125,
            math.nextafter(1e15, math.inf), 2.2250738585072014e-308, 1e-9, 1.0000001e-9]
ANY_NUMBER = st.one_of(st.sampled_from(EXTREMES), st.floats(allow_nan=True, allow_infinity=True), st.integers())
TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=30)  # unicode, NUL and all


def sample_bytes(event_id: str, value: Any, at: int = 1_000, **extra: Any) -> bytes:
    """A sample's JSON; a non-finite value is written as ``1e999`` or ``NaN`` (orjson writes
    null), an integer of any size as its digits."""
    body = orjson.dumps({"type": "metric.recorded", "version": 1, "event_id": event_id, "occurred_at": at,
                         "metric_type": "api.request.duration", "value": 0, **extra})
    if isinstance(value, float) and math.isnan(value):
        text = "NaN"
    elif isinstance(value, float) and math.isinf(value):
        text = "1e999" if value > 0 else "-1e999"
    else:
        text = repr(value) if isinstance(value, int) and value.bit_length() < 1000 else orjson.dumps(value).decode()
    return body.replace(b'"value":0', b'"value":' + text.encode(), 1)


def deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


# -- the contract ------------------------------------------------------------------------------


@given(ANY_NUMBER)
def test_a_value_is_accepted_exactly_within_the_documented_range(value: float) -> None:
    fields = {"type": "metric.recorded", "event_id": "e", "occurred_at": 1, "metric_type": "a.b", "value": value}
    finite = isinstance(value, int) or math.isfinite(value)
    if finite and abs(value) <= MAX_ABS_VALUE:
        event = parse_event(fields)
        assert decode_event(encode_event(event)) == event
    else:
        with pytest.raises(InvalidEvent) as raised:
            parse_event(fields)
        assert raised.value.reason == ("out_of_range" if finite else "invalid_field")


@pytest.mark.parametrize("value", [1e308, MAX_FLOAT, -MAX_FLOAT, 10**400, 1e15 * 1.0000001])
def test_huge_values_are_out_of_range_in_every_path(value: float) -> None:
    with pytest.raises(InvalidEvent, match="out_of_range"):
        decode_event(sample_bytes("e", value)) if not isinstance(value, int) else parse_event(
            {"type": "metric.recorded", "event_id": "e", "occurred_at": 1, "metric_type": "a.b", "value": value})
    [(_, error)] = list(parse_lines([sample_bytes("e", 1e308)]))
    assert getattr(error, "reason", None) == "out_of_range"
    with pytest.raises(InvalidEvent, match="out_of_range"):
        EventFactory().record("a.b", 1e308)
    with pytest.raises(InvalidEvent, match="out_of_range"):
        f = EventFactory()
        step = f.start_step("e", "k", "K", tenant_id="t")
        f.step_event("step.completed", step.step_id, tenant_id="t", cost=1e300)


def test_deep_and_huge_metadata_raise_invalid_event_in_the_sdk_produce_and_the_decoder() -> None:
    factory = EventFactory()
    with pytest.raises(InvalidEvent) as raised:
        factory.start_execution("wf", "W", "t", "u", 1, deep(300))
    assert raised.value.reason == "too_deep"
    with pytest.raises(InvalidEvent) as raised:  # within the depth limit, but too large to publish
        event = factory.start_execution("wf", "W", "t", "u", 1, {"blob": "x" * (2 * 1024 * 1024)})
        asyncio.run(AxmonProducer("127.0.0.1:1").publish(event))
    assert raised.value.reason == "too_large"
    line = b'{"type":"execution.started","tenant_id":"t","execution_id":"e","workflow_id":"w","workflow_name":"W",' \
           b'"user_id":"u","steps_total":1,"metadata":' + b'{"a":' * 300 + b"1" + b"}" * 300 + b"}"
    [(_, error)] = list(parse_lines([line]))
    assert getattr(error, "reason", None) == "too_deep"
    [(_, error)] = list(parse_lines([orjson.dumps({"type": "metric.recorded", "metric_type": "a.b", "value": 1,
                                                    "padding": "p" * MAX_EVENT_BYTES})]))
    assert getattr(error, "reason", None) == "too_large"
    for data in (line.replace(b'"type"', b'"version":1,"event_id":"x","occurred_at":1,"type"'),
                 sample_bytes("e", 1, padding="p" * MAX_EVENT_BYTES), b"[" * 5000 + b"]" * 5000):
        with pytest.raises(InvalidEvent):
            decode_event(data)
    assert parse_event({**_start_fields(), "metadata": deep(30)})  # deep but within the limit


def _start_fields(**changes: Any) -> dict[str, Any]:
    return {"type": "execution.started", "event_id": "e", "occurred_at": 1, "tenant_id": "t", "execution_id": "x",
            "workflow_id": "w", "workflow_name": "W", "user_id": "u", "steps_total": 1, **changes}


def test_ids_labels_and_text_at_the_limits() -> None:
    for bad in ({"event_id": "e" * 5000}, {"execution_id": "x" * 5000}, {"execution_id": "a\x00b"},
                {"tenant_id": "\x00meta/0"}, {"user_id": "u\n"}):
        with pytest.raises(InvalidEvent, match="invalid_field"):
            parse_event(_start_fields(**bad))
    text = "Synthèse \x00 🚀 — ☃ \U0010ffff"
    event = parse_event(_start_fields(workflow_name=text, execution_id="ключ-値-✓", metadata={"\x00": text}))
    assert decode_event(encode_event(event)) == event
    labels = {f"l{i}": "v" for i in range(500)}
    with pytest.raises(InvalidEvent, match="invalid_field"):
        decode_event(sample_bytes("e", 1, labels=labels))
    assert decode_event(sample_bytes("e", 1, labels=dict(list(labels.items())[:64])))


# -- the cores ---------------------------------------------------------------------------------


def _fold_samples(raw: list[bytes]) -> tuple[MetricsCore, list[Emit]]:
    core = MetricsCore({}, CONFIG)  # type: ignore[arg-type]
    emits: list[Emit] = []
    for o, data in enumerate(raw):
        origin = Origin("m", 0, o)
        event = decode_input(MetricRecorded, data, origin, None)
        emits += [event] if isinstance(event, Emit) else core.process(event, origin, data, None)
    emits += core.flush() + core.finish(10**12)
    return core, emits


def _assert_finite_rollups(core: MetricsCore, emits: list[Emit]) -> None:
    for emit in emits:
        assert emit.value is not None and len(emit.value) <= MAX_RECORD_BYTES
        record = orjson.loads(emit.value)
        if emit.stream is Stream.METRIC_ROLLUPS:
            for name in ("sum", "avg", "min", "max", "p50", "p95", "p99"):
                assert isinstance(record[name], (int, float)) and math.isfinite(record[name]), (name, record)
        else:
            assert emit.stream is Stream.DEAD_LETTER and record["reason"] in ("out_of_range", "invalid_field", "undecodable", "late")
    for _, entry in core.store.items():
        if "start" in entry:  # an open window survives its table's round trip
            window = MetricWindow.from_json(orjson.loads(orjson.dumps(entry)))
            assert math.isfinite(window.aggregate.sum)


@given(st.lists(st.tuples(ANY_NUMBER, st.integers(0, 3_000)), min_size=1, max_size=40))
@settings(max_examples=150, deadline=None)
def test_any_sample_folds_to_finite_rollups_or_a_dead_letter(samples: list[tuple[float, int]]) -> None:
    core, emits = _fold_samples([sample_bytes(f"s{n}", v, at) for n, (v, at) in enumerate(samples)])
    _assert_finite_rollups(core, emits)


def test_two_huge_samples_in_one_window_do_not_brick_it() -> None:
    core, emits = _fold_samples([sample_bytes("a", 1e308), sample_bytes("b", 1e308), sample_bytes("c", 1e15),
                                 sample_bytes("d", 1e15), sample_bytes("e", -0.0), sample_bytes("f", 5e-324)])
    _assert_finite_rollups(core, emits)
    dead = [orjson.loads(e.value or b"")["reason"] for e in emits if e.stream is Stream.DEAD_LETTER]
    assert dead == ["out_of_range", "out_of_range"]
    final = [orjson.loads(e.value or b"") for e in emits if e.stream is Stream.METRIC_ROLLUPS][-1]
    assert (final["count"], final["sum"], final["min"], final["max"]) == (4, 2e15, -0.0, 1e15)


@given(st.lists(st.sampled_from(EXTREMES) | st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=30))
def test_the_sketch_takes_any_finite_double(values: list[float]) -> None:
    sketch = QuantileSketch().add_all(values)
    for q in (0.0, 0.5, 0.95, 0.99, 1.0):
        estimate = sketch.quantile(q)  # no OverflowError at the float maximum
        assert estimate is not None and math.isfinite(estimate)


@st.composite
def hostile_lifecycle(draw: st.DrawFn) -> list[bytes]:
    """Raw lifecycle records of one execution: unicode and NUL text, long ids, deep or large
    metadata, huge costs and token counts."""
    execution = draw(st.sampled_from(["e1", "x" * 5000, "a\x00b", "ключ"]))
    value = st.recursive(st.none() | st.booleans() | ANY_NUMBER.filter(lambda v: not isinstance(v, int) or abs(v) < 2**63)
                         | TEXT | st.builds(list) | st.builds(dict), lambda inner: st.lists(inner, min_size=1, max_size=3) | st.dictionaries(TEXT, inner, min_size=1, max_size=3),
                         max_leaves=20)
    out = []
    for n in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["execution.started", "step.completed", "step.failed", "execution.completed"]))
        fields: dict[str, Any] = {"type": kind, "version": 1, "event_id": f"ev{n}", "occurred_at": draw(st.integers(0, 2**53)),
                                  "tenant_id": draw(st.sampled_from(["t", "\x00late/0/1", "🚀"])), "execution_id": execution}
        if kind == "execution.started":
            fields.update(workflow_id="w", workflow_name=draw(TEXT), user_id="u", steps_total=draw(st.integers(0, 2**53)),
                          metadata=draw(st.sampled_from([deep(40), deep(20), {"blob": "b" * 300_000}, {}])) | {"v": draw(value)})
        elif kind.startswith("step."):
            fields.update(step_id=draw(st.sampled_from(["s1", "s2"])), error_message=draw(TEXT) * draw(st.sampled_from([1, 30_000])),
                          tokens_used=draw(st.integers(0, 2**53)), cost=draw(ANY_NUMBER.filter(lambda v: not isinstance(v, int) or abs(v) < 2**63)))
        out.append(orjson.dumps(fields))  # orjson writes nan and inf as null
    return out


@given(hostile_lifecycle())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_no_exception_escapes_the_lifecycle_and_stats_cores(raw: list[bytes]) -> None:
    core = LifecycleCore({}, CONFIG)  # type: ignore[arg-type]
    stats = StatsCore({})  # type: ignore[arg-type]
    emits: list[Emit] = []
    for o, data in enumerate(raw):
        origin = Origin("w", 0, o)
        event = decode_input(LifecycleEvent, data, origin, None)
        emits += [event] if isinstance(event, Emit) else core.process(event, origin, data, None)
    for n, emit in enumerate(emits):
        assert emit.value is None or len(emit.value) + len(emit.key or b"") <= MAX_RECORD_BYTES
        if emit.stream is Stream.STATS_CHANGES:
            emits_stats = stats.process(emit.value or b"", Origin("s", 0, n), emit.key)
            assert all(e.stream in (Stream.WORKFLOW_STATS, Stream.DEAD_LETTER) for e in emits_stats)
    for _, entry in core.store.items():
        assert len(orjson.dumps(entry)) <= MAX_RECORD_BYTES


# -- the guard ---------------------------------------------------------------------------------


def _bloated(n: int) -> list[LifecycleEvent]:
    f = EventFactory()
    started = f.start_execution("wf", "W", "t", "u", n, occurred_at=100)
    events: list[LifecycleEvent] = [started]
    for i in range(n):
        step = f.start_step(started.execution_id, f"k{i}", "K", step_id=f"s{i}", occurred_at=101 + i)
        events += [step, f.step_event("step.failed", step.step_id, error_message="E" * 400_000, occurred_at=110 + i)]  # type: ignore[list-item]
    return events + [f.end_execution("execution.completed", started.execution_id, occurred_at=200)]


def test_a_fold_too_large_to_publish_is_a_processing_error_and_the_stream_goes_on() -> None:
    """The third 400 KB failure would make the execution's state larger than a Kafka record:
    that event (and only it) is a dead letter; the execution completes without it; a replay
    (a fresh core over the same records) decides the same."""
    runs = []
    events = _bloated(3)
    for _ in range(2):
        core = LifecycleCore({}, CONFIG)  # type: ignore[arg-type]
        emits = [core.process(e, Origin("w", 0, o), encode_event(e), None) for o, e in enumerate(events)]
        runs.append((emits, dict(core.store.items())))
    emits, store = runs[0]
    assert runs[0] == runs[1]
    failed = [n for n, out in enumerate(emits) if any(e.stream is Stream.DEAD_LETTER for e in out)]
    assert failed == [6]
    [letter] = [orjson.loads(e.value or b"") for e in emits[6]]
    assert letter["reason"] == PROCESSING_ERROR and letter["detail"].startswith("RecordTooLarge: ")
    assert (letter["topic"], letter["partition"], letter["offset"]) == ("w", 0, 6)
    assert core.counters[PROCESSING_ERROR] == 1
    final = orjson.loads([e for e in emits[-1] if e.stream is Stream.EXECUTION_STATE][0].value or b"")
    assert (final["status"], final["steps_failed"]) == ("completed", 2)


def test_an_exception_in_a_fold_rolls_the_record_back(monkeypatch: pytest.MonkeyPatch) -> None:
    f = EventFactory()
    started = f.start_execution("wf", "W", "t", "u", 1, occurred_at=100)
    done = f.end_execution("execution.completed", started.execution_id, occurred_at=200)
    core = LifecycleCore({}, CONFIG)  # type: ignore[arg-type]
    core.process(started, Origin("w", 0, 0), encode_event(started), None)
    before = dict(core.store.items())

    def broken(*args: Any, **kwargs: Any) -> list[Emit]:
        raise ZeroDivisionError("injected")

    monkeypatch.setattr(core, "_publish", broken)  # fails after the state entry was written
    [letter] = core.process(done, Origin("w", 0, 1), encode_event(done), b"k")
    assert orjson.loads(letter.value or b"")["detail"] == "ZeroDivisionError: injected"
    assert dict(core.store.items()) == before and core.counters == {"applied": 1, PROCESSING_ERROR: 1}
    monkeypatch.undo()
    emits = core.process(done, Origin("w", 0, 2), encode_event(done), None)  # the next record folds
    assert orjson.loads([e for e in emits if e.stream is Stream.EXECUTION_STATE][0].value or b"")["status"] == "completed"


def test_a_broken_stats_message_and_a_broken_ack_are_dead_letters() -> None:
    stats = StatsCore({})  # type: ignore[arg-type]
    message = orjson.dumps({"op": "set", "tenant": "t", "execution_id": "e", "status": "nonsense", "duration": "x",
                            "p": 0, "o": 1, "seq": 0})
    [letter] = stats.process(message, Origin("s", 0, 0), b"t")
    assert orjson.loads(letter.value or b"")["reason"] == PROCESSING_ERROR
    assert stats.counters == {PROCESSING_ERROR: 1} and list(stats.store.items()) == []


# -- the sink ----------------------------------------------------------------------------------


def test_the_sink_stores_every_accepted_extreme_and_leaves_out_a_poison_record(db: DbAt) -> None:
    core, emits = _fold_samples([sample_bytes(f"s{n}", v) for n, v in enumerate(EXTREMES)])
    batch = SinkBatch()
    for emit in emits:
        if emit.stream is Stream.METRIC_ROLLUPS:
            batch.add_rollup(orjson.loads(emit.value or b""))
    good = dict(batch.rollups)
    poison = {**next(iter(good.values())), "series": "poison", "sum": None}
    batch.add_rollup(poison)
    batch.add_execution({"id": "broken"})  # a snapshot without its fields
    conn = open_for_writing(db("a.db"))
    skipped = write_batch(conn, batch)
    assert len(skipped) == 2 and skipped[0].startswith("execution 'broken': KeyError")
    rows = conn.execute("SELECT series, count, sum, min, max FROM metric_rollups").fetchall()
    assert {r[0] for r in rows} == {k[0] for k in good}
    assert all(math.isfinite(v) for r in rows for v in r[1:])
    hourly = conn.execute("SELECT count, sum FROM metric_rollups_hourly").fetchall()
    assert all(v is not None and math.isfinite(v) for r in hourly for v in r)
    assert tuple(conn.execute("SELECT count(*) FROM sink_offsets").fetchone()) == (0,)
    conn.close()


def test_a_window_stored_with_a_null_sum_neither_stops_the_timers_nor_the_partition() -> None:
    """A window whose sum overflowed before values were bounded (orjson wrote inf as null) is
    skipped by the rollup timers and dropped by the sweep; the partition's samples go on."""
    store: dict[str, Any] = {}
    core = MetricsCore(store, CONFIG)  # type: ignore[arg-type]
    core.process(decode_event(sample_bytes("a", 1.0, at=100)), Origin("m", 0, 0), b"", None)
    [(wkey, entry)] = list(store.items())
    store[wkey] = {**entry, "agg": {**entry["agg"], "sum": None}}
    core.dirty.add(wkey)
    assert core.flush() == [] and core.close_idle(10**12) == [] and core.finish(10**12) == []
    later = decode_event(sample_bytes("b", 2.0, at=50_000))
    emits = core.process(later, Origin("m", 0, 1), b"", None)  # its sweep meets the bad window
    assert not [e for e in emits if e.stream is Stream.DEAD_LETTER]
    assert wkey not in store and core.counters["unreadable_window"] >= 1
    [final] = [orjson.loads(e.value or b"") for e in core.finish(10**12)]
    assert (final["count"], final["sum"]) == (1, 2.0)
