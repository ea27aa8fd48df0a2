"""Per-tenant workflow stats, as the original getWorkflowStats defines them. Pure.

Executions live in the partitions of their execution id, a tenant's stats in the partition of
the tenant, so the execution side sends *contribution* messages through an internal topic keyed
by tenant: "execution E now counts as (status, duration)" and, when E leaves the execution
table, "absorb E". A message carries its origin (source partition, offset, sequence); per
tenant and source partition the stats keep the highest origin applied and skip anything at or
below it, so a message resent after a crash is applied once. Because a contribution message
says what E counts as now (not a difference), resending the current one is always right.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Origin = tuple[int, int]
"""``(source offset, sequence within that offset)``"""


@dataclass(frozen=True, slots=True)
class Contribution:
    status: str
    duration: int | None


@dataclass(frozen=True, slots=True)
class ClosedCounts:
    """What executions that have left the execution table contribute, for good."""

    total: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    duration_sum: int = 0
    duration_count: int = 0

    def plus(self, c: Contribution, sign: int = 1) -> ClosedCounts:
        return ClosedCounts(
            self.total + sign,
            self.completed + sign * (c.status == "completed"),
            self.failed + sign * (c.status == "failed"),
            self.cancelled + sign * (c.status == "cancelled"),
            self.duration_sum + sign * (c.duration or 0),
            self.duration_count + sign * (c.duration is not None),
        )


@dataclass(frozen=True, slots=True)
class OpenCounts:
    """What the open executions count as, summed (kept beside ``open`` so that a tenant's view
    does not walk every open execution)."""

    pending: int = 0
    running: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    duration_sum: int = 0
    duration_count: int = 0

    @classmethod
    def of(cls, contributions: Iterable[Contribution]) -> OpenCounts:
        counts = dict.fromkeys(STATUSES, 0)
        duration_sum = duration_count = 0
        for c in contributions:
            counts[c.status] = counts.get(c.status, 0) + 1
            if c.duration is not None:
                duration_sum += c.duration
                duration_count += 1
        return cls(counts["pending"], counts["running"], counts["completed"], counts["failed"], counts["cancelled"],
                   duration_sum, duration_count)

    def plus(self, c: Contribution, sign: int = 1) -> OpenCounts:
        return OpenCounts(
            self.pending + sign * (c.status == "pending"),
            self.running + sign * (c.status == "running"),
            self.completed + sign * (c.status == "completed"),
            self.failed + sign * (c.status == "failed"),
            self.cancelled + sign * (c.status == "cancelled"),
            self.duration_sum + sign * (c.duration or 0),
            self.duration_count + sign * (c.duration is not None),
        )


STATUSES = ("pending", "running", "completed", "failed", "cancelled")


@dataclass(frozen=True, slots=True)
class TenantStats:
    tenant_id: str
    watermarks: Mapping[int, Origin] = field(default_factory=dict)
    open: Mapping[str, Contribution] = field(default_factory=dict)
    closed: ClosedCounts = ClosedCounts()
    encoded_open: Mapping[str, list[Any]] | None = field(default=None, compare=False, repr=False)
    """``open`` as :meth:`to_json` writes it (``[status, duration]`` per execution), kept beside
    it by every update so that a busy tenant's entry (every open execution) is not rebuilt
    element by element per message; ``None``: built when first needed. Never mutated: an
    update copies it, as it copies ``open``."""
    open_counts: OpenCounts | None = field(default=None, compare=False, repr=False)
    """``open`` summed (:class:`OpenCounts`), kept up to date by every update; ``None``: summed
    when first needed."""

    def counts_of_open(self) -> OpenCounts:
        return self.open_counts if self.open_counts is not None else OpenCounts.of(self.open.values())

    def seen(self, partition: int, origin: Origin) -> bool:
        mark = self.watermarks.get(partition)
        return mark is not None and origin <= mark

    def draft(self) -> StatsDraft:
        """A :class:`StatsDraft` of this value, to apply several changes with one copy."""
        return StatsDraft(self)

    def set(self, execution_id: str, contribution: Contribution, partition: int, origin: Origin) -> TenantStats:
        draft = self.draft()
        draft.set(execution_id, contribution, partition, origin)
        return draft.value()

    def absorb(self, execution_id: str, partition: int, origin: Origin) -> TenantStats:
        draft = self.draft()
        draft.absorb(execution_id, partition, origin)
        return draft.value()

    def reopen(
        self, execution_id: str, absorbed: Contribution, contribution: Contribution, partition: int, origin: Origin
    ) -> TenantStats:
        """An absorbed execution is back (a late event rehydrated it): take ``absorbed`` (what
        its absorb added) out of the closed counts and set it open as ``contribution``. Once it
        is open again (an earlier reopen) this is a plain :meth:`set`."""
        draft = self.draft()
        draft.reopen(execution_id, absorbed, contribution, partition, origin)
        return draft.value()

    def view(self) -> dict[str, Any]:
        """total, running, completed, failed, cancelled, avg_duration (ms), success_rate (%),
        plus pending (executions whose start event has not arrived yet)."""
        o = self.counts_of_open()
        duration_sum = self.closed.duration_sum + o.duration_sum
        duration_count = self.closed.duration_count + o.duration_count
        total = self.closed.total + len(self.open)
        completed = self.closed.completed + o.completed
        return {
            "tenant_id": self.tenant_id,
            "total": total,
            "pending": o.pending,
            "running": o.running,
            "completed": completed,
            "failed": self.closed.failed + o.failed,
            "cancelled": self.closed.cancelled + o.cancelled,
            "avg_duration": duration_sum / duration_count if duration_count else 0.0,
            "success_rate": round(completed / total * 100, 2) if total else 0.0,
        }

    def to_json(self) -> dict[str, Any]:
        c = self.closed
        return {
            "tenant": self.tenant_id,
            "wm": {str(p): list(o) for p, o in self.watermarks.items()},
            "open": self.encoded_open if self.encoded_open is not None else _encoded(self.open),
            "closed": [c.total, c.completed, c.failed, c.cancelled, c.duration_sum, c.duration_count],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TenantStats:
        opened = {e: Contribution(str(v[0]), v[1]) for e, v in data.get("open", {}).items()}
        return cls(
            str(data["tenant"]),
            {int(p): (int(o[0]), int(o[1])) for p, o in data.get("wm", {}).items()},
            opened,
            ClosedCounts(*data.get("closed", ())),
            open_counts=OpenCounts.of(opened.values()),
        )


def _encoded(opened: Mapping[str, Contribution]) -> dict[str, list[Any]]:
    return {e: [c.status, c.duration] for e, c in opened.items()}


class StatsDraft:
    """Changes to a :class:`TenantStats` applied in place, for :meth:`value` to return as a new
    value: its maps are copied once, at the first change, however many changes follow (a busy
    tenant's stats hold every open execution, and a record of the stats topic carries many
    changes of one tenant). The value drafted from is never changed."""

    __slots__ = ("_base", "_open", "_encoded", "_marks", "_closed", "_counts")

    def __init__(self, base: TenantStats) -> None:
        self._base = base
        self._open: dict[str, Contribution] | None = None
        self._encoded: dict[str, list[Any]] = {}
        self._marks: dict[int, Origin] = {}
        self._closed = base.closed
        self._counts: OpenCounts | None = None

    @property
    def changed(self) -> bool:
        return self._open is not None

    def seen(self, partition: int, origin: Origin) -> bool:
        mark = self._marks.get(partition) if self._open is not None else self._base.watermarks.get(partition)
        return mark is not None and origin <= mark

    def _opened(self) -> dict[str, Contribution]:
        if self._open is None:
            base = self._base
            self._open = dict(base.open)
            self._encoded = dict(base.encoded_open) if base.encoded_open is not None else _encoded(base.open)
            self._marks = dict(base.watermarks)
            self._counts = base.counts_of_open()
        return self._open

    def _put(self, execution_id: str, contribution: Contribution | None, partition: int, origin: Origin) -> None:
        """``execution_id`` counts as ``contribution`` now (``None``: it is no longer open)."""
        opened = self._opened()
        counts = self._counts
        assert counts is not None
        before = opened.pop(execution_id, None)
        self._encoded.pop(execution_id, None)
        if before is not None:
            counts = counts.plus(before, sign=-1)
        if contribution is not None:
            opened[execution_id] = contribution
            self._encoded[execution_id] = [contribution.status, contribution.duration]
            counts = counts.plus(contribution)
        self._counts = counts
        self._marks[partition] = origin

    def set(self, execution_id: str, contribution: Contribution, partition: int, origin: Origin) -> None:
        if not self.seen(partition, origin):
            self._put(execution_id, contribution, partition, origin)

    def absorb(self, execution_id: str, partition: int, origin: Origin) -> None:
        if self.seen(partition, origin):
            return
        gone = self._opened().get(execution_id)
        if gone is not None:
            self._closed = self._closed.plus(gone)
        self._put(execution_id, None, partition, origin)

    def reopen(
        self, execution_id: str, absorbed: Contribution, contribution: Contribution, partition: int, origin: Origin
    ) -> None:
        """As :meth:`TenantStats.reopen`."""
        if self.seen(partition, origin):
            return
        if execution_id not in self._opened():
            self._closed = self._closed.plus(absorbed, sign=-1)
        self._put(execution_id, contribution, partition, origin)

    def value(self) -> TenantStats:
        """The stats with every change applied (the very value drafted from when none was).
        The draft is spent: change it no more."""
        if self._open is None:
            return self._base
        return TenantStats(self._base.tenant_id, self._marks, self._open, self._closed, self._encoded, self._counts)


def stats_of_snapshots(tenant_id: str, snapshots: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The same view computed directly from execution snapshots: the oracle for tests and the
    definition the sink's queries follow."""
    stats = TenantStats(tenant_id)
    for n, snap in enumerate(snapshots):
        stats = stats.set(str(snap["id"]), Contribution(snap["status"], snap["duration"]), 0, (n, 0))
    return stats.view()
