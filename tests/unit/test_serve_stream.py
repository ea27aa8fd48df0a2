"""The live stream's journal and frames: the first poll is a baseline, each later difference is
one change with a growing id, a client sees only its tenants' changes, resumes after its
Last-Event-ID, gets ``reset`` when what it missed was dropped, and a client that never reads
holds up neither the poller nor another client."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson

from processor.serve.auth import ADMIN, Principal
from processor.serve.sse import Journal, stream


def rows(**statuses: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {("execution", i): {"id": i, "tenant_id": i.split("-")[0], "status": s} for i, s in statuses.items()}


def journal(size: int = 100) -> Journal:
    return Journal(Path("unused.db"), size=size, source=lambda path: {})


async def frames(j: Journal, principal: Principal, last: int | None, count: int) -> list[tuple[str, Any, str | None]]:
    out: list[tuple[str, Any, str | None]] = []
    gen = stream(j, principal, last, heartbeat_s=0.01)
    async for raw in gen:
        text = raw.decode()
        if not text.startswith(("id:", "event:")):
            continue
        fields = dict(line.split(": ", 1) for line in text.strip().splitlines())
        out.append((fields["event"], orjson.loads(fields["data"]), fields.get("id")))
        if len(out) == count:
            break
    await gen.aclose()
    return out


async def test_changes_after_the_baseline_reach_the_clients_that_may_see_them() -> None:
    j = journal()
    j.absorb(rows(**{"acme-1": "running", "beta-1": "running"}))
    assert j.seq == 0  # the baseline is not a change
    j.absorb(rows(**{"acme-1": "completed", "beta-1": "running", "beta-2": "running"}))
    assert [(c.seq, c.row["id"]) for c in j.changes] == [(1, "acme-1"), (2, "beta-2")]
    got = await frames(j, ADMIN, 0, 2)
    assert [(e, d["id"], i) for e, d, i in got] == [("execution", "acme-1", "1"), ("execution", "beta-2", "2")]
    beta = Principal(admin=False, tenants=frozenset({"beta"}))
    assert [(d["id"], i) for _, d, i in await frames(j, beta, 0, 1)] == [("beta-2", "2")]
    assert [d["tenantId"] for _, d, _ in await frames(j, ADMIN, 1, 1)] == ["beta"]  # resumes after id 1


async def test_a_client_whose_missed_changes_were_dropped_is_told_to_reset() -> None:
    j = journal(size=2)
    j.absorb(rows(**{"a-1": "pending"}))
    for status in ("running", "completed", "failed"):
        j.absorb(rows(**{"a-1": status}))
    assert [c.seq for c in j.changes] == [2, 3]
    assert [(e, i) for e, _, i in await frames(j, ADMIN, 0, 1)] == [("reset", "3")]
    assert [(e, i) for e, _, i in await frames(j, ADMIN, 1, 2)] == [("execution", "2"), ("execution", "3")]
    assert [e for e, _, _ in await frames(j, ADMIN, 99, 1)] == ["reset"]  # an id of an earlier server


async def test_a_client_that_never_reads_holds_up_no_one() -> None:
    j = journal()
    j.absorb(rows(**{"a-1": "pending"}))
    stuck = stream(j, ADMIN, 0, heartbeat_s=0.01)
    await stuck.__anext__()  # connected, then never read again
    for n in range(50):
        j.absorb(rows(**{"a-1": f"s{n}"}))  # the poller never waits for a client
    got = await asyncio.wait_for(frames(j, ADMIN, 0, 50), timeout=30)
    assert [int(i or 0) for _, _, i in got] == list(range(1, 51))
    await stuck.aclose()
