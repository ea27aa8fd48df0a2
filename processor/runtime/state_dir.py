"""A worker's own directory on its machine (Faust's data directory), claimed for as long as the
process lives: two workers on one machine must never share one.

The claim is an exclusive ``flock`` on ``<dir>/axmon-worker.lock``, which holds the owner's pid.
The kernel drops it when the process dies (SIGKILL included) or ``exec``s itself for a restart
(the descriptor is not inherited), so a stale lock file never blocks a new worker.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from processor.errors import ConfigError

LOCK_NAME = "axmon-worker.lock"


def default_state_dir(topic_prefix: str) -> Path:
    """Faust's own default, ``<app id>-data`` in the working directory."""
    return Path(f"{topic_prefix}worker-data")


class StateDirInUse(ConfigError):
    """Another live worker holds this state directory."""


class StateDirClaim:
    """Holds ``path`` for this process until :meth:`release` (or the process ends)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        lock = path / LOCK_NAME
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StateDirInUse(
                f"the state directory {path} is in use by another worker (pid {owner}): give each worker "
                "on this machine its own --state-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
