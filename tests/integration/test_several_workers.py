"""Several workers in one group on the real broker: three ``axmon worker`` processes on six
partitions, one SIGKILLed mid-stream and one added back. At every stable point (the group's
coordinator says ``Stable`` with one member per live process) the union of what the live workers
hold covers every partition, read both from the coordinator and from their heartbeats; and the
final database equals a one-worker run of the same events and a replay of them.

Faust's tracker can split unevenly or leave a worker idle after a rebalance (shared/SCALING.md):
coverage and equality are checked, evenness is not."""

from __future__ import annotations

import asyncio
import logging
import socket
import sqlite3
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from processor.errors import BrokerError
from processor.folds.rules import load_rules
from processor.ops.children import AxmonChild
from processor.ops.health import evaluate
from processor.ops.health_probe import observe, observe_workers
from processor.ops.proof import ProofOptions, proof_events
from processor.ops.settle import backlog, settled
from processor.runtime.admin import (
    GroupDescription,
    contract_topics,
    describe_group,
    ensure_topics,
    group_offsets,
    partition_counts,
)
from processor.runtime.replay import ReplayPlan, replay
from processor.runtime.worker import changelog_topics
from processor.runtime.worker_status import WorkerStatus, unheld_partitions
from processor.settings import Settings
from processor.store.dbdiff import compare, rows, tables
from producers.client import AxmonProducer, ProducerConfig
from schemas.events import Event
from schemas.topics import Topics
from tests.integration.processes import wait_until

log = logging.getLogger(__name__)

PARTITIONS = 6
STABLE_S = 120.0
"""How long a rebalance may take to settle (a SIGKILLed member is noticed after its 10 s session)."""
CATCH_UP_S = 240.0


class Pipeline:
    """The workers (each with its own state directory) and the sink of one topic prefix."""

    def __init__(self, name: str, bootstrap: str, workdir: Path, settings: Settings, rules_file: Path) -> None:
        self.name, self.bootstrap, self.workdir = name, bootstrap, workdir
        self.settings = replace(settings, topic_prefix=f"{name}-{uuid.uuid4().hex[:8]}.", db_path=workdir / f"{name}.db")
        self.topics: Topics = self.settings.topics
        self.common = ["--bootstrap", bootstrap, "--topic-prefix", self.settings.topic_prefix, "--partitions",
                       str(PARTITIONS), "--grace-ms", str(settings.grace_ms), "--window-ms", str(settings.window_ms)]
        self.rules_file = rules_file
        self.workers: list[AxmonChild] = []
        self.sink = AxmonChild(f"{name}-sink", ["sink", *self.common, "--db", str(self.settings.db_path),
                                                "--batch-size", "500"], workdir)
        specs = contract_topics(self.topics, PARTITIONS) + changelog_topics(self.topics, PARTITIONS)
        asyncio.run(ensure_topics(bootstrap, specs))

    def add_worker(self) -> AxmonChild:
        n = len(self.workers) + 1
        worker = AxmonChild(f"{self.name}-worker{n}", ["worker", *self.common, "--rules", str(self.rules_file),
                                                       "--state-dir", str(self.workdir / f"{self.name}-w{n}"),
                                                       "--stall-timeout", "120"], self.workdir)
        self.workers.append(worker.start())
        return worker

    @property
    def alive(self) -> list[AxmonChild]:
        return [w for w in self.workers if w.alive()]

    def stop(self) -> None:
        for child in [*self.workers, self.sink]:
            child.stop()


def retried(work: Any, what: str) -> Any:
    """``asyncio.run(work())``, asked again while the broker has no coordinator yet."""
    for _ in range(30):
        try:
            return asyncio.run(work())
        except BrokerError as exc:
            log.info("%s: %s", what, exc)
            time.sleep(1.0)
    raise AssertionError(f"the broker did not answer: {what}")


def heartbeats(p: Pipeline) -> dict[int, WorkerStatus]:
    """The latest heartbeat of each worker process of this machine, by pid."""
    counts = retried(lambda: partition_counts(p.bootstrap, [p.topics.worker_status]), "worker-status")
    seen = asyncio.run(observe_workers(p.bootstrap, p.topics.worker_status, counts.get(p.topics.worker_status), 10.0))
    assert seen.error is None, seen.error
    host = socket.gethostname()
    return {s.pid: s for s in seen.statuses if s.host == host}


def stable_point(p: Pipeline) -> dict[int, WorkerStatus]:
    """Wait (bounded) for a stable point: the coordinator says ``Stable`` with one member per live
    worker process, and each of them has published a ``running`` heartbeat since. Check that
    the members' assignments and, separately, the live workers' heartbeats cover every
    partition of every source topic; returns the heartbeats."""
    alive = p.alive
    pids = {w.proc.pid for w in alive if w.proc is not None}
    group_id = f"{p.topics.prefix}worker"
    found: dict[str, Any] = {}

    def stable() -> bool:
        for worker in p.workers:
            if worker in alive:
                worker.check()
        group: GroupDescription = retried(lambda: describe_group(p.bootstrap, group_id), "the worker group")
        if group.state != "Stable" or len(group.members) != len(alive):
            found.pop("at", None)
            return False
        found.setdefault("at", int(time.time() * 1000))
        found["group"] = group
        beats = heartbeats(p)
        fresh = {pid: s for pid, s in beats.items() if pid in pids and s.heartbeat_at_ms >= found["at"]
                 and s.state == "running" and s.partitions is not None}
        found["beats"] = fresh
        return set(fresh) == pids

    wait_until(stable, STABLE_S, interval=1.0, what=f"a stable group of {len(alive)} workers ({p.name})")
    group: GroupDescription = found["group"]
    beats: dict[int, WorkerStatus] = found["beats"]
    sources = {t: PARTITIONS for t in (*p.topics.sources, p.topics.stats_changes)}
    by_coordinator: dict[str, set[int]] = {t: set() for t in sources}
    for member in group.members:
        for topic, partition in member.assigned:
            by_coordinator.setdefault(topic, set()).add(partition)
    split = {s.pid: dict(s.partitions or {}) for s in beats.values()}
    log.info("stable point of %d workers: %s", len(alive), split)
    for topic in sources:
        assert by_coordinator[topic] == set(range(PARTITIONS)), f"{topic}: the members hold {by_coordinator[topic]}"
    assert unheld_partitions(beats.values(), sources) == {}, f"the heartbeats leave partitions unheld: {split}"
    return beats


def publish(p: Pipeline, events: list[Event], junk: list[tuple[str, bytes]]) -> None:
    async def run() -> None:
        config = ProducerConfig(bootstrap=p.bootstrap, topics=p.topics, source="axmon-test")
        async with AxmonProducer(config=config) as producer:
            for event in events:
                await producer.publish(event)
            for source, value in junk:  # source: "lifecycle", "metrics", or another source topic's name
                t = p.topics
                await producer.send_raw({"lifecycle": t.workflow_events, "metrics": t.metrics}.get(source) or getattr(t, source),
                                        b"junk", value)

    asyncio.run(run())


def committed(p: Pipeline) -> int:
    done, _ = retried(lambda: group_offsets(p.bootstrap, f"{p.topics.prefix}worker", list(p.topics.sources)), "offsets")
    return sum(done.values())


def caught_up(p: Pipeline) -> None:
    previous: list[Any] = [None]

    def done() -> bool:
        for child in [*p.alive, p.sink]:
            child.check()
        ok, previous[0] = retried(lambda: settled(p.bootstrap, p.topics, p.settings.db_path, previous[0]), "backlog")
        if not ok:
            return False
        conn = sqlite3.connect(f"file:{p.settings.db_path}?mode=ro", uri=True)
        try:
            return bool(conn.execute("SELECT count(*) FROM metric_rollups WHERE final = 0").fetchone()[0] == 0)
        finally:
            conn.close()

    wait_until(done, CATCH_UP_S, interval=2.0, what=f"the {p.name} pipeline to catch up")


PER_RUN = {"dead_letters": {2, 5}}
"""Columns that say where and when a record landed in one run's topics (a dead letter's origin
offset and broker timestamp: a producer's retry on a fresh topic may reorder records), not what
came of it."""


def content(db: Path, prefix: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every table but the sink's bookkeeping, its topic prefix written as ``<prefix>``, without
    the :data:`PER_RUN` columns."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {name: sorted((tuple(v.replace(prefix, "<prefix>") if isinstance(v, str) else v
                                    for n, v in enumerate(row) if n not in PER_RUN.get(name, ()))
                              for row in rows(conn, name)), key=repr) for name in tables(conn)}
    finally:
        conn.close()


def test_three_workers_share_six_partitions_through_a_kill_and_equal_one_worker(kafka_bootstrap: str, tmp_path: Path) -> None:
    started = time.monotonic()
    options = ProofOptions(executions=100, seed=23)
    settings = Settings.load({"partitions": PARTITIONS, "grace_ms": options.grace_ms}, environ={})
    rules_file = tmp_path / "rules.json"
    rules_file.write_bytes(orjson.dumps({"rules": list(options.rules)}))
    events, junk = proof_events(options, int(time.time() * 1000))
    thirds = [events[: len(events) // 3], events[len(events) // 3: 2 * len(events) // 3], events[2 * len(events) // 3:]]
    one = Pipeline("one", kafka_bootstrap, tmp_path, settings, rules_file)
    many = Pipeline("many", kafka_bootstrap, tmp_path, settings, rules_file)
    try:
        # the reference: one worker, everything at once (it runs beside the others)
        one.add_worker()
        one.sink.start()
        for n, third in enumerate(thirds):  # in the order the others get them: the same offsets
            publish(one, third, junk if n == 0 else [])
        for _ in range(3):
            many.add_worker()
        many.sink.start()
        first = stable_point(many)
        assert len(first) == 3
        publish(many, thirds[0], junk)
        wait_until(lambda: committed(many) > 0, STABLE_S, 0.5, "the workers to commit something")
        publish(many, thirds[1], [])
        victim = many.workers[1]
        victim.kill()  # SIGKILL: it never leaves the group; its session expires
        left = retried(lambda: backlog(many.bootstrap, many.topics, many.settings.db_path), "backlog").worker
        log.info("killed %s with %d records waiting for the workers", victim.name, left)
        assert left > 0, "the kill landed after the work was done"
        assert len(stable_point(many)) == 2
        many.add_worker()  # a new one, with a state directory of its own
        publish(many, thirds[2], [])
        final = stable_point(many)
        assert len(final) == 3
        caught_up(many)
        caught_up(one)
        report = evaluate(asyncio.run(observe(many.topics, many.bootstrap, many.settings.db_path, timeout_s=10.0)))
        worker = report.component("worker")
        assert worker.details["unheld_partitions"] == {}, worker.reasons
    finally:
        many.stop()
        one.stop()
    # the group split the work, and yet the database is the one-worker run's, and a replay's
    got, want = content(many.settings.db_path, many.topics.prefix), content(one.settings.db_path, one.topics.prefix)
    differ = {name: (sorted(set(got[name]) - set(want.get(name, [])), key=repr)[:3],
                     sorted(set(want.get(name, [])) - set(got[name]), key=repr)[:3])
              for name in got if got[name] != want.get(name)}
    assert set(got) == set(want) and not differ, f"tables that differ from the one-worker run (only here, only there): {differ}"
    assert len(got["workflow_executions_monitor"]) > 100 and len(got["metric_rollups"]) > 50
    replayed = tmp_path / "replay.db"
    asyncio.run(replay(many.settings, many.bootstrap, ReplayPlan(replayed, rules=load_rules(rules_file))))
    diffs = compare(many.settings.db_path, replayed)
    assert not diffs, "\n".join(d.describe() for d in diffs)
    log.info("three workers, a kill and a new one: %.0f s", time.monotonic() - started)
