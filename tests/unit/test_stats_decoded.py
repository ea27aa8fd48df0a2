"""StatsCore keeps each tenant's decoded stats beside the entry it decoded or wrote: the same
entry object is not decoded again, and any other entry (a rollback, a recovered table, another
writer) is."""

from __future__ import annotations

import random
from typing import Any

import orjson

from processor.folds.records import Emit, Origin
from processor.folds.stats import Contribution, TenantStats
from processor.folds.stats_core import StatsCore


def op(kind: str, execution: str, offset: int, tenant: str = "t1", **fields: Any) -> bytes:
    return orjson.dumps({"tenant": tenant, "p": 0, "o": offset, "seq": 0, "op": kind, "execution_id": execution, **fields})


def views(emits: list[Emit]) -> list[Any]:
    return [orjson.loads(e.value) for e in emits if e.value is not None]


def random_ops(seed: int, n: int = 300) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for offset in range(n):
        execution = f"e{rng.randrange(20)}"
        tenant = f"t{rng.randrange(3)}"
        kind = rng.choice(["set", "set", "absorb", "reopen"])
        status = rng.choice(["running", "completed", "failed"])
        fields: dict[str, Any] = {"status": status, "duration": rng.choice([None, rng.randrange(1000), 0.5])}
        if kind == "reopen":
            fields |= {"absorbed_status": "completed", "absorbed_duration": 10}
        out.append(op(kind, execution, offset, tenant, **fields))
    return out


def test_a_core_that_keeps_decoded_stats_folds_like_one_that_decodes_every_entry() -> None:
    for seed in range(5):
        kept_store: dict[str, Any] = {}
        fresh_store: dict[str, Any] = {}
        kept = StatsCore(kept_store)  # type: ignore[arg-type]
        for offset, raw in enumerate(random_ops(seed)):
            origin = Origin("stats", 0, offset)
            fresh = StatsCore(fresh_store)  # type: ignore[arg-type]  # a new core: nothing kept
            assert views(kept.process(raw, origin, None)) == views(fresh.process(raw, origin, None))
        assert kept_store == fresh_store


def test_an_entry_replaced_behind_the_core_is_decoded_again() -> None:
    store: dict[str, Any] = {}
    core = StatsCore(store)  # type: ignore[arg-type]
    core.process(op("set", "e1", 0, status="running"), Origin("stats", 0, 0), None)
    other: dict[str, Any] = {}
    StatsCore(other).process(op("set", "e2", 0, status="completed", duration=5), Origin("stats", 0, 0), None)  # type: ignore[arg-type]
    store["t1"] = other["t1"]  # a recovered table, another writer: an entry the core did not write
    out = core.process(op("set", "e3", 1, status="running"), Origin("stats", 0, 1), None)
    assert sorted(TenantStats.from_json(store["t1"]).open) == ["e2", "e3"]
    assert views(out)[-1]["total"] == 2


def test_an_older_entry_restored_is_not_taken_for_the_newer_one() -> None:
    store: dict[str, Any] = {}
    core = StatsCore(store)  # type: ignore[arg-type]
    core.process(op("set", "e1", 0, status="running"), Origin("stats", 0, 0), None)
    before = dict(store)  # the very entry objects the core wrote
    core.process(op("set", "e2", 1, status="running"), Origin("stats", 0, 1), None)
    store.clear()
    store.update(before)  # the later write lost (a crash before its changelog record was sent)
    core.process(op("set", "e3", 2, status="running"), Origin("stats", 0, 2), None)
    assert sorted(TenantStats.from_json(store["t1"]).open) == ["e1", "e3"]


def _rebuilt(stats: TenantStats) -> dict[str, Any]:
    """``open`` as :meth:`TenantStats.to_json` would build it element by element."""
    return {e: [c.status, c.duration] for e, c in stats.open.items()}


def test_the_encoded_open_map_follows_every_update_and_older_values_stay_as_they_were() -> None:
    rng = random.Random(7)
    stats = TenantStats("t1")
    history: list[tuple[TenantStats, bytes]] = []
    for offset in range(400):
        execution = f"e{rng.randrange(15)}"
        kind = rng.choice(["set", "set", "absorb", "reopen"])
        now = Contribution(rng.choice(["running", "completed", "failed"]), rng.choice([None, rng.randrange(1000)]))
        if kind == "set":
            stats = stats.set(execution, now, 0, (offset, 0))
        elif kind == "absorb":
            stats = stats.absorb(execution, 0, (offset, 0))
        else:
            stats = stats.reopen(execution, Contribution("completed", 5), now, 0, (offset, 0))
        if rng.random() < 0.1:  # as the worker does on a fresh entry: decoded from its stored JSON
            stats = TenantStats.from_json(orjson.loads(orjson.dumps(stats.to_json())))
        assert stats.to_json()["open"] == _rebuilt(stats)
        history.append((stats, orjson.dumps(stats.to_json())))
    for old, encoded in history:  # no update wrote into a map an older value (a stored entry) holds
        assert orjson.dumps(old.to_json()) == encoded
        assert TenantStats.from_json(orjson.loads(encoded)) == old
