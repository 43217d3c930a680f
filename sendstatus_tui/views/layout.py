"""Fitting the panes into the terminal: which columns a pane shows at a given width and how
wide each is, and how many lines each pane gets. Pure arithmetic, so that 80×24 can be
checked without drawing anything."""

from collections.abc import Sequence
from dataclasses import dataclass

CELL_PADDING = 2  # a table puts one space either side of every cell
PANE_CHROME = 3
# a name (or reason) this long is read whole before a column of lower priority is shown
COMFORTABLE = 32  # a pane's border, its title and its table's header line


@dataclass(frozen=True)
class Column:
    title: str
    width: int  # the least it is shown with (a growing column's minimum)
    priority: int = 0  # 0: always shown; then 1, 2, ... as long as there is room
    # sized to its longest value, so that a number is never cut
    fits_values: bool = False
    # takes a share of the width left over (names, reasons), up to its longest value
    grows: bool = False


def fit_columns(
    columns: Sequence[Column], rows: Sequence[Sequence[object]], width: int
) -> tuple[tuple[int, int], ...]:
    """The columns to show in ``width`` characters as (index, width) pairs, in order.

    The essential columns (priority 0) are always shown; the others join, by priority,
    while the growing columns keep their longest value (up to COMFORTABLE characters)."""

    measured: dict[int, int] = {}

    def longest(index: int) -> int:
        if index not in measured:
            column = columns[index]
            values = (len(str(row[index])) for row in rows)
            measured[index] = max(len(column.title), column.width, *values)
        return measured[index]

    fixed = {i: longest(i) if c.fits_values else c.width for i, c in enumerate(columns)}
    growing = [i for i, c in enumerate(columns) if c.grows]
    shown = [i for i, c in enumerate(columns) if c.priority == 0]

    def room(candidates: list[int]) -> int:
        used = sum(fixed[i] for i in candidates if i not in growing)
        return width - used - CELL_PADDING * len(candidates)

    for priority in sorted({c.priority for c in columns} - {0}):
        candidates = shown + [i for i, c in enumerate(columns) if c.priority == priority]
        comfortable = [min(longest(i), max(COMFORTABLE, columns[i].width)) for i in growing]
        if room(candidates) < sum(comfortable):
            break  # a column of lower priority never shows where a higher one does not
        shown = candidates
    shown.sort()
    grown = share(
        room(shown),
        [columns[i].width for i in shown if i in growing],
        [longest(i) for i in shown if i in growing],
    )
    widths = dict(zip([i for i in shown if i in growing], grown, strict=True))
    return tuple((i, widths.get(i, fixed[i])) for i in shown)


def share(total: int, least: Sequence[int], wanted: Sequence[int]) -> list[int]:
    """``total`` shared out: each gets what it wants if all fit, else the smaller wants are
    met and the rest split evenly, never below ``least``."""
    given = list(least)
    left = total - sum(least)
    hungry = sorted(range(len(wanted)), key=lambda i: wanted[i] - least[i])
    for place, index in enumerate(hungry):
        even = left // (len(hungry) - place) if left > 0 else 0
        extra = min(wanted[index] - least[index], even)
        given[index] += max(0, extra)
        left -= max(0, extra)
    return given


def pane_heights(row_counts: Sequence[int], height: int) -> list[int]:
    """Each pane's height in lines: the rows it has (at least one line, for an empty pane)
    when they all fit, else the lines shared out so that the smaller panes show whole."""
    least = [PANE_CHROME + 1] * len(row_counts)
    wanted = [PANE_CHROME + max(1, count) for count in row_counts]
    heights = share(height, least, wanted)
    # what no pane needs goes to the last one, so that the footer stays at the bottom
    heights[-1] += max(0, height - sum(heights))
    return heights
