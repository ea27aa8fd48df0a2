"""Tables that fit the terminal without cutting what people copy.

Rich shrinks every column of a table that is too wide, cutting ids and breaking words. Here the
layout is decided first, by :func:`fit` (pure): an ``id`` column always gets its whole width and
never wraps; a ``text`` column wraps at spaces, never inside a word (a word longer than the
column is ended with ``…``); a ``fixed`` column keeps its width; a ``bar`` column takes what is
left, between its bounds. When even the narrowest layout is too wide, the column with the lowest
``keep`` is dropped, then the next; id columns are never dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from rich import box
from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

Cell = str | Text
ColumnKind = Literal["id", "fixed", "text", "bar"]
TEXT_MIN = 16
"""A text column is never narrower than this (or its header, or its longest word if shorter)."""
WORD_MAX = 24
"""Longer words do not widen a text column's minimum: they are ended with ``…``."""


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
