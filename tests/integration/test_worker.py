"""The Faust worker on the real broker: its derived topics equal what an independent oracle
(:mod:`tests.oracle`) computes from the same events, with shuffled and resent input, bad input,
late input, and SIGKILLs mid-stream."""

from __future__ import annotations

import asyncio
import base64
import math
import random
import time
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from processor.errors import BrokerError
from processor.ops.children import RESTART_NOTICE
from processor.runtime.admin import group_offsets, read_topic
from processor.runtime.worker import INBOX_HIGH_WATER_ENV, INBOXES_ENV
from producers import AxmonProducer, EventFactory, ProducerConfig
from producers.simulator import (
    ScenarioConfig,
    disorder,
    generate_scenario,
    with_resends,
)
from schemas import Event, MetricRecorded, Topics, series_key
from schemas.derived import DERIVED_SCHEMAS
from tests.integration.conftest import TEST_PARTITIONS
from tests.integration.processes import AxmonProcess, wait_until
from tests.oracle import (
    QUANTILES,
    differences,
    expected_executions,
    expected_rollups,
    expected_stats,
)

WINDOW_MS = 60_000
GRACE_MS = 3_600_000  # nothing in the shuffled scenario is late; late input is made on purpose
HOUR = 3_600_000


def worker(kafka_bootstrap: str, topics: Topics, workdir: Path, env: dict[str, str] | None = None) -> AxmonProcess:
    return AxmonProcess(
        "worker",
        ["worker", "--bootstrap", kafka_bootstrap, "--topic-prefix", topics.prefix,
         "--partitions", str(TEST_PARTITIONS), "--window-ms", str(WINDOW_MS), "--grace-ms", str(GRACE_MS)],
        workdir, env=env,
    )


def scenario(seed: int, executions: int) -> list[Event]:
    rng = random.Random(seed)
    start = int(time.time() * 1000) - 2 * HOUR  # idle by the wall clock: every window closes
    events = generate_scenario(ScenarioConfig(seed=seed, tenants=4, executions=executions, start_ms=start))
    return with_resends(disorder(events, rng, max_shift_ms=30_000), rng, 0.03)


# -- reading what the worker published ---------------------------------------------------------


def latest(bootstrap: str, topic: str) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async for record in read_topic(bootstrap, topic, idle_timeout=1.0):
            key = (record.key or b"").decode()
            if record.value is None:
                out.pop(key, None)
            else:
                out[key] = orjson.loads(record.value)
        return out

    return asyncio.run(read())


def rollup_mismatches(got: dict[str, Any], expected: dict[str, dict[str, Any]]) -> list[str]:
    """What differs between the published rollups and the exact oracle ([] when they agree):
    count, min and max exact, the sum up to rounding, the percentiles (from sketches) within 1%
    relative error of the exact nearest-rank ones, and every window final."""
    problems = [f"missing {k}" for k in sorted(set(expected) - set(got))]
    problems += [f"unexpected {k}" for k in sorted(set(got) - set(expected))]
    for key in sorted(set(expected) & set(got)):
        have, want = got[key], expected[key]
        diffs = [f"{f} {have[f]} != {want[f]}" for f in ("count", "min", "max") if have[f] != want[f]]
        if not math.isclose(have["sum"], want["sum"], rel_tol=1e-9, abs_tol=1e-6):
            diffs.append(f"sum {have['sum']} != {want['sum']}")
        diffs += [f"{f} {have[f]} not within 1% of {want[f]}" for f in QUANTILES
                  if not abs(have[f] - want[f]) <= 0.01 * abs(want[f])]
        if not have["final"]:
            diffs.append("not final")
        if diffs:
            problems.append(f"{key}: " + ", ".join(diffs))
    return problems


async def publish(bootstrap: str, topics: Topics, events: list[Event]) -> None:
    async with AxmonProducer(config=ProducerConfig(bootstrap=bootstrap, topics=topics)) as producer:
        for event in events:
            await producer.publish(event)


def assert_pipeline_matches(bootstrap: str, topics: Topics, events: list[Event], proc: AxmonProcess, timeout: float) -> None:
    executions = expected_executions(events)
    rollups = expected_rollups(events, WINDOW_MS)
    state: dict[str, Any] = {}
    windows: dict[str, Any] = {}

    def caught_up() -> bool:
        nonlocal state, windows
        assert proc.alive(), f"worker died:\n{proc.tail()}"
        state = latest(bootstrap, topics.execution_state)
        if differences(state, executions):
            return False
        windows = latest(bootstrap, topics.metric_rollups)
        return not rollup_mismatches(windows, rollups)

    try:
        wait_until(caught_up, timeout, interval=2.0, what="the worker's derived topics to equal the folds")
    except AssertionError:
        raise AssertionError(
            f"executions: {differences(state, executions)}\n"
            f"rollups: {rollup_mismatches(windows, rollups)[:5]}\nworker log:\n{proc.tail()}"
        ) from None
    assert len(executions) >= 300 and len(rollups) > 100


def assert_conforms(values: dict[str, Any], topic: str) -> None:
    """Every value matches the derived topic's published JSON Schema."""
    validator = jsonschema.Draft202012Validator(DERIVED_SCHEMAS[topic])
    assert values
    for key, value in values.items():
        errors = list(validator.iter_errors(value))
        assert not errors, f"{topic} {key}: {errors[0].message}"


# -- the tests ---------------------------------------------------------------------------------


def test_derived_topics_equal_the_pure_folds(kafka_bootstrap: str, topics: Topics, tmp_path: Path) -> None:
    events = scenario(seed=21, executions=300)
    # Inboxes pause their partitions at 50 waiting records: fetching stops and resumes many
    # times (a pause once crashed the fetch loop; the restarted worker hid it but for its log).
    proc = worker(kafka_bootstrap, topics, tmp_path, env={INBOXES_ENV: "1", INBOX_HIGH_WATER_ENV: "50"}).start()
    try:
        asyncio.run(publish(kafka_bootstrap, topics, events))
        assert_pipeline_matches(kafka_bootstrap, topics, events, proc, timeout=240)
        stats = latest(kafka_bootstrap, topics.workflow_stats)
        executions = expected_executions(events)
        assert set(stats) == {x["tenant_id"] for x in executions.values()}
        for tenant, view in stats.items():
            want = expected_stats(executions.values(), tenant)
            assert {k: view[k] for k in want if k != "avg_duration"} == {k: v for k, v in want.items() if k != "avg_duration"}
            assert view["avg_duration"] == pytest.approx(want["avg_duration"])
        assert_conforms(stats, "workflow-stats")
        assert_conforms(latest(kafka_bootstrap, topics.execution_state), "execution-state")
        assert_conforms(latest(kafka_bootstrap, topics.metric_rollups), "metric-rollups")
        for table in ("executions", "windows"):
            assert_changelog_partitions(kafka_bootstrap, f"{topics.prefix}worker-{table}-changelog")
        assert RESTART_NOTICE not in proc.log.read_text(errors="replace"), proc.tail()
    finally:
        assert proc.stop() == 0, proc.tail()


def assert_changelog_partitions(bootstrap: str, changelog: str) -> None:
    """The worker folds batches and writes each table key once per batch, outside Faust's
    stream iteration: every entry still lands in the changelog partition it belongs to (the
    ``p`` it names, its home partition), batches of several writes are framed by a
    write-ahead record on the same partition, and every frame was closed (deleted)."""
    async def read() -> tuple[int, dict[tuple[int, bytes], bytes | None], list[str]]:
        entries, frames, wrong = 0, {}, []
        async for record in read_topic(bootstrap, changelog, idle_timeout=1.0):
            key = record.key or b""
            if key.startswith(b"\x00wal/"):
                assert int(key[5:]) == record.partition, key
                frames[(record.partition, key)] = record.value
                continue
            if record.value is None:
                continue
            entry = orjson.loads(record.value)
            if isinstance(entry, dict) and "p" in entry:
                entries += 1
                if entry["p"] != record.partition:
                    wrong.append(f"{key!r} p={entry['p']} on partition {record.partition}")
        return entries, frames, wrong

    entries, frames, wrong = asyncio.run(read())
    assert entries > 0 and not wrong, wrong[:5]
    assert frames, f"no batch of several writes was framed in {changelog}"
    assert all(value is None for value in frames.values()), "a write-ahead record was left open"


def committed_and_waiting(bootstrap: str, topics: Topics) -> tuple[int, int]:
    """The worker group's committed offsets (summed) and the records left for it (asked again
    while the broker has no coordinator for the group yet)."""
    for _ in range(30):
        try:
            committed, ends = asyncio.run(group_offsets(bootstrap, f"{topics.prefix}worker",
                                                        [*topics.sources, topics.stats_changes]))
            return sum(committed.values()), sum(max(0, end - committed[tp]) for tp, end in ends.items())
        except BrokerError:
            time.sleep(1.0)
    raise AssertionError("the broker never said what the worker group committed")


def kill_mid_stream(proc: AxmonProcess, bootstrap: str, topics: Topics, chunk: list[Event], rng: random.Random) -> None:
    """Publish ``chunk`` and SIGKILL the worker part of the way through it: once it has committed
    some of the first half in this life (and a random while after), right after the second half
    was published; check that records were still waiting for it."""
    half = len(chunk) // 2
    before, _ = committed_and_waiting(bootstrap, topics)
    asyncio.run(publish(bootstrap, topics, chunk[:half]))
    wait_until(lambda: committed_and_waiting(bootstrap, topics)[0] > before, 120, interval=0.2,
               what=f"the worker to commit something (log:\n{proc.tail()})")
    time.sleep(rng.uniform(0.0, 1.0))
    asyncio.run(publish(bootstrap, topics, chunk[half:]))
    proc.kill()
    _, waiting = committed_and_waiting(bootstrap, topics)
    assert waiting > 0, "the kill landed after the worker had finished: not mid-stream"


def test_sigkill_mid_stream_changes_nothing(kafka_bootstrap: str, topics: Topics, tmp_path: Path) -> None:
    events = scenario(seed=22, executions=300)
    proc = worker(kafka_bootstrap, topics, tmp_path).start()
    rng = random.Random(5)
    try:
        chunks = 4
        size = math.ceil(len(events) / chunks)
        for n in range(chunks):
            chunk = events[n * size:(n + 1) * size]
            if n < chunks - 1:
                kill_mid_stream(proc, kafka_bootstrap, topics, chunk, rng)
                proc.start()
            else:
                asyncio.run(publish(kafka_bootstrap, topics, chunk))
        assert proc.starts == chunks
        assert_pipeline_matches(kafka_bootstrap, topics, events, proc, timeout=300)
    finally:
        proc.stop()


def test_bad_and_late_input_goes_to_the_dead_letter_topic(kafka_bootstrap: str, topics: Topics, tmp_path: Path) -> None:
    now = int(time.time() * 1000)
    good = generate_scenario(ScenarioConfig(seed=3, tenants=2, executions=20, start_ms=now - 60_000, span_ms=30_000))
    late_start = EventFactory().start_execution("wf", "W", "t", "u", 1, occurred_at=now - 8 * HOUR)
    late_sample = MetricRecorded(event_id="late-sample", occurred_at=now - 3 * HOUR, tenant_id="t", metric_type="cpu.usage", value=1)
    junk = [
        (topics.workflow_events, b"k1", b"\x00\x01 not json"),
        (topics.workflow_events, b"k2", b'{"type":"execution.started","version":7,"event_id":"x","occurred_at":1}'),
        (topics.workflow_events, b"k3", orjson.dumps({"type": "step.completed", "version": 1, "event_id": "y", "occurred_at": now,
                                                      "tenant_id": "t", "execution_id": "e", "step_id": "s", "cost": -5})),
        (topics.metrics, b"k4", orjson.dumps({"type": "metric.recorded", "version": 1, "event_id": "z", "occurred_at": now,
                                              "metric_type": "cpu.usage", "value": 1, "tenant_id": "t", "execution_id": "e"})[:-3]),
        (topics.metrics, b"k5", orjson.dumps({"type": "execution.completed", "version": 1, "event_id": "w", "occurred_at": now,
                                              "tenant_id": "t", "execution_id": "e"})),
    ]
    proc = worker(kafka_bootstrap, topics, tmp_path).start()

    async def send() -> None:
        async with AxmonProducer(config=ProducerConfig(bootstrap=kafka_bootstrap, topics=topics)) as producer:
            half = len(good) // 2
            for event in good[:half]:
                await producer.publish(event)
            for topic, key, value in junk:
                await producer.send_raw(topic, key, value)
            for event in good[half:]:
                await producer.publish(event)
            await producer.flush()
            # stream time is now about `now` on every partition the good samples reached; the
            # late sample goes to a partition of its own series, so send it after a fresh
            # sample of the same series
            await producer.publish(MetricRecorded(event_id="fresh", occurred_at=now, tenant_id="t", metric_type="cpu.usage", value=2))
            await producer.publish(late_sample)
            # any lifecycle partition's stream time is about `now`: a never-seen execution eight
            # hours old is beyond the horizon (1 h) plus the evicted state's keep (6 h)
            await producer.publish(late_start)

    try:
        asyncio.run(send())
        dead: dict[str, Any] = {}

        def all_dead() -> bool:
            nonlocal dead
            assert proc.alive(), proc.tail()
            dead = latest(kafka_bootstrap, topics.dead_letter)
            return len(dead) == len(junk) + 2

        wait_until(all_dead, 120, what="the dead letters")
        reasons = sorted(d["reason"] for d in dead.values())
        assert reasons == sorted(["undecodable", "unknown_version", "invalid_field", "undecodable", "wrong_topic", "late", "late"])
        for d in dead.values():
            assert d["topic"] in (topics.workflow_events, topics.metrics)
            assert isinstance(d["partition"], int) and isinstance(d["offset"], int)
            assert base64.b64decode(d["value"])  # the original bytes, intact
        assert_conforms(dead, "dead-letter")
        originals = {base64.b64decode(d["value"]) for d in dead.values()}
        assert {value for _, _, value in junk} <= originals
        late = next(d for d in dead.values() if d["reason"] == "late" and d["topic"] == topics.metrics)
        assert late["topic"] == topics.metrics and orjson.loads(base64.b64decode(late["value"]))["event_id"] == "late-sample"
        assert late["key"] == base64.b64encode(series_key("t", "cpu.usage", {})).decode()
        # every good event is reflected
        expected = expected_executions(good)
        wait_until(lambda: not differences(latest(kafka_bootstrap, topics.execution_state), expected), 120,
                   what="the good executions")
    finally:
        assert proc.stop() == 0, proc.tail()


@pytest.fixture(autouse=True)
def _no_faust_data_in_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def test_a_stalled_worker_restarts_itself(kafka_bootstrap: str, topics: Topics, tmp_path: Path) -> None:
    """The lifecycle agent hangs for good after 100 events (a fault injected for the first run
    only); the watchdog sees records waiting with no commit, restarts the process, and the
    derived topics end complete."""
    events = scenario(seed=23, executions=300)
    args = ["worker", "--bootstrap", kafka_bootstrap, "--topic-prefix", topics.prefix, "--partitions", str(TEST_PARTITIONS),
            "--window-ms", str(WINDOW_MS), "--grace-ms", str(GRACE_MS), "--stall-timeout", "20"]
    proc = AxmonProcess("worker", args, tmp_path, env={"AXMON_FAULT_HANG_AFTER": "100"}).start()
    try:
        asyncio.run(publish(kafka_bootstrap, topics, events))
        assert_pipeline_matches(kafka_bootstrap, topics, events, proc, timeout=300)
        log = proc.log.read_text()
        assert "fault: the lifecycle agent hangs" in log
        assert "stalled:" in log and "nothing was committed" in log
        assert proc.starts == 1, "the worker restarted itself, in place"
    finally:
        assert proc.stop() == 0, proc.tail()
