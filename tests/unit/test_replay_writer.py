"""The partial database a replay builds: written like the live sink's, but the raw samples are
counted once at the end (:mod:`processor.runtime.replay_writer`)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from processor.runtime.replay_writer import COUNTED_AT_THE_END, PartialDb
from processor.store.db import open_for_writing
from processor.store.sinkdb import SinkBatch, write_batch
from producers.factory import EventFactory


def batches() -> list[SinkBatch]:
    f = EventFactory()
    samples = [f.record(f"m.type{n % 3}", float(n), labels={"k": str(n % 4)}, tenant_id=[None, "t1"][n % 2],
                        occurred_at=1_000 + n) for n in range(60)]  # 3 types x 2 tenants
    out = []
    for chunk in (samples[:25], samples[20:60]):  # five samples twice: stored and counted once
        batch = SinkBatch()
        for s in chunk:
            batch.add_sample(s)
        out.append(batch)
    return out


def counts(path: Path) -> list[tuple[str, str, int]]:
    conn = sqlite3.connect(path)
    try:
        return sorted(conn.execute("SELECT metric_type, tenant, samples FROM metric_counts"))
    finally:
        conn.close()


def test_the_partial_files_counts_and_triggers_are_the_live_sinks(tmp_path: Path) -> None:
    live = open_for_writing(tmp_path / "live.db")
    for batch in batches():
        write_batch(live, batch, written_at_ms=0)
    live.close()
    partial = PartialDb(tmp_path / "replay.db")
    try:
        for batch in batches():
            partial.write(batch)
        partial.complete()
    finally:
        partial.close()
    assert counts(tmp_path / "replay.db") == counts(tmp_path / "live.db")
    assert sum(n for _, _, n in counts(tmp_path / "live.db")) == 60
    conn = open_for_writing(tmp_path / "replay.db")  # the trigger is back: a live sink goes on counting
    try:
        [(name,)] = conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name = ?", (COUNTED_AT_THE_END,))
        batch = SinkBatch()
        batch.add_sample(EventFactory().record("m.type0", 1.0, tenant_id="t1", occurred_at=5_000))
        write_batch(conn, batch, written_at_ms=0)
    finally:
        conn.close()
    assert sum(n for _, _, n in counts(tmp_path / "replay.db")) == 61
