"""The live stream's journal and frames: the first poll is a baseline, each later difference is
one change with a growing id, a client sees only its tenants' changes, resumes after its
Last-Event-ID, gets ``reset`` when what it missed was dropped, and a client that never reads
holds up neither the poller nor another client. Over the ASGI app: the stream tokens a browser's
EventSource connects with (scoped, short-lived, forgery refused, accepted by the stream only),
and ``?last_event_id=`` for a new EventSource."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from fastapi import FastAPI

from processor.serve.app import ServeConfig, create_app
from processor.serve.auth import ADMIN, ApiError, KeyRing, Principal, StreamTokens
from processor.serve.sse import Journal, stream
from processor.settings import Settings

Frame = tuple[str, Any, str | None]


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


async def sse_over_asgi(app: FastAPI, url: str, headers: dict[str, str] | None = None,
                        until: Callable[[list[Frame]], bool] = bool, timeout: float = 20) -> tuple[int, list[Frame], bytes]:
    """GET ``url`` from the ASGI app as a streaming client would: the status, the SSE frames read
    until ``until(frames)`` holds (then the client disconnects), and the body of an error."""
    parts = urlsplit(url)
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": parts.path, "raw_path": parts.path.encode(), "query_string": parts.query.encode(),
             "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()], "root_path": "",
             "client": ("127.0.0.1", 50000), "server": ("testserver", 80)}
    gone = asyncio.Event()
    requested = False
    status, frames, body = 0, [], b""

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, body
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunk = message.get("body", b"")
            body += chunk
            for block in chunk.decode().split("\n\n"):
                lines = [line for line in block.splitlines() if not line.startswith((":", "retry:"))]
                if lines and status == 200:
                    fields = dict(line.split(": ", 1) for line in lines)
                    frames.append((fields["event"], orjson.loads(fields["data"]), fields.get("id")))
            if status == 200 and until(frames):
                gone.set()

    try:
        await asyncio.wait_for(app(scope, receive, send), timeout)
    finally:
        await app.state.journal.stop()
    return status, frames, body


def app_over(changes: list[dict[tuple[str, str], dict[str, Any]]]) -> FastAPI:
    """The app with a journal that holds ``changes`` (after an empty baseline) and polls nothing."""
    keys = KeyRing((("admin-key-0123456789", ADMIN),))
    app = create_app(ServeConfig(Path("unused.db"), Settings.load({}).topics, keys))
    app.state.journal = Journal(Path("unused.db"), source=lambda path: {})
    app.state.journal.absorb({})
    for rows_ in changes:
        app.state.journal.absorb(rows_)
    return app


def test_a_stream_token_carries_its_scope_and_expires() -> None:
    tokens = StreamTokens(ttl_ms=1_000)
    scoped = Principal(admin=False, tenants=frozenset({"acme", "b,e.t=a"}))
    for principal in (ADMIN, scoped):
        token, expires = tokens.issue(principal, 5_000)
        assert expires == 6_000 and tokens.verify(token, 5_999) == principal
        with pytest.raises(ApiError, match="expired"):
            tokens.verify(token, 6_000)
    token, _ = tokens.issue(scoped, 5_000)
    forged = "*." + token.split(".", 1)[1]  # the same expiry and signature, an admin's scope
    for bad in (forged, token + "x", "", "...", StreamTokens().issue(scoped, 5_000)[0]):
        with pytest.raises(ApiError) as caught:
            tokens.verify(bad, 5_500)
        assert caught.value.status == 401


async def test_a_browser_connects_with_a_token_and_resumes_with_last_event_id_in_the_query() -> None:
    app = app_over([rows(**{"acme-1": "running", "beta-1": "running"}), rows(**{"acme-1": "completed", "beta-1": "failed"})])
    beta = Principal(admin=False, tenants=frozenset({"beta"}))
    token, _ = app.state.tokens.issue(beta, int(time.time() * 1000))
    status, got, _ = await sse_over_asgi(app, f"/api/v1/stream?token={token}&last_event_id=0", until=lambda f: len(f) >= 2)
    assert status == 200 and [(d["id"], d["status"], i) for _, d, i in got] == [("beta-1", "running", "2"), ("beta-1", "failed", "4")]
    status, got, _ = await sse_over_asgi(app, f"/api/v1/stream?token={token}&last_event_id=2", until=lambda f: len(f) >= 1)
    assert [i for _, _, i in got] == ["4"]
    # the header an EventSource sends when it reconnects by itself wins over the query
    status, got, _ = await sse_over_asgi(app, f"/api/v1/stream?token={token}&last_event_id=0", {"Last-Event-ID": "3"},
                                         until=lambda f: len(f) >= 1)
    assert [i for _, _, i in got] == ["4"]
    for url in ("/api/v1/stream?token=" + token[:-2], "/api/v1/stream"):  # a bad token; no token and no key
        status, _, body = await sse_over_asgi(app, url)
        assert status == 401 and orjson.loads(body)["code"] == "unauthorized"
