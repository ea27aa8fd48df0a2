"""What a batch publishes, coalesced: fewer records, the same meaning. Pure.

- On the compacted derived topics (execution state, workflow stats, metric rollups) a reader
  only needs each key's newest record, in order per key. A batch publishes, per key, its last
  value; and when the key's last record is a tombstone, that value and then the tombstone (a
  reader that keeps rows, like the sink, still gets the last state before the key left).
- The internal stats changes of a batch are merged per tenant into records of many ops
  (``{"tenant", "ops": [op, ...]}``, each op as it was; :class:`processor.folds.stats_core.StatsCore`
  folds them in order), cut so that none is larger than :data:`MAX_MERGED_BYTES`.
- Everything else (dead letters, samples, alerts, forwarded records) goes as it came, in order.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from processor.folds.records import Emit, Stream

COMPACTED = frozenset({Stream.EXECUTION_STATE, Stream.WORKFLOW_STATS, Stream.METRIC_ROLLUPS})
MAX_MERGED_BYTES = 256 * 1024
"""The largest merged stats-changes record (one op is ~200 bytes)."""


def coalesce(emits: Sequence[Emit]) -> list[Emit]:
    """``emits`` (in the order a batch made them) as the batch publishes them; see the module
    docstring."""
    last_value: dict[tuple[Stream, bytes | None, int | None], int] = {}
    last_tombstone: dict[tuple[Stream, bytes | None, int | None], int] = {}
    ops: dict[tuple[bytes | None, int | None], list[bytes]] = {}
    first_op: dict[tuple[bytes | None, int | None], int] = {}
    for i, emit in enumerate(emits):
        if emit.stream in COMPACTED:
            target = last_tombstone if emit.value is None else last_value
            target[(emit.stream, emit.key, emit.partition)] = i
        elif emit.stream is Stream.STATS_CHANGES and emit.value is not None and not emit.headers:
            slot = (emit.key, emit.partition)
            ops.setdefault(slot, []).append(emit.value)
            first_op.setdefault(slot, i)
    kept = set(last_value.values())
    kept.update(i for k, i in last_tombstone.items() if i > last_value.get(k, -1))
    merged_at = {i: slot for slot, i in first_op.items()}
    out: list[Emit] = []
    for i, emit in enumerate(emits):
        if emit.stream in COMPACTED:
            if i in kept:
                out.append(emit)
        elif emit.stream is Stream.STATS_CHANGES and emit.value is not None and not emit.headers:
            if i in merged_at:
                key, partition = merged_at[i]
                out.extend(Emit(Stream.STATS_CHANGES, key, value, partition) for value in merge_ops(key, ops[(key, partition)]))
        else:
            out.append(emit)
    return out


def merge_ops(tenant: bytes | None, ops: Sequence[bytes]) -> list[bytes]:
    """Encoded stats ops of one tenant as merged records (one op alone stays as it is)."""
    if len(ops) == 1:
        return [ops[0]]
    head = b'{"tenant":' + _json_string(tenant) + b',"ops":['
    records: list[bytes] = []
    chunk: list[bytes] = []
    size = len(head)
    for op in ops:
        if chunk and size + len(op) + 3 > MAX_MERGED_BYTES:
            records.append(head + b",".join(chunk) + b"]}")
            chunk, size = [], len(head)
        chunk.append(op)
        size += len(op) + 1
    records.append(head + b",".join(chunk) + b"]}")
    return records


def _json_string(raw: bytes | None) -> bytes:
    return orjson.dumps(None if raw is None else raw.decode("utf-8", "replace"))
