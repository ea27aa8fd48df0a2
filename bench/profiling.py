"""Sampling profiles of processes under test, with py-spy (``pip install py-spy``).

:func:`start_profiler` attaches ``py-spy record`` to a running process and writes collapsed
stacks (one ``frame;frame;... count`` line per distinct stack) when that process exits;
:func:`summarize` reads them back into the functions where the time goes. Only samples of
busy threads are recorded, so shares are of CPU time, not of wall time.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.common import BenchError

SAMPLE_RATE = 200
"""Samples per second."""


def py_spy() -> str:
    """The py-spy executable: next to this Python's, or on ``PATH``."""
    beside = Path(sys.executable).with_name("py-spy")
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise BenchError("profiling needs py-spy: pip install py-spy")
    return found


def start_profiler(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """``py-spy record`` on ``pid`` (non-blocking, by function) until it exits; writes ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [py_spy(), "record", "--pid", str(pid), "--rate", str(SAMPLE_RATE), "--format", "raw",
         "--nolineno", "--nonblocking", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def stop_profiler(proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    """Wait for py-spy to write its file (it stops when its target has exited)."""
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@dataclass(frozen=True, slots=True)
class ProfileEntry:
    function: str
    """``name (module/file.py)`` as py-spy prints it."""
    self_share: float
    """Share of the samples in which this function was running itself."""
    total_share: float
    """Share of the samples in which it was on the stack."""


@dataclass(frozen=True, slots=True)
class ProfileSummary:
    samples: int
    by_self: tuple[ProfileEntry, ...]
    by_total: tuple[ProfileEntry, ...]

    def text(self) -> str:
        lines = [f"{self.samples} samples ({self.samples / SAMPLE_RATE:.1f} CPU-seconds at {SAMPLE_RATE} Hz)", "",
                 "self %   total %  function (by self time)"]
        lines += [f"{e.self_share:6.1%}  {e.total_share:7.1%}  {e.function}" for e in self.by_self]
        lines += ["", "self %   total %  function (by total time)"]
        lines += [f"{e.self_share:6.1%}  {e.total_share:7.1%}  {e.function}" for e in self.by_total]
        return "\n".join(lines) + "\n"


def summarize(collapsed: Path, top: int = 30) -> ProfileSummary:
    """The ``top`` functions by self and by total time in a py-spy raw (collapsed) file."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count

    def entry(function: str) -> ProfileEntry:
        return ProfileEntry(function, own[function] / samples, total[function] / samples)

    if samples == 0:
        return ProfileSummary(0, (), ())
    return ProfileSummary(
        samples,
        tuple(entry(f) for f, _ in own.most_common(top)),
        tuple(entry(f) for f, _ in total.most_common(top)),
    )
