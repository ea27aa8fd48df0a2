"""Showing benchmark reports: a table on the terminal, or a markdown document
(``BENCHMARKS.md``) with the method, the machine and the figures."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from bench.common import MachineInfo, Report


def print_report(report: Report, console: Console) -> None:
    """One benchmark's figures as a table: a row per metric, a column per case."""
    cases = list(dict.fromkeys(f.case for f in report.figures))
    metrics = list(dict.fromkeys((f.metric, f.unit) for f in report.figures))
    values = {(f.case, f.metric): f.formatted() for f in report.figures}
    table = Table(title=f"{report.title} ({report.name})", title_justify="left")
    table.add_column("metric")
    table.add_column("unit")
    for case in cases:
        table.add_column(case, justify="right")
    for metric, unit in metrics:
        table.add_row(metric, unit, *(values.get((case, metric), "") for case in cases))
    console.print(table)
    for note in report.notes:
        console.print(f"  {note}", highlight=False, soft_wrap=True)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def run_time(durations: Sequence[tuple[str, float]]) -> str:
    """``"7.6 min: broker start 4 s, producer 17 s, ..."`` for (part, seconds) pairs."""
    total = sum(seconds for _, seconds in durations)
    return f"{total / 60:.1f} min: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in durations)


def markdown(reports: Sequence[Report], machine: MachineInfo, *, command: str, when: dt.datetime | None = None,
             durations: Sequence[tuple[str, float]] = ()) -> str:
    """The whole document: how it was run, on what, and every report's method and figures.
    ``durations``: (benchmark, seconds) of the run, broker start and cached data included."""
    stamp = (when or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "# axmon benchmarks",
        "",
        (f"Written by `{command}` on {stamp}. Run `make bench` to measure again on your machine; "
         "the figures depend on it (and on whatever else it was doing)."),
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *(f"| {name} | {_md_cell(value)} |" for name, value in machine.lines()),
        "",
    ]
    if durations:
        out += [f"The run took {run_time(durations)}.", ""]
    for report in reports:
        cases = list(dict.fromkeys(f.case for f in report.figures))
        metrics = list(dict.fromkeys((f.metric, f.unit) for f in report.figures))
        values = {(f.case, f.metric): f.formatted() for f in report.figures}
        out += [f"## {report.title}", "", "### Method", "", report.method, "", "### Figures", ""]
        out.append("| metric | unit | " + " | ".join(cases) + " |")
        out.append("|---|---|" + "---:|" * len(cases))
        for metric, unit in metrics:
            out.append(f"| {_md_cell(metric)} | {unit} | " + " | ".join(values.get((c, metric), "") for c in cases) + " |")
        if report.notes:
            out += ["", *(f"- {note}" for note in report.notes)]
        out.append("")
    return "\n".join(out)
