"""``axmon`` subcommands run as child processes (the demo, the proof, the tests): started the
way a user starts them, stopped with SIGTERM, or killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from processor.errors import AxmonError

RESTART_NOTICE = ", starting again in "
"""What a worker writes to its log each time it restarts itself (``restart_process``)."""


class ChildError(AxmonError):
    """A child process that should be running is not."""


class AxmonChild:
    """``python -m processor.cli <args>`` in ``workdir``, its output appended to ``<name>.log``."""

    def __init__(self, name: str, args: list[str], workdir: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.env = env or {}
        self.args = args
        self.workdir = workdir
        self.log = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> AxmonChild:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        with open(self.log, "ab") as out:
            out.write(f"\n--- start {self.starts} ---\n".encode())
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "processor.cli", *self.args],
                cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
            )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check(self) -> None:
        """Raise :class:`ChildError` with the end of the log if the process is not running."""
        if not self.alive():
            code = None if self.proc is None else self.proc.returncode
            raise ChildError(f"the {self.name} is not running (exit {code}); end of {self.log}:\n{self.tail(20)}")

    def kill(self) -> None:
        """SIGKILL: no cleanup, no commit, no flush."""
        if self.alive() and self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM and wait (SIGKILL if it does not stop in time); the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        return self.proc.returncode

    def restarts(self) -> int:
        """How often the process restarted itself (in place, same pid) since it was started."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return 0
        return text.rpartition(f"--- start {self.starts} ---")[2].count(RESTART_NOTICE)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
