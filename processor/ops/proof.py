"""The proof that live processing equals a replay, under crashes: ``axmon prove``.

1. Produce a generated multi-tenant scenario with client resends, out-of-order delivery,
   malformed records, late events and events off their key's partition, on a fresh topic prefix.
2. Meanwhile kill the sink and the worker with SIGKILL several times each (restarting them),
   each part of the way through a chunk of events (it has done some of it, records still wait),
   and then restart the broker once while both run and events are still to come.
3. When the pipeline has caught up (the sink has everything the topics hold, the worker has
   stopped adding, every window is final), replay the source topics from the earliest offset
   into a new database.
4. Compare the two databases table by table, row by row (minus the sink's bookkeeping) and
   print the differences, if any.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from processor.errors import AxmonError, BrokerError
from processor.folds.rules import load_rules
from processor.ops.children import AxmonChild
from processor.ops.settle import Backlog, backlog, settled, stored_sink_offsets
from processor.runtime.admin import contract_topics, ensure_topics, group_offsets
from processor.runtime.replay import ReplayPlan, replay
from processor.settings import Settings
from processor.store.dbdiff import TableDiff, compare
from producers.client import AxmonProducer, ProducerConfig, route
from producers.factory import EventFactory
from producers.simulator import (
    ScenarioConfig,
    disorder,
    generate_scenario,
    with_resends,
)
from schemas.codec import encode_event
from schemas.events import Event, ExecutionStarted
from schemas.partitioning import home_partition

HOUR = 3_600_000


class ProofError(AxmonError):
    """The proof could not be carried out (a process died, the pipeline did not catch up)."""


@dataclass(frozen=True, slots=True)
class ProofOptions:
    executions: int = 300
    tenants: int = 4
    seed: int = 11
    worker_kills: int = 3
    sink_kills: int = 3
    restart_broker: bool = True
    grace_ms: int = 120_000
    """Small enough that every window of a scenario two hours old is idle (final) at once."""
    rules: tuple[dict[str, Any], ...] = (
        {"name": "busy-cpu", "metric_type": "cpu.usage", "aggregation": "p95", "operator": "gt", "threshold": 85,
         "resolve_threshold": 75, "window": 120_000, "for": 60_000, "cooldown": 120_000, "severity": "warning"},
        {"name": "long-queue", "metric_type": "workflow.queue.length", "aggregation": "max", "operator": "gte",
         "threshold": 35, "window": 60_000, "severity": "info"},
    )
    """Alert rules for the worker and the replay: alerts must come out the same too."""
    misrouted_every: int = 7
    """Every n-th event goes to the partition after its key's, as a producer with another
    partitioner would put it (0: none)."""
    stall_timeout_s: float = 20.0
    catch_up_s: float = 900.0
    """How long the pipeline may take to catch up after the last kill."""


@dataclass(frozen=True, slots=True)
class ProofResult:
    live_db: Path
    replay_db: Path
    events: int
    junk: int
    worker_starts: int
    sink_starts: int
    broker_restarts: int
    diffs: tuple[TableDiff, ...]
    rows: dict[str, int]
    kills: tuple[tuple[str, int], ...] = ()
    """Each SIGKILL: which process, and the records it left waiting (> 0: it died mid-stream)."""

    @property
    def equal(self) -> bool:
        return not self.diffs


def proof_events(options: ProofOptions, now_ms: int) -> tuple[list[Event], list[tuple[str, bytes]]]:
    """The scenario (two hours old, shuffled, with resends and late events) and junk records
    ``(source, value)`` where source is ``"lifecycle"``, ``"metrics"`` or ``"logs"``."""
    rng = random.Random(options.seed)
    start = now_ms - 2 * HOUR
    events = generate_scenario(ScenarioConfig(seed=options.seed, tenants=options.tenants,
                                              executions=options.executions, start_ms=start))
    events = with_resends(disorder(events, rng, max_shift_ms=20_000), rng, 0.03)
    # late: samples and executions far behind the stream, spread through the second half
    factory = EventFactory(source="axmon-proof")
    late: list[Event] = [
        factory.record("cpu.usage", 50.0 + n, unit="percent", labels={"host": "worker-1"},
                       tenant_id="tenant_a", occurred_at=start - HOUR - n * 1000)
        for n in range(20)
    ]
    # executions two hours behind are folded (an engine that was offline); eight hours behind
    # are beyond the worker's retention (horizon + evicted state's keep): dead letters
    late += [factory.start_execution("wf_late", "Late Workflow", "tenant_b", "u", 1, occurred_at=start - hours * HOUR)
             for hours in (2, 8) for _ in range(5)]
    # log records of every tenth execution, two of them resent
    starts = [e for e in events if isinstance(e, ExecutionStarted)][::10]
    logs: list[Event] = [
        factory.log(level, f"{e.workflow_name}: {level}", execution_id=e.execution_id, tenant_id=e.tenant_id,
                    attributes={"n": n}, occurred_at=e.occurred_at + n)
        for e in starts for n, level in enumerate(("info", "warn"))
    ]
    late += logs + logs[:2]
    for event in late:
        events.insert(rng.randrange(len(events) // 2, len(events)), event)
    junk = [
        ("lifecycle", b"{not json"),
        ("lifecycle", orjson.dumps({"type": "execution.started", "version": 2, "event_id": "v2", "occurred_at": start})),
        ("lifecycle", orjson.dumps({"type": "step.completed", "version": 1, "event_id": "neg", "occurred_at": start,
                                    "tenant_id": "t", "execution_id": "e", "step_id": "s", "tokens_used": -1})),
        ("metrics", orjson.dumps({"type": "metric.recorded", "version": 1, "event_id": "bad", "occurred_at": start,
                                  "metric_type": "Not A Type", "value": 1})),
        ("metrics", b"\xff\xfe"),
        ("logs", b"{not json"),
    ]
    return events, junk


def _all_windows_final(db: Path) -> bool:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return bool(conn.execute("SELECT count(*) FROM metric_rollups WHERE final = 0").fetchone()[0] == 0)
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


def run_proof(
    base: Settings,
    bootstrap: str,
    workdir: Path,
    options: ProofOptions = ProofOptions(),
    *,
    restart_broker: Callable[[], None] | None = None,
    say: Callable[[str], None] = print,
) -> ProofResult:
    workdir.mkdir(parents=True, exist_ok=True)
    settings = replace(base, topic_prefix=f"proof-{uuid.uuid4().hex[:8]}.", grace_ms=options.grace_ms,
                       db_path=workdir / "live.db")
    topics = settings.topics
    common = ["--bootstrap", bootstrap, "--topic-prefix", settings.topic_prefix, "--partitions", str(settings.partitions),
              "--grace-ms", str(settings.grace_ms), "--window-ms", str(settings.window_ms)]
    asyncio.run(ensure_topics(bootstrap, contract_topics(topics, settings.partitions)))
    events, junk = proof_events(options, int(time.time() * 1000))
    say(f"topics {topics.prefix}*: {len(events):,} events (with resends, disorder and late ones) and {len(junk)} malformed records")
    rules_file = workdir / "rules.json"
    rules_file.write_bytes(orjson.dumps({"rules": list(options.rules)}))
    rules = load_rules(rules_file)
    # The worker lives through the broker restart (it comes after the last kill) and must catch
    # up by itself; the watchdog is there for anything else, and its log says if it acted.
    worker = AxmonChild("worker", ["worker", *common, "--rules", str(rules_file),
                                   "--stall-timeout", str(options.stall_timeout_s)], workdir)
    sink = AxmonChild("sink", ["sink", *common, "--db", str(_live(settings)), "--batch-size", "300"], workdir)
    rng = random.Random(options.seed)
    broker_restarts = 0
    kills: list[tuple[str, int]] = []
    worker.start()
    sink.start()
    try:
        chunks = max(options.worker_kills, options.sink_kills) + 2
        size = -(-len(events) // chunks)
        # The broker restarts while everything is running, after the last kills, with events
        # still to come: the worker and the sink live through it.
        restart_at = max(options.worker_kills, options.sink_kills) if restart_broker is not None and options.restart_broker else -1
        for n in range(chunks):
            # a chunk in three parts; each kill lands part of the way through: once the process
            # has done something in this life, and right after a part it cannot have finished
            # yet was published (checked: records wait for it)
            chunk = events[n * size:(n + 1) * size]
            third = -(-len(chunk) // 3)
            parts = [chunk[:third], chunk[third:2 * third], chunk[2 * third:]]
            committed, written = _progress(bootstrap, settings)
            asyncio.run(_publish(bootstrap, settings, parts[0], junk if n == 1 else [], options.misrouted_every))
            time.sleep(rng.uniform(0.5, 2.0))
            if n < options.sink_kills:
                _await(sink, lambda: sum(stored_sink_offsets(_live(settings)).values()) > written, "write something")
            asyncio.run(_publish(bootstrap, settings, parts[1], [], options.misrouted_every))
            if n < options.sink_kills:
                kills.append(_kill_and_restart(sink, lambda: _backlog_after_kill(bootstrap, settings).sink, say))
            if n < options.worker_kills:
                _await(worker, lambda: _progress(bootstrap, settings)[0] > committed, "commit something")
            asyncio.run(_publish(bootstrap, settings, parts[2], [], options.misrouted_every))
            if n < options.worker_kills:
                kills.append(_kill_and_restart(worker, lambda: _backlog_after_kill(bootstrap, settings).worker, say))
            if n == restart_at and restart_broker is not None:
                # the worker is running, not starting: it has committed some of this chunk
                _await(worker, lambda: _progress(bootstrap, settings)[0] > committed, "commit something")
                say("restarting the broker")
                restart_broker()
                broker_restarts += 1
        say("waiting for the pipeline to catch up")
        deadline = time.monotonic() + options.catch_up_s
        previous = None
        while True:
            worker.check()
            sink.check()
            done, previous = asyncio.run(settled(bootstrap, topics, _live(settings), previous))
            if done and _all_windows_final(_live(settings)):
                break
            if time.monotonic() > deadline:
                raise ProofError(f"the pipeline did not catch up in {options.catch_up_s:.0f} s (last backlog {previous})")
            time.sleep(2.0)
    finally:
        sink.stop()
        worker.stop()
    replay_db = workdir / "replay.db"
    say("replaying the source topics from the earliest offset")
    result = asyncio.run(replay(settings, bootstrap, ReplayPlan(replay_db, rules=rules)))
    say(f"replayed {result.records:,} records in {result.seconds:.1f} s ({result.rate:,.0f} records/s)")
    diffs = tuple(compare(_live(settings), replay_db))
    conn = sqlite3.connect(f"file:{replay_db}?mode=ro", uri=True)
    try:
        rows = {name: conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
                for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
    finally:
        conn.close()
    return ProofResult(_live(settings), replay_db, len(events), len(junk), worker.starts, sink.starts,
                       broker_restarts, diffs, rows, tuple(kills))


def _live(settings: Settings) -> Path:
    """The proof's live database (a file in its work directory)."""
    if not isinstance(settings.db_path, Path):
        raise ProofError("the proof runs on a SQLite file")
    return settings.db_path


def _progress(bootstrap: str, settings: Settings) -> tuple[int, int]:
    """How far the worker (its group's committed offsets, summed) and the sink (the offsets in
    its database, summed) have come."""
    for _ in range(30):
        try:
            committed, _ = asyncio.run(group_offsets(bootstrap, f"{settings.topic_prefix}worker", list(settings.topics.sources)))
            return sum(committed.values()), sum(stored_sink_offsets(_live(settings)).values())
        except BrokerError:
            time.sleep(1.0)
    raise ProofError("the broker did not say what the worker group committed")


def _await(child: AxmonChild, done: Callable[[], bool], what: str, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        child.check()
        if time.monotonic() > deadline:
            raise ProofError(f"the {child.name} did not {what} in {timeout_s:.0f} s; end of its log:\n{child.tail(20)}")
        time.sleep(0.2)


def _kill_and_restart(child: AxmonChild, waiting_after: Callable[[], int], say: Callable[[str], None]) -> tuple[str, int]:
    """SIGKILL ``child``, note how many records it left waiting, start it again; returns
    (its name, that count)."""
    child.kill()
    # What waits for it can only grow while it is dead; the sink's input is the worker's output
    # of the part just published, which may not be out yet, so this looks again for a while.
    deadline = time.monotonic() + 30.0
    while (waiting := waiting_after()) == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    say(f"killed the {child.name} (SIGKILL) with {waiting} records waiting, restarting it ({child.starts + 1})")
    child.start()
    return child.name, waiting


def _backlog_after_kill(bootstrap: str, settings: Settings) -> Backlog:
    """What the killed process left to do (asked again while the broker has no group
    coordinator yet, as on a fresh broker)."""
    for _ in range(30):
        try:
            return asyncio.run(backlog(bootstrap, settings.topics, _live(settings)))
        except BrokerError:
            time.sleep(1.0)
    raise ProofError("the broker did not say what the killed process left to do")


async def _publish(bootstrap: str, settings: Settings, events: list[Event], junk: list[tuple[str, bytes]],
                   misrouted_every: int = 0) -> None:
    t = settings.topics
    async with AxmonProducer(config=ProducerConfig(bootstrap=bootstrap, topics=t, source="axmon-proof")) as producer:
        for n, event in enumerate(events):
            if misrouted_every and n % misrouted_every == misrouted_every - 1:
                topic, key = route(event, t)
                elsewhere = (home_partition(key, settings.partitions) + 1) % settings.partitions
                await producer.send_raw(topic, key, encode_event(event), partition=elsewhere)
            else:
                await producer.publish(event)
            if junk and n == len(events) // 2:
                for source, value in junk:
                    topic = {"lifecycle": t.workflow_events, "logs": t.logs}.get(source, t.metrics)
                    await producer.send_raw(topic, b"junk", value)

