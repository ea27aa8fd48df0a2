"""Writes ``schema_vN.db.gz``, the migration test's databases (``tests/unit/test_migration.py``):
``write_batch`` of raw samples and 60 s rollup windows (and so the tiers of that version), and of
the executions (with their steps) of a small simulated scenario, through the sink's code path as
it stood at the commit of :data:`WRITTEN_AT` (the files of versions 5 and 6 were written before
the executions were added, and hold none).

Run it with that version's code first on the path: for version 6, ``git worktree add --detach
/tmp/v6 61486ec``, then ``PYTHONPATH=/tmp/v6 .venv/bin/python tests/data/make_schema_db.py
tests/data/schema_v6.db.gz``; with newer code it writes a newer schema, which the migration test
refuses.
"""

from __future__ import annotations

import gzip
import random
import sys
import tempfile
from pathlib import Path

from processor.folds.aggregate import Aggregate
from processor.folds.execution import ExecutionState, apply, snapshot
from processor.folds.windows import series_id
from processor.store.db import open_for_writing
from processor.store.sinkdb import SinkBatch, write_batch
from producers.simulator import ScenarioConfig, generate_scenario
from schemas.events import LifecycleEvent, MetricRecorded

WRITTEN_AT = {5: "1067c5a", 6: "61486ec", 7: "cb45ad7", 10: "2a0211d"}
"""Schema version -> the commit whose code wrote ``tests/data/schema_v<version>.db.gz``."""

D0 = 1_700_006_400_000
"""A UTC day boundary."""
DAY = 86_400_000
W = 60_000
MT = "api.request.duration"
SERIES = ((None, {"model": "large"}), ("tenant_a", {"model": "large", "region": "eu"}),
          ("tenant_a", {"model": "small"}), ("tenant_b", {}))


def main(out: Path) -> None:
    rng = random.Random(17)
    samples = []
    for i, (tenant, labels) in enumerate(SERIES):
        for n in range(700):
            at = D0 + rng.randrange(3 * DAY)
            samples.append(MetricRecorded(
                event_id=f"0000{i}-{n:05d}", occurred_at=at, tenant_id=tenant, metric_type=MT if n % 7 else "cache.hit_rate",
                value=round(rng.lognormvariate(5, 1), 3), unit="ms", labels=labels))
    groups: dict[tuple[int, str, int], list[float]] = {}
    for s in samples:
        i = next(k for k, (t, ls) in enumerate(SERIES) if t == s.tenant_id and ls == s.labels)
        groups.setdefault((i, s.metric_type, s.occurred_at - s.occurred_at % W), []).append(s.value)
    final_before = D0 + 2 * DAY + 12 * 3_600_000
    dropped = {D0 + k * W for k in rng.sample(range(3 * 1440), 40)}
    rollups = []
    for (i, metric_type, start), values in sorted(groups.items(), key=lambda kv: kv[0][2]):
        if start in dropped:
            continue  # windows no series has a row for: read raw
        tenant, labels = SERIES[i]
        final = start + W <= final_before
        agg = Aggregate.of(values if final else values[:1])
        rollups.append({
            "series": series_id((tenant or "", metric_type, tuple(sorted(labels.items())))), "tenant_id": tenant,
            "metric_type": metric_type, "labels": dict(labels), "unit": "ms", "window_start": start,
            "window_end": start + W, **agg.summary(), "sketch": agg.sketch.to_json(), "final": final,
        })
    samples.sort(key=lambda s: s.occurred_at)
    states: dict[str, ExecutionState] = {}
    for event in generate_scenario(ScenarioConfig(seed=17, executions=40, start_ms=D0)):
        if isinstance(event, LifecycleEvent):
            states[event.execution_id] = apply(states.get(event.execution_id), event)
    executions = [snapshot(state) for state in states.values()]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "written.db"
        conn = open_for_writing(path)
        step = 200
        for k in range(0, max(len(samples), len(rollups)), step):
            batch = SinkBatch()
            for s in samples[k:k + step]:
                batch.add_sample(s)
            for r in rollups[k:k + step]:
                batch.add_rollup(r)
            for e in executions[k // 20:(k + step) // 20]:
                batch.add_execution(e)
            batch.consumed("axmon.metrics", 0, k + step, 0)
            write_batch(conn, batch, written_at_ms=0)
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.execute("VACUUM")
        conn.close()
        out.write_bytes(gzip.compress(path.read_bytes(), mtime=0))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
