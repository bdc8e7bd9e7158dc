"""Column widths for the CLI's tables: every column at its natural width while the table
fits; when it does not, free text (long cells of several words: commands, comments,
reasons) gives up room first, widest first, so names, states, ids, times and ages stay whole.

Rich's own narrowing shares the shortfall among all columns once the wrappable ones are as
narrow as each other, which cuts hostnames and ages mid-word; here the widths are worked out
for the width the table is drawn at and given to Rich fixed. Cells are plain text, never
Rich markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.cells import cell_len

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult

#: A column no wider than this is kept whole while anything else can give way.
SHORT = 20
#: As ``SHORT`` for a table of one line a row.
ONE_LINE_SHORT = 40
#: A word of free text longer than this may be folded to keep the other columns whole.
LONG_WORD = 30


def natural_width(heading: str, cells: Sequence[str]) -> int:
    """The width of the widest cell or heading, in terminal cells (a CJK character is two)."""
    return max([cell_len(heading), *(cell_len(cell) for cell in cells)])


def is_free_text(heading: str, cells: Sequence[str], short: int = SHORT) -> bool:
    """Cells of several words wider than ``short`` (commands, comments, reasons): what
    gives way first."""
    return natural_width(heading, cells) > short and any(" " in cell for cell in cells)


def text_floor(heading: str, cells: Sequence[str], short: int = SHORT) -> int:
    """How narrow a column can go before a word of it breaks: free text down to its longest
    word (a very long one folds), any other column not at all."""
    natural = natural_width(heading, cells)
    if not is_free_text(heading, cells, short):
        return natural
    longest = max((cell_len(word) for cell in cells for word in cell.split()), default=0)
    return min(natural, max(cell_len(heading), min(longest, LONG_WORD)))


def _level(naturals: Sequence[int], floors: Sequence[int], room: int) -> list[int] | None:
    """Widths no wider than ``room`` in all: the widest columns narrowed to one level, none
    below its floor, the room left over given back to the narrowed ones; None if the floors
    alone are too wide."""
    if sum(floors) > room:
        return None
    low, high = 0, max(naturals, default=0)
    while low < high:  # the highest level whose widths fit
        mid = (low + high + 1) // 2
        if sum(min(n, max(f, mid)) for n, f in zip(naturals, floors, strict=True)) <= room:
            low = mid
        else:
            high = mid - 1
    widths = [min(n, max(f, low)) for n, f in zip(naturals, floors, strict=True)]
    spare = room - sum(widths)
    for index, natural in enumerate(naturals):
        if spare and widths[index] < natural:
            widths[index] += 1
            spare -= 1
    return widths


def fit_widths(
    headings: Sequence[str], rows: Sequence[Sequence[str]], room: int, short: int = SHORT
) -> list[int]:
    """Each column's width so that together they take at most ``room`` characters, if their
    headings do: natural widths when they fit; else free text wider than ``short`` narrows
    (widest first, not below its longest word), then free text folds its words; at last
    every column narrows, widest first, down to its heading."""
    columns = [[row[i] for row in rows] for i in range(len(headings))]
    naturals = [natural_width(h, c) for h, c in zip(headings, columns, strict=True)]
    if sum(naturals) <= room:
        return naturals
    headings_only = [max(1, min(n, cell_len(h))) for n, h in zip(naturals, headings, strict=True)]
    free = [is_free_text(h, c, short) for h, c in zip(headings, columns, strict=True)]
    steps = (
        [text_floor(h, c, short) for h, c in zip(headings, columns, strict=True)],
        [h if f else n for n, h, f in zip(naturals, headings_only, free, strict=True)],
        headings_only,
    )
    for floors in steps:
        widths = _level(naturals, floors, room)
        if widths is not None:
            return widths
    return headings_only  # too narrow even for the headings: Rich folds what it must


@dataclass(frozen=True)
class FittedTable:
    """A borderless table laid out at the width it is drawn at (a terminal's, as it is now).

    ``one_line`` (the live view) cuts a narrowed cell with "…" instead of wrapping it, and
    then keeps text up to ``ONE_LINE_SHORT`` wide whole (a cut loses what a wrap keeps);
    ``gap`` is the spaces between columns."""

    headings: Sequence[str]
    rows: Sequence[Sequence[str]]
    title: str | None = None
    one_line: bool = False
    gap: int = 1

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.table import Table
        from rich.text import Text

        room = options.max_width - self.gap * (len(self.headings) - 1)
        short = ONE_LINE_SHORT if self.one_line else SHORT
        widths = fit_widths(self.headings, self.rows, room, short)
        table = Table(
            title=self.title,
            title_justify="left",
            box=None,
            pad_edge=False,
            collapse_padding=self.gap == 1,
        )
        for index, (heading, width) in enumerate(zip(self.headings, widths, strict=True)):
            whole = width >= natural_width(heading, [row[index] for row in self.rows])
            table.add_column(
                heading,
                width=width,
                no_wrap=whole or self.one_line,
                overflow="ellipsis" if self.one_line else "fold",
            )
        for row in self.rows:
            table.add_row(*(Text(cell) for cell in row))  # as written: "[x]" is not markup
        yield table
