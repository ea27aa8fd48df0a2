"""Where this project corrects or looks into faust-streaming at run time.

- :func:`patch_faust_commit_offsets`: Faust's consumer computes the offset to commit with a
  rule that crawls (one offset per commit interval) when its bookkeeping holds duplicates, and
  that can pass an unacknowledged first offset; see :mod:`processor.commit_offsets`.
- :func:`task_stacks`: every task of an event loop with its whole chain of awaits, for the log
  when the stall watchdog restarts a worker.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from processor.commit_offsets import next_commit_offset


def _new_offset(consumer: Any, tp: Any) -> int | None:
    """Faust's ``Consumer._new_offset`` by :func:`next_commit_offset`: the offset to commit for
    ``tp``, from the consumer's own bookkeeping (``_acked``, ``_acked_index``, ``_gap``,
    ``_committed_offset``). Offsets below the committed one are dropped here, once the commit
    that passed them is recorded (Faust drops them before it commits, and loses them when the
    commit then does not happen)."""
    acked: list[int] = consumer._acked[tp]
    committed: int | None = consumer._committed_offset[tp]
    gap_tree = consumer._gap.get(tp)
    if committed is not None:
        if acked and min(acked) < committed:
            acked[:] = [offset for offset in acked if offset >= committed]
            index = consumer._acked_index[tp]
            index.difference_update([offset for offset in index if offset < committed])
        if gap_tree:
            gap_tree.chop(0, committed)
    if not acked:
        return None
    return next_commit_offset(committed, acked, [(span.begin, span.end) for span in gap_tree] if gap_tree else [])


def patch_faust_commit_offsets() -> None:
    """Make every Faust consumer in this process compute its commit offsets with
    :func:`_new_offset`. Idempotent."""
    from faust.transport.consumer import Consumer

    Consumer._new_offset = _new_offset  # type: ignore[method-assign,assignment]


def task_stacks(loop: asyncio.AbstractEventLoop) -> str:
    """Where every task of ``loop`` waits, the whole chain of awaits of each. Safe to call from
    another thread (for diagnostics: the loop may be changing its tasks meanwhile)."""
    lines: list[str] = []
    try:
        for task in list(asyncio.all_tasks(loop)):
            lines.append(f"task {task.get_name()[:120]}")
            awaited: Any = task.get_coro()
            for _ in range(40):
                if type(awaited).__name__ in ("coroutine_wrapper", "async_generator_asend"):
                    # what `await coro` and `async for` hold: their coroutine is a referent
                    awaited = next((r for r in gc.get_referents(awaited) if hasattr(r, "cr_frame") or hasattr(r, "ag_frame")), None)
                frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "ag_frame", None) or getattr(awaited, "gi_frame", None)
                if frame is None:
                    if awaited is not None:
                        lines.append(f"    awaits {awaited!r}"[:300])
                    break
                lines.append(f"    {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
                awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "ag_await", None) or getattr(awaited, "gi_yieldfrom", None)
    except Exception as exc:  # noqa: BLE001 - diagnostics only: never keep the watchdog from restarting
        lines.append(f"(no task stacks: {exc})")
    return "\n".join(lines)
