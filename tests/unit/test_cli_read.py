"""The read commands, run through their own argparse parser (``add_read_commands``) on small
databases, and their pure parsing and drawing helpers."""

from __future__ import annotations

import argparse
import time
from datetime import UTC, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from processor.cli.read import (
    SPARK_BLOCKS,
    chart_columns,
    choose_interval,
    sparkline,
    time_axis,
    timeline_bar,
)
from processor.cli.read import register as add_read_commands
from processor.cli.render import human_duration, human_number, human_time
from processor.errors import AxmonError, ConfigError
from processor.folds.timeparse import parse_duration_ms, parse_label, parse_time_ms
from processor.store.db import DatabaseError, open_for_writing
from tests.pg import DbAt, DbLocation
from tests.unit.test_queries import (
    MT,
    T0,
    Sample,
    W,
    build_db,
    insert_execution,
    insert_row,
    insert_stats,
    insert_step,
)

NOW = 1_700_000_000_000


# -- running a command -------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="axmon")
    add_read_commands(root.add_subparsers(dest="command", required=True))
    return root


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    args = parser().parse_args(argv)
    assert args.handler(args) == 0
    return capsys.readouterr().out


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    out = run(capsys, *argv, "--json")
    assert out.count("\n") == 1  # one document
    return orjson.loads(out)


@pytest.fixture
def db(db_at: DbAt) -> DbLocation:
    now = int(time.time() * 1000)
    recent = [Sample(f"r{i:03d}", now - 50 * 60_000 + i * 30_000, float(i % 7) * 100 + 5, tenant_id="tenant_a",
                     labels={"model": "large" if i % 2 else "small"}) for i in range(90)]
    old = [Sample(f"o{i:03d}", T0 + i * 1_000, float(i), tenant_id="tenant_b") for i in range(120)]
    path = build_db(db_at("cli.db"), recent + old, final_before=T0 + W)
    conn = open_for_writing(path)
    conn.execute("BEGIN")
    insert_execution(conn, "e1", started_at=T0, completed_at=T0 + 2_500, duration=2_500, metadata='{"pr": "#1"}',
                     steps_completed=2, last_event_at=T0 + 2_500, workflow_name="Review [bold]x[/]")
    insert_execution(conn, "e2", started_at=T0 + 10, status="running", current_step="lint", tenant_id="tenant_b")
    insert_step(conn, "s1", "e1", started_at=T0, completed_at=T0 + 1_000, duration=1_000, step_name="Lint")
    insert_step(conn, "s2", "e1", started_at=T0 + 1_000, completed_at=T0 + 2_500, duration=1_500, step_name="Audit",
                status="failed", error_message="model timed out", retry_count=1)
    insert_step(conn, "s3", "e2", started_at=T0 + 10, status="running", step_name="Lint")
    insert_stats(conn, "tenant_a", total=4, completed=3, failed=1, duration_sum=10_000, duration_count=4)
    insert_stats(conn, "tenant_b", total=1, running=1)
    insert_row(conn, "dead_letters", {"topic": "axmon.metrics", "partition": 1, "offset": 7, "reason": "late",
                                      "detail": "window closed", "timestamp": T0, "key": b"k1", "value": b"\x00\x01"})
    insert_row(conn, "dead_letters", {"topic": "axmon.workflow-events", "partition": 0, "offset": 3,
                                      "reason": "undecodable", "detail": "not JSON", "timestamp": T0 + 1, "key": None,
                                      "value": b"{"})
    conn.execute("COMMIT")
    conn.close()
    return path


# -- commands, --json ----------------------------------------------------------------------------


def test_workflows_json(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    doc = run_json(capsys, "workflows", "--db", str(db))
    assert list(doc) == ["active", "tenant", "limit", "executions"]
    assert [e["id"] for e in doc["executions"]] == ["e2", "e1"]
    assert doc["executions"][1]["metadata"] == {"pr": "#1"}
    active = run_json(capsys, "workflows", "--db", str(db), "--active")
    assert [e["id"] for e in active["executions"]] == ["e2"] and active["active"] is True
    scoped = run_json(capsys, "workflows", "--db", str(db), "--tenant", "tenant_a", "--limit", "1")
    assert [e["id"] for e in scoped["executions"]] == ["e1"] and (scoped["tenant"], scoped["limit"]) == ("tenant_a", 1)


def test_execution_json_and_timeline(
    capsys: pytest.CaptureFixture[str], db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "160")  # rich's width when stdout is not a terminal
    doc = run_json(capsys, "execution", "e1", "--db", str(db))
    assert list(doc) == ["execution", "steps"]
    assert doc["execution"]["id"] == "e1" and [s["id"] for s in doc["steps"]] == ["s1", "s2"]
    out = run(capsys, "execution", "e1", "--db", str(db))
    assert "Review [bold]x[/]" in out  # user data is not rich markup
    assert "model timed out" in out and "2.5 s" in out and "█" in out
    running = run(capsys, "execution", "e2", "--db", str(db))
    assert "▒" in running


def test_execution_shows_its_logs(capsys: pytest.CaptureFixture[str], db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    conn = open_for_writing(db)
    conn.execute("BEGIN")
    for n, (level, message) in enumerate([("info", "lint started"), ("error", "audit [red]timed[/] out")]):
        insert_row(conn, "logs", {"id": f"l{n}", "timestamp": T0 + 100 * n, "tenant_id": "tenant_a", "level": level,
                                  "severity_number": 9 if level == "info" else 17, "message": message,
                                  "execution_id": "e1", "step_id": "s2" if n else None, "attributes": '{"n": 1}'})
    conn.execute("COMMIT")
    conn.close()
    doc = run_json(capsys, "execution", "e1", "--db", str(db))
    assert list(doc) == ["execution", "steps", "logs"]
    assert [r["message"] for r in doc["logs"]] == ["lint started", "audit [red]timed[/] out"]
    out = run(capsys, "execution", "e1", "--db", str(db))
    assert "logs" in out and "lint started" in out and "audit [red]timed[/] out" in out and "e1/s2" in out
    assert list(run_json(capsys, "execution", "e2", "--db", str(db))) == ["execution", "steps"]  # no logs, no key


def test_an_unknown_execution_is_a_one_line_error(db: Path) -> None:
    args = parser().parse_args(["execution", "nope", "--db", str(db)])
    with pytest.raises(AxmonError, match="no execution 'nope'"):
        args.handler(args)


def test_stats_json_and_table(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    doc = run_json(capsys, "stats", "--db", str(db))
    assert list(doc) == ["tenant", "stats", "tenants"]
    assert doc["stats"]["total"] == 5 and doc["stats"]["success_rate"] == 60.0
    assert [t["tenant_id"] for t in doc["tenants"]] == ["tenant_a", "tenant_b"]
    one = run_json(capsys, "stats", "--db", str(db), "--tenant", "tenant_a")
    assert one["stats"]["avg_duration"] == 2500.0 and [t["tenant_id"] for t in one["tenants"]] == ["tenant_a"]
    out = run(capsys, "stats", "--db", str(db))
    assert "tenant_b" in out and "60.00 %" in out


def test_metrics_json(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    doc = run_json(capsys, "metrics", MT, "--db", str(db), "--since", "1h", "--interval", "5m")
    assert list(doc) == ["metric_type", "unit", "start", "end", "interval_ms", "tenant", "labels", "aggregation",
                         "data_points"]
    assert doc["interval_ms"] == 300_000 and doc["start"] % 300_000 == 0  # a relative --since is aligned
    agg = doc["aggregation"]
    assert agg["count"] == 90 and agg["exact"] is True and doc["unit"] == "ms"
    assert sum(p["count"] for p in doc["data_points"]) == 90
    small = run_json(capsys, "metrics", MT, "--db", str(db), "--label", "model=small", "--tenant", "tenant_a")
    assert small["aggregation"]["count"] == 45 and small["labels"] == {"model": "small"}


def test_metrics_over_absolute_times_reads_rollups(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    doc = run_json(capsys, "metrics", MT, "--db", str(db), "--since", str(T0), "--until", str(T0 + 2 * W),
                   "--interval", "1m")
    assert doc["start"] == T0 and doc["aggregation"]["count"] == 120
    assert doc["aggregation"]["from_rollups"] == 1 and doc["aggregation"]["exact"] is False
    assert [p["timestamp"] for p in doc["data_points"]] == [T0, T0 + W]


def test_metrics_human_output_draws_the_series(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    out = run(capsys, "metrics", MT, "--db", str(db), "--since", "1h")
    assert "p95" in out and "percentiles exact" in out
    assert any(block in out for block in SPARK_BLOCKS)
    empty = run(capsys, "metrics", "cpu.usage", "--db", str(db))
    assert "no samples" in empty
    assert run_json(capsys, "metrics", "cpu.usage", "--db", str(db))["aggregation"] is None


def test_dead_letters_json(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    doc = run_json(capsys, "dead-letters", "--db", str(db))
    assert list(doc) == ["reason", "limit", "dead_letters"]
    first, second = doc["dead_letters"]
    assert list(first) == ["topic", "partition", "offset", "reason", "detail", "timestamp", "key", "value_base64"]
    assert (first["reason"], first["key"], first["value_base64"]) == ("undecodable", None, "ew==")
    assert (second["key"], second["value_base64"]) == ("k1", "AAE=")
    late = run_json(capsys, "dead-letters", "--db", str(db), "--reason", "late")
    assert [d["offset"] for d in late["dead_letters"]] == [7]
    assert "window closed" in run(capsys, "dead-letters", "--db", str(db))


# -- errors --------------------------------------------------------------------------------------

COMMANDS = (["workflows"], ["execution", "e1"], ["stats"], ["metrics", MT], ["dead-letters"])


@pytest.mark.parametrize("argv", COMMANDS)
def test_a_missing_database_is_a_database_error(argv: list[str], tmp_path: Path) -> None:
    args = parser().parse_args([*argv, "--db", str(tmp_path / "none.db"), "--json"])
    with pytest.raises(DatabaseError, match="no database at"):
        args.handler(args)
    assert not (tmp_path / "none.db").exists()


def test_the_database_defaults_to_axmon_db_then_the_working_directory(
    capsys: pytest.CaptureFixture[str], db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AXMON_DB", str(db))
    assert run_json(capsys, "stats")["stats"]["total"] == 5
    monkeypatch.delenv("AXMON_DB")
    monkeypatch.chdir(tmp_path)
    args = parser().parse_args(["stats"])
    with pytest.raises(DatabaseError, match="axmon.db"):
        args.handler(args)


@pytest.mark.parametrize("argv", [
    ["workflows", "--limit", "0"],
    ["dead-letters", "--limit", "-3"],
    ["metrics", MT, "--since", "yesterday"],
    ["metrics", MT, "--since", "1h", "--until", "2h"],
    ["metrics", MT, "--interval", "soon"],
    ["metrics", MT, "--since", "7d", "--interval", "1s"],
])
def test_bad_values_are_config_errors(argv: list[str], db: Path) -> None:
    args = parser().parse_args([*argv, "--db", str(db)])
    with pytest.raises(ConfigError):
        args.handler(args)


@pytest.mark.parametrize("argv", [["workflows", "--limit", "many"], ["metrics", MT, "--label", "model"],
                                  ["metrics"], ["execution"], ["stats", "--nope"]])
def test_malformed_flags_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parser().parse_args(argv)
    assert exit_info.value.code == 2


# -- parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("now", NOW), ("30s", NOW - 30_000), ("15m", NOW - 900_000), ("1h", NOW - 3_600_000), ("7d", NOW - 604_800_000),
    ("1h30m", NOW - 5_400_000), ("250ms", NOW - 250), ("1699990000000", 1_699_990_000_000),
    ("2023-11-14T22:13:20Z", NOW), ("2023-11-14T22:13:20+01:00", NOW - 3_600_000),
    ("2023-11-14T22:13:20.5Z", NOW + 500), ("2023-11-14", NOW - (22 * 3600 + 13 * 60 + 20) * 1000),
])
def test_parse_time(text: str, expected: int) -> None:
    assert parse_time_ms(text, NOW, UTC) == expected


def test_a_time_without_offset_is_in_the_given_zone() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert parse_time_ms("2023-11-15T00:13:20", NOW, plus_two) == NOW


@pytest.mark.parametrize("text", ["", "yesterday", "1 parsec", "-1h", "2023-13-01", "12:00pm"])
def test_bad_times(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_time_ms(text, NOW, UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("250ms", 250), ("30s", 30_000), ("15m", 900_000), ("15min", 900_000), ("1h", 3_600_000), ("1.5h", 5_400_000),
    ("7d", 604_800_000), ("2w", 1_209_600_000), ("1h 30m", 5_400_000), ("60000", 60_000), (" 1M ", 60_000),
])
def test_parse_duration(text: str, expected: int) -> None:
    assert parse_duration_ms(text) == expected


@pytest.mark.parametrize("text", ["", "0", "0s", "soon", "5 parsecs", "-1s", "1h-", "0.1ms"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_duration_ms(text)


def test_parse_label() -> None:
    assert parse_label("model=gpt-large") == ("model", "gpt-large")
    assert parse_label("expr=a=b") == ("expr", "a=b")
    assert parse_label("empty=") == ("empty", "")
    for bad in ("model", "=x"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_label(bad)


# -- humanising and drawing ----------------------------------------------------------------------


@pytest.mark.parametrize(("ms", "text"), [
    (None, "-"), (0, "0 ms"), (812, "812 ms"), (2_500, "2.5 s"), (59_999, "1 min"), (252_000, "4 min 12 s"),
    (3_600_000, "1 h"), (7_500_000, "2 h 5 min"), (273_600_000, "3 d 4 h"), (86_400_000, "1 d"), (-1_500, "-1.5 s"),
])
def test_human_duration(ms: float | None, text: str) -> None:
    assert human_duration(ms) == text


def test_human_time_and_numbers() -> None:
    assert human_time(NOW, UTC) == "2023-11-14T22:13:20+00:00"
    assert human_time(NOW, UTC, compact=True) == "2023-11-14T22:13:20"
    assert human_time(None) == "-"
    assert human_time(NOW).startswith("2023-11-1")  # local time, whatever the zone
    assert [human_number(v) for v in (None, 1500, 2500.0, 85.5, 0.003, 1234.56)] == [
        "-", "1,500", "2,500", "85.5", "0.003", "1,234.6"]


def test_sparkline_scales_between_min_and_max() -> None:
    assert sparkline([0.0, None, 7.0, 3.0]) == "▁ █▄"
    assert sparkline([5.0, 5.0]) == "▄▄"
    assert sparkline([None, None]) == "  "
    assert sparkline([]) == ""


def test_chart_columns_lay_buckets_out_and_merge_them_to_fit() -> None:
    points = [{"timestamp": 0, "value": 1.0, "count": 1}, {"timestamp": 10, "value": 4.0, "count": 3},
              {"timestamp": 50, "value": 7.0, "count": 2}]
    assert chart_columns(points, 0, 100, 10, 20) == ([1.0, 4.0, None, None, None, 7.0, None, None, None, None], 1)
    assert chart_columns(points, 0, 100, 10, 5) == ([3.25, None, 7.0, None, None], 2)


def test_timeline_bars_share_one_axis() -> None:
    assert timeline_bar(0, 50, 0, 100, 10) == "█████     "
    assert timeline_bar(50, 100, 0, 100, 10) == "     █████"
    assert timeline_bar(100, 100, 0, 100, 10) == "         █"  # zero length still shows
    assert timeline_bar(20, 100, 0, 100, 10, open_ended=True) == "  ▒▒▒▒▒▒▒▒"
    assert timeline_bar(5, 5, 5, 5, 4) == "█   "


def test_the_time_axis_spans_every_known_time() -> None:
    execution: dict[str, Any] = {"started_at": 100, "completed_at": None, "last_event_at": 300}
    steps: list[dict[str, Any]] = [{"started_at": 0, "completed_at": None}, {"started_at": 150, "completed_at": 250}]
    assert time_axis(execution, steps) == (100, 300)  # started_at 0: a step whose start is unknown
    running: list[dict[str, Any]] = [{"started_at": 90, "completed_at": None}]
    assert time_axis({**execution, "completed_at": 400}, running) == (90, 400)


def test_choose_interval_gives_about_sixty_buckets() -> None:
    assert choose_interval(3_600_000) == 60_000
    assert choose_interval(86_400_000) == 1_800_000
    assert choose_interval(30_000) == 1_000
    assert choose_interval(10 * 365 * 86_400_000) == 86_400_000
