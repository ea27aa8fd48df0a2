"""``axmon tail`` on the real broker: JSON lines for pipes, key filtering, tombstones."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import orjson

from producers import AxmonProducer, ProducerConfig
from schemas import Topics


def test_tail_prints_json_lines_and_filters_by_key(kafka_bootstrap: str, topics: Topics) -> None:
    async def send() -> None:
        async with AxmonProducer(config=ProducerConfig(bootstrap=kafka_bootstrap, topics=topics)) as producer:
            for n in range(6):
                await producer.send_raw(topics.execution_state, f"e{n % 2}".encode(), orjson.dumps({"id": f"e{n % 2}", "n": n}))
            await producer.send_raw(topics.execution_state, b"e1", None)

    asyncio.run(send())
    done = subprocess.run(
        [sys.executable, "-m", "processor.cli", "tail", "execution-state", "--bootstrap", kafka_bootstrap,
         "--topic-prefix", topics.prefix, "--from-beginning", "--key", "e1", "--limit", "4", "--json"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = [orjson.loads(line) for line in done.stdout.splitlines()]
    assert [line["key"] for line in lines] == ["e1"] * 4
    assert [line["value"]["n"] if line["value"] else None for line in lines] == [1, 3, 5, None]
    assert {"topic", "partition", "offset", "timestamp", "key", "value"} == set(lines[0])
