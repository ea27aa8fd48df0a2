"""Which source offset a Faust worker may commit. Pure: no faust import.

Faust's consumer keeps, per partition, the offsets its streams have acknowledged (``acked``, a
list) and the offsets it believes will never arrive (``gaps``: when a fetched offset jumps past
the last one read). Its own ``Consumer._new_offset`` commits the first run of consecutive
numbers in the sorted list. Two faults in that, both seen on this project's worker:

- A *duplicate* offset ends the run: ``[26, 26, 27, 27, ...]`` commits ``26 -> 27``, then
  ``27 -> 28``: one offset per commit interval (a second). Duplicates arise when a gap is
  recorded for offsets already acknowledged: Faust records a gap *including* the offset being
  read, and after it re-seeks a partition to its committed offset at the end of a recovery
  while the fetcher goes on past what it had already delivered, every offset in between is
  both acked and "gap". The worker then crawls through its backlog at one record a second
  and the stall watchdog restarts it, again and again.
- A missing *first* offset is let through: it compares ``min(acked) - committed > 1``, so
  with offset ``C`` unacknowledged and ``C + 1`` acknowledged it commits past ``C``.

:func:`next_commit_offset` is the rule they should follow: the end of the unbroken run of done
offsets (acknowledged, or in a gap) that starts at the committed offset.
"""

from __future__ import annotations

from collections.abc import Iterable


def next_commit_offset(committed: int | None, acked: Iterable[int], gaps: Iterable[tuple[int, int]] = ()) -> int | None:
    """The next offset to commit for one partition, or ``None`` when there is nothing new.

    ``committed`` is the offset last committed (the next one to process; ``None`` when nothing
    was committed yet: then the run starts at the smallest done offset). ``acked`` are the
    offsets processed, in any order, duplicates allowed. ``gaps`` are half-open ranges
    ``[begin, end)`` of offsets that will never be delivered (compacted away, transaction
    markers). Offsets below ``committed`` are ignored.
    """
    done = set(acked)
    if not done:
        return None
    spans = sorted((begin, end) for begin, end in gaps if end > begin)
    start = committed if committed is not None else min(done | {begin for begin, _ in spans})
    offset = start
    while True:
        if offset in done:
            offset += 1
            continue
        skip = next((end for begin, end in spans if begin <= offset < end), None)
        if skip is None:
            break
        offset = skip
    return offset if offset > start else None
