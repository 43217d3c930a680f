"""Fitting the panes into the terminal: which columns a pane shows at a given width and how
wide each is, and how many lines each pane gets. Pure arithmetic, so that 80×24 can be
checked without drawing anything."""

from collections.abc import Sequence
from dataclasses import dataclass

CELL_PADDING = 2  # a table puts one space either side of every cell
PANE_CHROME = 3  # a pane's border, its title and its table's header line
# a name (or reason) gets this much before a column of lower priority is shown
COMFORTABLE = 30
LEAST_NAME = 4  # a name cut to "Bl…" still tells rows apart, beside its ID


@dataclass(frozen=True)
class Column:
    title: str
    # its width: the least a growing column is shown with, the width of the others (a
    # column of numbers is widened for a longer value, taken from the growing columns)
    width: int
    priority: int = 0  # 0: always shown; then 1, 2, ... as long as there is room
    # never cut: widened to its longest value
    fits_values: bool = False
    # takes a share of the width left over (names, reasons), up to its longest value
    grows: bool = False


def shown_columns(columns: Sequence[Column], width: int) -> list[int]:
    """The indexes of the columns shown in ``width`` characters, decided by the width
    alone: the essential ones (priority 0), then the others by priority while the growing
    columns keep COMFORTABLE characters. The values never change it, so that a column does
    not come and go as the numbers grow."""
    growing = [i for i, c in enumerate(columns) if c.grows]
    comfortable = sum(max(COMFORTABLE, columns[i].width) for i in growing)
    shown = [i for i, c in enumerate(columns) if c.priority == 0]
    for priority in sorted({c.priority for c in columns} - {0}):
        candidates = shown + [i for i, c in enumerate(columns) if c.priority == priority]
        used = sum(columns[i].width + CELL_PADDING for i in candidates if i not in growing)
        if width - used - CELL_PADDING * len(growing) < comfortable:
            break  # a column of lower priority never shows where a higher one does not
        shown = candidates
    return sorted(shown)


def fit_columns(
    columns: Sequence[Column], rows: Sequence[Sequence[object]], width: int
) -> tuple[tuple[int, int], ...]:
    """The columns to show in ``width`` characters as (index, width) pairs, in order: which
    ones by the width alone (``shown_columns``); the growing ones share what is left."""
    shown = shown_columns(columns, width)

    def longest(index: int) -> int:
        column = columns[index]
        values = (len(str(row[index])) for row in rows)
        return max(len(column.title), column.width, *values)

    fixed = {
        i: longest(i) if columns[i].fits_values else columns[i].width
        for i in shown
        if not columns[i].grows
    }
    growing = [i for i in shown if columns[i].grows]
    room = width - sum(fixed.values()) - CELL_PADDING * len(shown)
    grown = share(room, [columns[i].width for i in growing], [longest(i) for i in growing])
    # numbers widened past their column's width (a relay's trouble, a total in the millions)
    # take what they need from the names, below their least if need be: a row never
    # scrolls sideways, and a cut name ends in "…"
    while sum(grown) > room and max(grown, default=0) > LEAST_NAME:
        widest = grown.index(max(grown))
        grown[widest] -= 1
    widths = fixed | dict(zip(growing, grown, strict=True))
    return tuple((i, widths[i]) for i in shown)


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
