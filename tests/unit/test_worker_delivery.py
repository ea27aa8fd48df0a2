"""A record the worker's producer gives up on crashes the worker (restart), before anything can
commit past it; a delivered or cancelled one does nothing. No broker, no Faust app."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError

from processor.runtime import worker as worker_module


def test_an_undelivered_record_restarts_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    restarts: list[tuple[str, Any]] = []
    monkeypatch.setattr(worker_module, "restart_process", lambda reason, reporter=None: restarts.append((reason, reporter)))
    me = SimpleNamespace(reporter="the reporter")

    async def run() -> None:
        loop = asyncio.get_running_loop()
        delivered, failed, cancelled = loop.create_future(), loop.create_future(), loop.create_future()
        delivered.set_result("metadata")
        failed.set_exception(KafkaTimeoutError("expired"))
        cancelled.cancel()
        for future in (delivered, failed, cancelled):
            worker_module.Worker._delivered(me, future)  # type: ignore[arg-type]

    asyncio.run(run())
    assert len(restarts) == 1
    reason, reporter = restarts[0]
    assert "could not be delivered" in reason and "KafkaTimeoutError" in reason and reporter == "the reporter"
