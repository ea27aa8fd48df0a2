"""Live updates: one poller per server diffs the database every ``interval_s`` (active and recent
executions, recent alerts) and appends each change to a bounded journal with a sequence number;
every client reads the journal from its own position, so a slow client never holds up the poller
or another client. ``Last-Event-ID`` resumes from the journal; a client whose position has been
dropped from it gets a ``reset`` event (reload everything) and continues from the end."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from processor.serve.auth import Principal
from processor.serve.shape import camel
from processor.store.browse import Browser
from processor.urls import DbLocation

JOURNAL = 2_000
"""Changes kept for clients that reconnect."""


@dataclass(frozen=True, slots=True)
class Change:
    seq: int
    kind: str
    """``execution`` or ``alert``."""
    tenant_id: str | None
    row: dict[str, Any]


def _fingerprint(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(sorted((k, repr(v)) for k, v in row.items()))


def snapshot(db_path: DbLocation) -> dict[tuple[str, str], dict[str, Any]]:
    """What the stream watches, by (kind, id)."""
    with Browser(db_path) as db:
        rows = {("execution", r["id"]): r for r in db.get_recent_executions(200)}
        rows.update((("execution", r["id"]), r) for r in db.get_active_executions())
        rows.update((("alert", r["id"]), r) for r in db.list_alerts(limit=200))
    return rows


class Journal:
    def __init__(self, db_path: DbLocation, interval_s: float = 1.0, size: int = JOURNAL,
                 source: Callable[[DbLocation], dict[tuple[str, str], dict[str, Any]]] = snapshot) -> None:
        self.db_path, self.interval_s, self.source = db_path, interval_s, source
        self.changes: deque[Change] = deque(maxlen=size)
        self.seq = 0
        self._seen: dict[tuple[str, str], tuple[Any, ...]] | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                rows = await asyncio.to_thread(self.source, self.db_path)
            except Exception:  # a locked or missing database: try again next time
                rows = None
            if rows is not None:
                self.absorb(rows)
            await asyncio.sleep(self.interval_s)

    def absorb(self, rows: dict[tuple[str, str], dict[str, Any]]) -> None:
        """Append a change for every row that is new or differs from the last poll (the first
        poll is the baseline, not changes)."""
        prints = {key: _fingerprint(row) for key, row in rows.items()}
        if self._seen is not None:
            for key, fp in prints.items():
                if self._seen.get(key) != fp:
                    self.seq += 1
                    row = rows[key]
                    self.changes.append(Change(self.seq, key[0], row.get("tenant_id"), row))
        self._seen = {**(self._seen or {}), **prints}
        self._wake.set()
        self._wake = asyncio.Event()

    def since(self, seq: int) -> tuple[list[Change], bool]:
        """The changes after ``seq``, and whether some were already dropped."""
        first = self.changes[0].seq if self.changes else self.seq + 1
        lost = seq + 1 < first and seq < self.seq
        return [c for c in self.changes if c.seq > seq], lost

    async def wait(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            pass


def _frame(event: str, data: Any, ident: int | None = None) -> bytes:
    head = f"id: {ident}\n" if ident is not None else ""
    return f"{head}event: {event}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"


async def stream(journal: Journal, principal: Principal, last_id: int | None, *, heartbeat_s: float = 15.0,
                 disconnected: Callable[[], Any] | None = None) -> AsyncIterator[bytes]:
    """The SSE frames of one client: changes it may see after ``last_id`` (from now when
    ``None``), a ``reset`` when the journal no longer holds them, comments as heartbeats."""
    position = journal.seq if last_id is None else last_id
    yield b"retry: 2000\n\n"
    while True:
        changes, lost = journal.since(position)
        if lost or position > journal.seq:  # dropped, or an id of an earlier server
            yield _frame("reset", {"reason": "missed changes were dropped from the server's journal"}, journal.seq)
            position = journal.seq
            continue
        for change in changes:
            position = change.seq
            if principal.sees(change.tenant_id):
                yield _frame(change.kind, camel(change.row), change.seq)
        if disconnected is not None and await disconnected():
            return
        loop = asyncio.get_running_loop()
        quiet_until = loop.time() + heartbeat_s
        while journal.seq == position and loop.time() < quiet_until:
            await journal.wait(quiet_until - loop.time())
        if journal.seq == position:
            yield b": keep-alive\n\n"
