"""The CLI on odd data and narrow terminals: every stored value renders, ids are never cut,
words never split, a bug is one line (exit 70), ids may be given by a unique prefix, and the
small commands around the broker (``--version``, ``kafka reset``)."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

from processor import cli
from processor.cli import EXIT_SOFTWARE, main
from processor.cli import read as cli_read
from processor.cli.render import Column, fit, table_width
from processor.store.db import open_for_writing
from processor.store.queries import Monitor
from processor.store.reader import prefix_end
from tests.pg import DbAt
from tests.unit.test_queries import (
    MT,
    T0,
    Sample,
    build_db,
    insert_execution,
    insert_row,
    insert_stats,
    insert_step,
)

ODD = (1e308, 1.7976931348623157e308, -1.7976931348623157e308, 5e-324, -0.0, float("inf"), float("-inf"), 0.0)
IDS = ("019ad0a2-93a1-7c3e-8f21-5b0e2e2d690a", "019ad0a2-93a1-7c3e-8f21-5b0e2e2d6aaa", "019ad0b7-0000-7000-8000-000000000001")
WORDS = ("Synthesise", "Findings", "Research", "Quality", "Analysis")


@pytest.fixture
def odd_db(tmp_path: Path) -> Path:
    """Executions, steps, samples and stats holding the extremes a SQLite column can hold
    (infinities in integer columns: SQLite only)."""
    samples = [Sample(f"s{i}", T0 + i * 1_000, v, tenant_id="tenant_a") for i, v in enumerate(ODD)]
    samples += [Sample(f"c{i}", T0 + i * 1_000, v, metric_type="cache.hit_rate") for i, v in enumerate(ODD)]
    path = build_db(tmp_path / "odd.db", samples, final_before=T0)
    conn = open_for_writing(path)
    conn.execute("BEGIN")
    huge = 2**63 - 1
    insert_execution(conn, IDS[0], workflow_name="Synthesise Findings Research", duration=huge, tokens_used=huge,
                     cost=1e308, completed_at=huge, last_event_at=huge, current_step="Quality Analysis",
                     tenant_id="tenant_with_a_rather_long_name")
    insert_execution(conn, IDS[1], workflow_name="Deep Research Agent", status="running", started_at=T0 + 5,
                     error_message="x" * 300)
    insert_execution(conn, IDS[2], started_at=huge, duration=float("inf"), cost=5e-324, tokens_used=-0.0)
    insert_step(conn, "st1", IDS[0], step_name="Synthesise Findings", duration=huge, completed_at=huge,
                tokens_used=huge, cost=float("inf"), retry_count=huge)
    insert_step(conn, "st2", IDS[2], started_at=huge, duration=float("-inf"), cost=-1.7976931348623157e308)
    insert_stats(conn, "tenant_a", total=huge, completed=huge, duration_sum=huge, duration_count=1)
    insert_row(conn, "dead_letters", {"topic": "axmon.metrics", "partition": 0, "offset": 7, "reason": "late",
                                      "detail": "Synthesise Findings", "timestamp": huge, "key": b"\xff", "value": b""})
    conn.execute("COMMIT")
    conn.close()
    return path


def run_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, width: int, *argv: str) -> str:
    monkeypatch.setenv("COLUMNS", str(width))  # rich's width when stdout is not a terminal
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Traceback" not in out + err and "unexpected error" not in err
    return out


COMMANDS = (
    ["workflows"], ["workflows", "--active"], ["execution", IDS[0]], ["execution", IDS[2]], ["stats"],
    ["dead-letters"], ["metrics", MT, "--since", str(T0 - 60_000), "--until", str(T0 + 60_000)],
    ["metrics", "cache.hit_rate", "--since", str(T0 - 60_000), "--until", str(T0 + 60_000)],
    ["metrics", MT, "--since", str(T0 - 60_000), "--until", str(T0 + 60_000), "--json"],
)


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_every_read_command_renders_extreme_values(
    argv: list[str], width: int, odd_db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = run_cli(capsys, monkeypatch, width, *argv, "--db", str(odd_db))
    if "--json" not in argv:
        assert all(len(line) <= width for line in out.splitlines())
        assert not re.search(r"\d{16,}", out.replace(",", ""))  # huge numbers are short: 9.2e18, 1.0e308


def test_huge_values_print_in_short_scientific_notation() -> None:
    assert [cli_read.human_number(v) for v in ODD] == [
        "1.0e308", "1.8e308", "-1.8e308", "4.9e-324", "0", "inf", "-inf", "0"]
    assert cli_read.human_number(float("nan")) == "nan"
    assert cli_read.human_duration(float("inf")) == "inf ms" and cli_read.human_duration(1e308) == "1.0e308 ms"
    assert cli_read.human_time(2**63 - 1).startswith("epoch 9.2e18")
    assert cli_read.sparkline([1e308, -1e308, float("inf"), float("nan"), None]) == "█▁█  "


@pytest.mark.parametrize("width", [80, 120])
def test_ids_are_whole_and_words_unbroken_at_80_and_120_columns(
    width: int, odd_db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    listing = run_cli(capsys, monkeypatch, width, "workflows", "--db", str(odd_db))
    for execution_id in IDS:
        assert execution_id in listing  # on one line, not cut, not folded
    timeline = run_cli(capsys, monkeypatch, width, "execution", IDS[0][:-1], "--db", str(odd_db))
    assert IDS[0] in timeline
    words = set(re.findall(r"[A-Za-z]+", listing + timeline))
    fragments = {w for w in words if any(w != whole and (whole.startswith(w) or whole.endswith(w))
                                         for whole in WORDS) and len(w) > 2}
    assert not fragments, fragments
    assert {"Synthesise", "Findings"} <= words


def test_fit_drops_the_least_needed_columns_first_and_never_an_id() -> None:
    columns = [Column("id", "id"), Column("name", "text", keep=3), Column("when", keep=2), Column("extra", keep=1)]
    rows = [["a" * 36, "Synthesise Findings", "2026-01-01T00:00:00", "x" * 30]]
    assert fit(columns, rows, 200) == {"id": 36, "name": 19, "when": 19, "extra": 30}
    narrow = fit(columns, rows, 60)
    assert narrow["id"] == 36 and "extra" not in narrow and table_width(list(narrow.values())) <= 60
    assert fit(columns, rows, 10) == {"id": 36}


# -- the top-level guard -------------------------------------------------------------------------


def _boom(args: object) -> int:
    raise RuntimeError("a bug\nsecond line")


def test_an_unexpected_error_is_one_line_naming_the_command_and_exit_70(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, db: DbAt
) -> None:
    monkeypatch.setattr(cli_read, "cmd_stats", _boom)
    assert main(["stats", "--db", str(db("x.db"))]) == EXIT_SOFTWARE == 70
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "axmon stats" in err and "RuntimeError: a bug" in err and "axmon -v stats" in err
    assert main(["-v", "stats", "--db", str(db("x.db"))]) == 70
    verbose = capsys.readouterr().err
    assert "Traceback" in verbose and "a bug" in verbose


def test_typed_errors_keep_their_exit_codes(capsys: pytest.CaptureFixture[str], db: DbAt) -> None:
    assert main(["stats", "--db", str(db("missing.db"))]) == 1
    assert "unexpected" not in capsys.readouterr().err


# -- execution ids by prefix ----------------------------------------------------------------------


def test_execution_accepts_a_unique_prefix(
    odd_db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = run_cli(capsys, monkeypatch, 120, "execution", "019ad0b7", "--db", str(odd_db), "--json")
    assert f'"id":"{IDS[2]}"' in out


def test_an_ambiguous_prefix_lists_candidates(odd_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["execution", "019ad0a2", "--db", str(odd_db)]) == 1
    err = capsys.readouterr().err
    assert "more than one" in err and IDS[0] in err and IDS[1] in err and IDS[2] not in err


def test_an_unknown_prefix_says_so(odd_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["execution", "019ad0c", "--db", str(odd_db)]) == 1
    assert "no execution '019ad0c'" in capsys.readouterr().err


def test_the_prefix_range_bounds_every_string_with_the_prefix(odd_db: Path) -> None:
    assert prefix_end("ab") == "ac" and prefix_end("a\U0010ffff") == "b" and prefix_end("\U0010ffff") is None
    assert prefix_end("a\ud7ff") == "a\ue000"
    with Monitor(odd_db) as monitor:
        assert monitor.find_execution_ids("019ad0a2", 5) == list(IDS[:2])
        assert monitor.find_execution_ids("\U0010ffff", 5) == []


# -- --version and kafka reset --------------------------------------------------------------------


def test_version_comes_from_the_installed_package() -> None:
    done = subprocess.run([sys.executable, "-m", "processor.cli", "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == f"axmon {importlib.metadata.version('axmon')}"


def _broker_dir(tmp_path: Path) -> Path:
    data_dir = tmp_path / "kafka"
    (data_dir / "data").mkdir(parents=True)
    (data_dir / "data" / "meta.properties").write_text("cluster.id=x\n")
    (data_dir / "broker.json").write_text("{}")
    (data_dir / "broker.log").write_text("log\n")
    return data_dir


def test_kafka_reset_without_a_terminal_refuses_unless_yes(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = _broker_dir(tmp_path)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    assert main(["kafka", "reset", "--data-dir", str(data_dir)]) == 1
    assert "--yes" in capsys.readouterr().err and (data_dir / "data" / "meta.properties").exists()
    assert main(["kafka", "reset", "--yes", "--data-dir", str(data_dir)]) == 0
    assert not data_dir.exists()


@pytest.mark.parametrize(("answer", "removed"), [("n", False), ("", False), ("y", True)])
def test_kafka_reset_asks_on_a_terminal(answer: str, removed: bool, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = _broker_dir(tmp_path)
    (data_dir / "notes.txt").write_text("mine")  # not the broker's: left alone
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: answer)
    assert main(["kafka", "reset", "--data-dir", str(data_dir)]) == (0 if removed else 1)
    assert (data_dir / "data").exists() is not removed and (data_dir / "broker.json").exists() is not removed
    assert (data_dir / "notes.txt").read_text() == "mine"


def test_kafka_reset_of_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kafka", "reset", "-y", "--data-dir", str(tmp_path / "none")]) == 0
    assert "nothing to remove" in capsys.readouterr().err
    assert cli.command_name(cli.build_parser().parse_args(["kafka", "reset"])) == "kafka reset"


def test_the_local_broker_states_its_record_limit() -> None:
    from processor.ops import localbroker

    state = localbroker.BrokerState("c" * 22, 9092, 9093)
    props = localbroker.server_properties(state, Path("/d"))
    assert f"message.max.bytes={localbroker.MESSAGE_MAX_BYTES}\n" in props and localbroker.MESSAGE_MAX_BYTES == 1_048_588
