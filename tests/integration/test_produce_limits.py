"""``axmon produce`` on lines the broker cannot take: the line is reported by number with the
limit, every other line is published, exit 1."""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from processor.cli import main
from processor.ops.localbroker import MESSAGE_MAX_BYTES
from processor.runtime.admin import read_topic, topic_max_message_bytes
from producers import jsonl
from producers.client import AxmonProducer, ProducerConfig
from producers.jsonl import produce_lines
from schemas.ids import uuid7
from schemas.topics import Topics
from tests.integration.conftest import TEST_PARTITIONS


def started(n: int, metadata: dict[str, str] | None = None) -> dict[str, object]:
    return {"type": "execution.started", "version": 1, "event_id": uuid7(), "occurred_at": 1_767_225_600_000 + n,
            "execution_id": f"exec-{n}", "workflow_id": "wf", "workflow_name": "W", "tenant_id": "t",
            "user_id": "u", "steps_total": 1, "metadata": metadata or {"n": str(n)}}


def sample(n: int) -> dict[str, object]:
    return {"type": "metric.recorded", "version": 1, "event_id": uuid7(), "occurred_at": 1_767_225_600_000 + n,
            "metric_type": "cache.hit_rate", "value": float(n), "unit": "percent", "labels": {"n": str(n)}}


def event_ids(bootstrap: str, topic: str) -> set[str]:
    async def read() -> set[str]:
        return {orjson.loads(r.value)["event_id"] async for r in read_topic(bootstrap, topic) if r.value}
    return asyncio.run(read())


def noise(size: int) -> str:
    """Incompressible text, so that compression cannot bring a record under a limit."""
    return base64.b64encode(os.urandom(size * 3 // 4)).decode()


def test_an_oversize_line_in_the_middle_is_reported_and_the_rest_published(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [started(1), sample(2), started(3, {"blob": noise(2_500_000)}), sample(4), started(5), sample(6)]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(line) for line in lines) + b"\n")
    assert asyncio.run(topic_max_message_bytes(kafka_bootstrap, [topics.workflow_events])) == {
        topics.workflow_events: MESSAGE_MAX_BYTES}  # the session's local broker sets it
    code = main(["produce", str(path), "--bootstrap", kafka_bootstrap, "--topic-prefix", topics.prefix,
                 "--partitions", str(TEST_PARTITIONS)])
    err = capsys.readouterr().err
    assert code == 1
    assert "line 3:" in err and "bytes" in err and "Traceback" not in err and "unexpected" not in err
    assert [n for n in range(1, 7) if f"line {n}:" in err] == [3]
    assert "published 5 event(s)" in err
    assert event_ids(kafka_bootstrap, topics.workflow_events) == {str(lines[i]["event_id"]) for i in (0, 4)}
    assert event_ids(kafka_bootstrap, topics.metrics) == {str(lines[i]["event_id"]) for i in (1, 3, 5)}


async def test_a_line_the_broker_refuses_is_reported_and_its_batch_mates_published(
    kafka_bootstrap: str, topics: Topics, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker's limit lowered behind the client's back: the refusal comes from the broker,
    fails the whole batch and poisons the idempotent producer's partition; the lines are sent
    again alone and only the refused one is reported."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topics.workflow_events,
                                                  {"max.message.bytes": "20000"})])
    finally:
        await admin.close()
    while (await topic_max_message_bytes(kafka_bootstrap, [topics.workflow_events])) != {topics.workflow_events: 20000}:
        await asyncio.sleep(0.1)
    first_round: list[int] = []
    send_alone = jsonl._send_alone

    async def spy(failed: list[Any], reconnect: Any) -> Any:
        first_round.extend(s.line for s in failed)
        return await send_alone(failed, reconnect)

    monkeypatch.setattr(jsonl, "_send_alone", spy)
    lines = [started(n, {"blob": noise(60_000)} if n == 5 else None) for n in range(1, 11)]
    config = ProducerConfig(bootstrap=kafka_bootstrap, topics=topics, linger_ms=200)
    async with AxmonProducer(config=config) as producer:
        report = await produce_lines(producer, [orjson.dumps(line) for line in lines], max_record_bytes={},
                                     reconnect=lambda: AxmonProducer(config=config))
    assert [(e.line, e.reason) for e in report.invalid] == [(5, "refused")]
    assert "MessageSizeTooLarge" in report.invalid[0].detail or "RecordList" in report.invalid[0].detail
    assert report.published == 9
    assert 5 in first_round and len(first_round) > 1  # the refusal took other lines down with it
    published = await asyncio.to_thread(event_ids, kafka_bootstrap, topics.workflow_events)
    assert published == {str(line["event_id"]) for n, line in enumerate(lines, 1) if n != 5}
