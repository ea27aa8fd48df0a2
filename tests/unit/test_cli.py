"""The CLI's errors for people: one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def axmon(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "processor.cli", *args],
        capture_output=True, text=True, timeout=60, env=env, cwd=cwd,
    )


def test_missing_java_names_what_is_missing_and_the_docker_alternative(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path / "empty-bin"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = axmon("kafka", "start", "--data-dir", str(tmp_path / "kafka"), env=env)
    assert done.returncode == 1
    assert "java" in done.stderr.lower() and "docker compose" in done.stderr
    assert "Traceback" not in done.stderr


def test_no_broker_is_a_clear_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "AXMON_BOOTSTRAP"}
    done = axmon("produce", "--data-dir", str(tmp_path / "none"), env=env)
    assert done.returncode == 1
    assert "axmon kafka start" in done.stderr and "--bootstrap" in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_arguments_exit_2() -> None:
    assert axmon("worker", "--partitions", "many").returncode == 2
    assert axmon("no-such-command").returncode == 2


def test_bad_settings_are_one_line(tmp_path: Path) -> None:
    done = axmon("produce", "--bootstrap", "nohost", "--data-dir", str(tmp_path))
    assert done.returncode == 1 and "host:port" in done.stderr and "Traceback" not in done.stderr


def test_kafka_status_of_a_fresh_directory(tmp_path: Path) -> None:
    done = axmon("kafka", "status", "--data-dir", str(tmp_path / "fresh"))
    assert done.returncode == 3 and "not provisioned" in done.stdout
