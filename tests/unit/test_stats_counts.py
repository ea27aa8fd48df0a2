"""A tenant's stats keep their open executions summed (``OpenCounts``) beside them, so a view
does not walk every open execution, and several changes of one record apply through one
``StatsDraft`` (the maps copied once): both must give exactly what the plain definition gives."""

from __future__ import annotations

import random
from typing import Any

import orjson

from processor.folds.stats import Contribution, OpenCounts, TenantStats
from processor.folds.stats_core import StatsCore

STATUSES = ["pending", "running", "completed", "failed", "cancelled"]


def walked_view(stats: TenantStats) -> dict[str, Any]:
    """The view by its definition: every open execution walked (what ``view`` did before)."""
    counts = dict.fromkeys(STATUSES, 0)
    duration_sum, duration_count = stats.closed.duration_sum, stats.closed.duration_count
    for c in stats.open.values():
        counts[c.status] += 1
        if c.duration is not None:
            duration_sum += c.duration
            duration_count += 1
    total = stats.closed.total + len(stats.open)
    completed = stats.closed.completed + counts["completed"]
    return {
        "tenant_id": stats.tenant_id, "total": total, "pending": counts["pending"], "running": counts["running"],
        "completed": completed, "failed": stats.closed.failed + counts["failed"],
        "cancelled": stats.closed.cancelled + counts["cancelled"],
        "avg_duration": duration_sum / duration_count if duration_count else 0.0,
        "success_rate": round(completed / total * 100, 2) if total else 0.0,
    }


def random_changes(seed: int, n: int) -> list[tuple[str, str, Contribution, int, tuple[int, int]]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind = rng.choice(["set", "set", "set", "absorb", "reopen"])
        contribution = Contribution(rng.choice(STATUSES), rng.choice([None, rng.randrange(5000)]))
        offset = i if rng.random() > 0.15 else rng.randrange(i + 1)  # some resent: at or below the watermark
        out.append((kind, f"e{rng.randrange(40)}", contribution, rng.randrange(3), (offset, 0)))
    return out


def apply(stats: TenantStats, change: tuple[str, str, Contribution, int, tuple[int, int]]) -> TenantStats:
    kind, execution, contribution, partition, origin = change
    if kind == "set":
        return stats.set(execution, contribution, partition, origin)
    if kind == "absorb":
        return stats.absorb(execution, partition, origin)
    return stats.reopen(execution, Contribution("completed", 7), contribution, partition, origin)


def test_the_kept_counts_give_the_view_its_definition_gives_after_every_change() -> None:
    for seed in range(5):
        stats = TenantStats("t1")
        for change in random_changes(seed, 400):
            stats = apply(stats, change)
            assert stats.view() == walked_view(stats)
            assert stats.counts_of_open() == OpenCounts.of(stats.open.values())
        decoded = TenantStats.from_json(orjson.loads(orjson.dumps(stats.to_json())))
        assert decoded == stats and decoded.view() == stats.view()


class Model:
    """The stats' semantics in plain code of its own: per partition the highest origin applied,
    what each open execution counts as, and the closed totals."""

    def __init__(self) -> None:
        self.marks: dict[int, tuple[int, int]] = {}
        self.open: dict[str, Contribution] = {}
        self.closed = [0, 0, 0, 0, 0, 0]  # total, completed, failed, cancelled, duration sum, count

    def _close(self, c: Contribution, sign: int) -> None:
        for i, add in enumerate([1, c.status == "completed", c.status == "failed", c.status == "cancelled",
                                 c.duration or 0, c.duration is not None]):
            self.closed[i] += sign * int(add)

    def apply(self, change: tuple[str, str, Contribution, int, tuple[int, int]]) -> None:
        kind, execution, contribution, partition, origin = change
        if partition in self.marks and origin <= self.marks[partition]:
            return
        self.marks[partition] = origin
        if kind == "absorb":
            if execution in self.open:
                self._close(self.open.pop(execution), 1)
            return
        if kind == "reopen" and execution not in self.open:
            self._close(Contribution("completed", 7), -1)
        self.open[execution] = contribution


def test_a_draft_of_many_changes_gives_what_the_changes_one_by_one_give_and_leaves_its_base_alone() -> None:
    for seed in range(5):
        changes = random_changes(seed + 10, 600)
        one_by_one = drafted = TenantStats("t1")
        model = Model()
        rng = random.Random(seed)
        i = 0
        while i < len(changes):
            chunk = changes[i:i + rng.randrange(1, 60)]
            i += len(chunk)
            base_json = orjson.dumps(drafted.to_json())
            draft = drafted.draft()
            for kind, execution, contribution, partition, origin in chunk:
                if kind == "set":
                    draft.set(execution, contribution, partition, origin)
                elif kind == "absorb":
                    draft.absorb(execution, partition, origin)
                else:
                    draft.reopen(execution, Contribution("completed", 7), contribution, partition, origin)
            before = one_by_one
            for change in chunk:
                one_by_one = apply(one_by_one, change)
                model.apply(change)
            after = draft.value()
            assert dict(after.open) == model.open and dict(after.watermarks) == model.marks
            c = after.closed
            assert [c.total, c.completed, c.failed, c.cancelled, c.duration_sum, c.duration_count] == model.closed
            assert orjson.dumps(drafted.to_json()) == base_json  # the stored value drafted from is untouched
            assert after == one_by_one and after.view() == one_by_one.view()
            assert after.to_json() == one_by_one.to_json()
            assert draft.changed == (one_by_one is not before)
            drafted = after


def test_a_draft_without_a_change_returns_the_very_value() -> None:
    stats = TenantStats("t1").set("e1", Contribution("running", None), 0, (5, 0))
    draft = stats.draft()
    draft.set("e1", Contribution("completed", 3), 0, (5, 0))  # at the watermark: a resend
    draft.absorb("e1", 0, (4, 0))
    assert not draft.changed and draft.value() is stats


def test_the_core_folds_a_record_of_many_ops_as_it_folds_them_one_record_each() -> None:
    rng = random.Random(3)
    ops = []
    for offset in range(500):
        kind = rng.choice(["set", "set", "absorb", "reopen"])
        fields: dict[str, Any] = {"status": rng.choice(STATUSES[1:]), "duration": rng.choice([None, rng.randrange(900)])}
        if kind == "reopen":
            fields |= {"absorbed_status": "completed", "absorbed_duration": 10}
        ops.append({"tenant": f"t{rng.randrange(2)}", "p": 0, "o": offset, "seq": 0, "op": kind,
                    "execution_id": f"e{rng.randrange(30)}", **fields})
    single_store: dict[Any, Any] = {}
    merged_store: dict[Any, Any] = {}
    single, merged = StatsCore(single_store), StatsCore(merged_store)
    for n, o in enumerate(ops):
        single.process(orjson.dumps(o), (0, n), o["tenant"].encode())
    for start in range(0, len(ops), 50):
        merged.process(orjson.dumps({"ops": ops[start:start + 50]}), (0, 1000 + start), None)
    assert merged_store == single_store
    assert set(merged_store) == {"t0", "t1"}
