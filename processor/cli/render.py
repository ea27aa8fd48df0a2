"""How the commands draw: the consoles, numbers, times and durations for people, and tables
that fit the terminal without cutting what people copy. Pure but for the consoles.

Rich shrinks every column of a table that is too wide, cutting ids and breaking words. Here the
layout is decided first, by :func:`fit` (pure): an ``id`` column always gets its whole width and
never wraps; a ``text`` column wraps at spaces, never inside a word (a word longer than the
column is ended with ``…``); a ``fixed`` column keeps its width; a ``bar`` column takes what is
left, between its bounds. When even the narrowest layout is too wide, the column with the lowest
``keep`` is dropped, then the next; id columns are never dropped.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any, Literal

import orjson
from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

err_console = Console(stderr=True, highlight=False)
"""Messages, progress and errors: stderr, so stdout holds only the command's output."""
out_console = Console(highlight=False)


def stdout_console() -> Console:
    """A console on stdout made now (so it takes the terminal's width of this moment)."""
    return Console(highlight=False)


def stderr_console() -> Console:
    """A console on stderr made now."""
    return Console(stderr=True, highlight=False)


Cell = str | Text
ColumnKind = Literal["id", "fixed", "text", "bar"]
TEXT_MIN = 16
"""A text column is never narrower than this (or its header, or its longest word if shorter)."""
WORD_MAX = 24
"""Longer words do not widen a text column's minimum: they are ended with ``…``."""
SCIENTIFIC_FROM = 1e13
"""Magnitudes from here up print in scientific notation (``1.0e308``), as do durations of
this many ms (three centuries) or more."""
SCIENTIFIC_BELOW = 1e-4


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    kind: ColumnKind = "fixed"
    keep: int = 0
    """Drop order when the terminal is narrow: the lowest first (ids are never dropped)."""
    right: bool = False
    bar: tuple[int, int] = (10, 60)
    """A bar column's narrowest and widest width."""


def _lines(cell: Cell) -> list[str]:
    return (cell.plain if isinstance(cell, Text) else cell).splitlines() or [""]


def cell_width(cell: Cell) -> int:
    return max(cell_len(line) for line in _lines(cell))


def longest_word(cell: Cell) -> int:
    return max((cell_len(word) for line in _lines(cell) for word in line.split()), default=0)


def table_width(widths: Sequence[int]) -> int:
    """The width of a house table (:func:`house_table`) with these column widths: a space at
    each edge and between columns."""
    return sum(widths) + len(widths) + 1


def fit(columns: Sequence[Column], rows: Sequence[Sequence[Cell]], width: int) -> dict[str, int]:
    """The columns to show and their widths, for a terminal ``width`` wide. ``rows`` hold
    every column's cell (a bar column's is ignored)."""
    natural: dict[str, int] = {}
    narrowest: dict[str, int] = {}
    for index, column in enumerate(columns):
        cells = [row[index] for row in rows]
        header = cell_len(column.name)
        if column.kind == "bar":
            natural[column.name], narrowest[column.name] = max(header, column.bar[1]), max(header, column.bar[0])
            continue
        full = max([header, *(cell_width(c) for c in cells)])
        natural[column.name] = full
        if column.kind == "text":
            words = max([0, *(min(WORD_MAX, longest_word(c)) for c in cells)])
            narrowest[column.name] = min(full, max(header, TEXT_MIN, words))
        else:
            narrowest[column.name] = full
    shown = list(columns)
    droppable = sorted((c for c in columns if c.kind != "id"), key=lambda c: c.keep)
    while table_width([narrowest[c.name] for c in shown]) > width and droppable:
        shown.remove(droppable.pop(0))
    widths = {c.name: natural[c.name] for c in shown}
    excess = table_width(list(widths.values())) - width
    for kind in ("bar", "text"):  # bars give way first, then text, widest first
        while excess > 0:
            slack = [c.name for c in shown if c.kind == kind and widths[c.name] > narrowest[c.name]]
            if not slack:
                break
            widest = max(slack, key=lambda name: widths[name])
            widths[widest] -= 1
            excess -= 1
    return widths


def house_table(title: str | None = None, caption: str | None = None) -> Table:
    """The house table: a light frame, so wide rows still fit an 80-column terminal."""
    return Table(title=title, caption=caption, box=box.SIMPLE_HEAD, padding=(0, 0))


def fitted_table(
    title: str | None, caption: str | None, columns: Sequence[Column], widths: Mapping[str, int],
    rows: Sequence[Sequence[Cell]], *, row_styles: Sequence[str] = (),
) -> Table:
    """A house table of the columns :func:`fit` chose, at its widths; ``row_styles``: one
    style per row (or none)."""
    table = house_table(title, caption)
    chosen = [i for i, c in enumerate(columns) if c.name in widths]
    for i in chosen:
        column = columns[i]
        table.add_column(
            column.name, justify="right" if column.right else "left", width=widths[column.name],
            no_wrap=column.kind != "text", overflow="ellipsis",
        )
    for n, row in enumerate(rows):
        table.add_row(*(row[i] for i in chosen), style=row_styles[n] if row_styles else None)
    return table


# -- numbers, times and durations for people (pure) --------------------------------------------


def human_time(ms: float | None, tz: tzinfo | None = None, *, compact: bool = False) -> str:
    """Epoch ms as ISO-8601 to the second in ``tz`` (default: local), with its UTC offset
    unless ``compact``; ``-`` for ``None``; a time no calendar can show (beyond year 9999, not
    finite) as ``epoch <ms> ms``."""
    if ms is None:
        return "-"
    try:
        moment = datetime.fromtimestamp(ms / 1000, tz or UTC)
        moment = moment if tz is not None else moment.astimezone()
    except (OverflowError, ValueError, OSError):
        return f"epoch {human_number(ms)} ms"
    return (moment.replace(tzinfo=None) if compact else moment).isoformat(timespec="seconds")


def utc_offset() -> str:
    """`` (UTC+01:00)``: the local offset, for a caption of local times (empty where unknown)."""
    offset = datetime.now().astimezone().strftime("%z")
    return f" (UTC{offset[:3]}:{offset[3:]})" if offset else ""


def human_duration(ms: float | None) -> str:
    """``812 ms``, ``2.5 s``, ``4 min 12 s``, ``2 h 5 min``, ``3 d 4 h`` (a zero second unit is
    left out: ``1 h``); ``-`` for ``None``; beyond :data:`SCIENTIFIC_FROM` ms (3 centuries) or
    not finite, the milliseconds as :func:`human_number` writes them (``1.0e308 ms``, ``inf ms``)."""
    if ms is None:
        return "-"
    if not math.isfinite(ms) or abs(ms) >= SCIENTIFIC_FROM:
        return f"{human_number(ms)} ms"
    sign, ms = ("-" if ms < 0 else ""), abs(ms)
    if ms < 999.5:
        return f"{sign}{ms:.0f} ms"
    if ms < 59_950:
        return f"{sign}{ms / 1000:.1f} s"
    seconds = round(ms / 1000)
    if seconds < 3600:
        return sign + _two_units(seconds // 60, "min", seconds % 60, "s")
    minutes = round(ms / 60_000)
    if minutes < 1440:
        return sign + _two_units(minutes // 60, "h", minutes % 60, "min")
    hours = round(ms / 3_600_000)
    return sign + _two_units(hours // 24, "d", hours % 24, "h")


def _two_units(big: int, big_unit: str, small: int, small_unit: str) -> str:
    return f"{big} {big_unit}" + (f" {small} {small_unit}" if small else "")


def human_number(value: float | None) -> str:
    """Thousands separators for whole numbers, 4 significant digits below 100, 1 decimal
    above; ``-`` for ``None``; ``inf``, ``-inf``, ``nan`` as such; magnitudes from
    :data:`SCIENTIFIC_FROM` up and non-zero ones below :data:`SCIENTIFIC_BELOW` in short
    scientific notation (``1.0e308``, ``4.9e-324``)."""
    if value is None:
        return "-"
    number = float(value)
    if not math.isfinite(number):
        return str(number)
    if number == 0:
        return "0"
    if isinstance(value, int) and abs(value) < SCIENTIFIC_FROM:
        return f"{value:,}"
    if abs(number) >= SCIENTIFIC_FROM or 0 < abs(number) < SCIENTIFIC_BELOW:
        return scientific(number)
    if number.is_integer():
        return f"{number:,.0f}"
    if abs(number) >= 100:
        return f"{number:,.1f}"
    return f"{number:.4g}"


def scientific(value: float) -> str:
    """Two significant digits and a bare exponent: ``1.0e308``, ``-2.5e-7``."""
    mantissa, _, exponent = f"{value:.1e}".partition("e")
    return f"{mantissa}e{int(exponent)}"


def human_value(value: float | None, unit: str | None) -> str:
    """A metric value with its unit; milliseconds are humanised as durations."""
    if value is None:
        return "-"
    if unit == "ms":
        return human_duration(value)
    return human_number(value) + (f" {unit}" if unit else "")


LOG_STYLES = {"trace": "dim", "debug": "dim", "info": "", "warn": "yellow", "error": "red", "fatal": "bold red"}


def log_line(row: Mapping[str, Any]) -> Text:
    """One stored log record as a line: time, level, where (execution/step), message, attributes."""
    try:
        when = dt.datetime.fromtimestamp(row["timestamp"] / 1000).isoformat(timespec="milliseconds")
    except (OverflowError, ValueError, OSError):
        when = f"epoch {row['timestamp']} ms"
    line = Text(f"{when} ")
    line.append(f"{row['level'].upper():5}", style=LOG_STYLES.get(row["level"], ""))
    where = "/".join(str(v) for v in (row.get("execution_id"), row.get("step_id")) if v)
    if where:
        line.append(f" [{where}]", style="cyan")
    line.append(f" {row['message']}")
    if row.get("attributes"):
        line.append(" " + orjson.dumps(row["attributes"]).decode(), style="dim")
    return line
