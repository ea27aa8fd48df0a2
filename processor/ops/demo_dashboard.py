"""The end of ``axmon demo``: ``axmon serve`` over the demo's database, left running in the
background (its own session, so the terminal's Ctrl-C and the end of ``make`` leave it alone),
on port 8321 or the next free one. Its pid is kept in ``serve.pid`` beside the demo's logs; the
next demo stops that server before it starts its own, so runs do not pile up servers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

PORTS_TRIED = 20


@dataclass(frozen=True, slots=True)
class Dashboard:
    url: str
    pid: int
    pid_file: Path
    log: Path


def free_port(first: int, host: str = "127.0.0.1", tries: int = PORTS_TRIED) -> int:
    """The first port from ``first`` on that ``host`` can bind, or an error naming the range."""
    for port in range(first, first + tries):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise OSError(f"no free port in {first}..{first + tries - 1} on {host}")


def is_axmon_serve(pid: int) -> bool:
    """Whether ``pid`` is a running ``axmon serve`` (its command line, so a reused pid is left alone)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"processor.cli" in argv and b"serve" in argv


def stop_previous(pid_file: Path, timeout: float = 10.0) -> int | None:
    """Stop the server a previous demo left (SIGTERM); its pid, or ``None`` when none runs."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    pid_file.unlink(missing_ok=True)
    if not is_axmon_serve(pid):
        return None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while is_axmon_serve(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return pid


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "api/v1/health", timeout=2) as res:
            return bool(res.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def start_dashboard(db: Path, log_dir: Path, port: int, console: Console, timeout: float = 30.0) -> Dashboard | None:
    """Start ``axmon serve --db db`` in the background and wait until it answers; print its URL
    and how to stop it. ``None`` (and why, printed) when it did not come up."""
    pid_file, log = log_dir / "serve.pid", log_dir / "serve.log"
    stopped = stop_previous(pid_file)
    if stopped is not None:
        console.print(f"stopped the dashboard of the previous demo (axmon serve, pid {stopped})")
    try:
        port = free_port(port)
    except OSError as exc:
        console.print(f"[yellow]no dashboard: {exc}[/]; start one with [bold]axmon serve --db {db} --port PORT[/]")
        return None
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "processor.cli", "serve", "--db", str(db), "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout
    while not _answers(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-5:])
            console.print(f"[yellow]the dashboard did not start (exit {proc.returncode}); end of {log}:[/]\n{tail}")
            return None
        time.sleep(0.2)
    pid_file.write_text(f"{proc.pid}\n")
    proc.returncode = 0  # the server outlives this handle by design: Popen must not warn that it still runs
    console.print(f"\nThe dashboard is at [bold]{url}[/] (axmon serve over {db}, pid {proc.pid}, log {log}); "
                  f"stop it with [bold]kill {proc.pid}[/] (or kill $(cat {pid_file})); the next demo stops it too.")
    return Dashboard(url, proc.pid, pid_file, log)
