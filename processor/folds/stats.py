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

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
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

    def _encoded_open(self) -> dict[str, list[Any]]:
        """A copy of :attr:`encoded_open` to update."""
        if self.encoded_open is None:
            return {e: [c.status, c.duration] for e, c in self.open.items()}
        return dict(self.encoded_open)

    def _open_with(self, execution_id: str, contribution: Contribution | None) -> dict[str, Any]:
        """The fields ``open`` and ``encoded_open`` of a copy where ``execution_id`` counts as
        ``contribution`` (``None``: is no longer open); this value's maps stay as they are."""
        opened = dict(self.open)
        encoded = self._encoded_open()
        if contribution is None:
            opened.pop(execution_id, None)
            encoded.pop(execution_id, None)
        else:
            opened[execution_id] = contribution
            encoded[execution_id] = [contribution.status, contribution.duration]
        return {"open": opened, "encoded_open": encoded}

    def seen(self, partition: int, origin: Origin) -> bool:
        mark = self.watermarks.get(partition)
        return mark is not None and origin <= mark

    def _advanced(self, partition: int, origin: Origin) -> dict[int, Origin]:
        marks = dict(self.watermarks)
        marks[partition] = origin
        return marks

    def set(self, execution_id: str, contribution: Contribution, partition: int, origin: Origin) -> TenantStats:
        if self.seen(partition, origin):
            return self
        return replace(self, **self._open_with(execution_id, contribution), watermarks=self._advanced(partition, origin))

    def absorb(self, execution_id: str, partition: int, origin: Origin) -> TenantStats:
        if self.seen(partition, origin):
            return self
        gone = self.open.get(execution_id)
        closed = self.closed.plus(gone) if gone is not None else self.closed
        return replace(self, **self._open_with(execution_id, None), closed=closed, watermarks=self._advanced(partition, origin))

    def reopen(
        self, execution_id: str, absorbed: Contribution, contribution: Contribution, partition: int, origin: Origin
    ) -> TenantStats:
        """An absorbed execution is back (a late event rehydrated it): take ``absorbed`` (what
        its absorb added) out of the closed counts and set it open as ``contribution``. Once it
        is open again (an earlier reopen) this is a plain :meth:`set`."""
        if self.seen(partition, origin):
            return self
        if execution_id in self.open:
            return self.set(execution_id, contribution, partition, origin)
        closed = self.closed.plus(absorbed, sign=-1)
        return replace(self, **self._open_with(execution_id, contribution), closed=closed, watermarks=self._advanced(partition, origin))

    def view(self) -> dict[str, Any]:
        """total, running, completed, failed, cancelled, avg_duration (ms), success_rate (%),
        plus pending (executions whose start event has not arrived yet)."""
        counts = {s: 0 for s in ("pending", "running", "completed", "failed", "cancelled")}
        duration_sum, duration_count = self.closed.duration_sum, self.closed.duration_count
        for c in self.open.values():
            counts[c.status] = counts.get(c.status, 0) + 1
            if c.duration is not None:
                duration_sum += c.duration
                duration_count += 1
        total = self.closed.total + len(self.open)
        completed = self.closed.completed + counts["completed"]
        return {
            "tenant_id": self.tenant_id,
            "total": total,
            "pending": counts["pending"],
            "running": counts["running"],
            "completed": completed,
            "failed": self.closed.failed + counts["failed"],
            "cancelled": self.closed.cancelled + counts["cancelled"],
            "avg_duration": duration_sum / duration_count if duration_count else 0.0,
            "success_rate": round(completed / total * 100, 2) if total else 0.0,
        }

    def to_json(self) -> dict[str, Any]:
        c = self.closed
        return {
            "tenant": self.tenant_id,
            "wm": {str(p): list(o) for p, o in self.watermarks.items()},
            "open": self.encoded_open if self.encoded_open is not None else self._encoded_open(),
            "closed": [c.total, c.completed, c.failed, c.cancelled, c.duration_sum, c.duration_count],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TenantStats:
        return cls(
            str(data["tenant"]),
            {int(p): (int(o[0]), int(o[1])) for p, o in data.get("wm", {}).items()},
            {e: Contribution(str(v[0]), v[1]) for e, v in data.get("open", {}).items()},
            ClosedCounts(*data.get("closed", ())),
        )


def stats_of_snapshots(tenant_id: str, snapshots: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The same view computed directly from execution snapshots: the oracle for tests and the
    definition the sink's queries follow."""
    stats = TenantStats(tenant_id)
    for n, snap in enumerate(snapshots):
        stats = stats.set(str(snap["id"]), Contribution(snap["status"], snap["duration"]), 0, (n, 0))
    return stats.view()
