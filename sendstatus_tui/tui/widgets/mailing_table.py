"""A pane's table, kept in step with the database by row key: rows are added, removed, and
changed cell by cell where a value changed, so the cursor stays on the same mailing across
refreshes and reorders. Its columns are fitted to its width (views/layout.py): only when
the columns shown or their widths change is the table rebuilt, the cursor kept on its
mailing."""

from rich.text import Text
from textual.coordinate import Coordinate
from textual.widgets import DataTable

from sendstatus_tui.views.cells import STARTING_UP, Alarm
from sendstatus_tui.views.layout import Column, fit_columns
from sendstatus_tui.views.snapshot import Row

STARTING_STYLE = "bold yellow"
FLAGGED_STYLE = "bold red"  # what keeps a mailing from sending
FAILED_COLUMN = "Failed"
# the failed share, past the warning level and past the guard's threshold
ALARM_STYLES = {Alarm.WARNING: "bold yellow", Alarm.GUARD: "bold red"}


class MailingTable(DataTable):
    DEFAULT_CSS = """
    MailingTable { height: auto; max-height: 100%; }
    """

    def __init__(self, columns: tuple[Column, ...], *, blink_column: str | None = None, **kwargs):
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self._columns = columns
        self._shown: tuple[tuple[int, int], ...] = ()  # (column index, width) of what is shown
        self._blink_column = blink_column
        self._rows_by_key: dict[str, Row] = {}
        self._order: list[str] = []
        self.blink_visible = True
        self._width = 80  # until the first resize says how wide it is
        # columns now, not on mount: the first snapshot may arrive before the mount
        self._fit()

    def on_resize(self) -> None:
        self._width = self.scrollable_content_region.width or self.size.width
        self._fit()

    @property
    def column_titles(self) -> list[str]:
        """The titles of the columns shown, in order."""
        return [self._columns[index].title for index, _ in self._shown]

    def _fit(self) -> None:
        """Shows the columns that fit the width; rebuilt only when that changes."""
        rows = [self._rows_by_key[key].cells for key in self._order]
        shown = fit_columns(self._columns, rows, self._width)
        if shown == self._shown:
            return
        selected = self.selected_id
        self._shown = shown
        self.clear(columns=True)
        for index, width in shown:
            title = self._columns[index].title
            self.add_column(title, key=title, width=width)
        for key in self._order:
            self.add_row(*self._rendered(self._rows_by_key[key]), key=key)
        if selected is not None:
            self.move_cursor(row=self._order.index(str(selected)), animate=False)

    def on_focus(self) -> None:
        self.show_cursor = True

    def on_blur(self) -> None:
        # only the focused pane shows a cursor: that is the mailing the keys act on
        self.show_cursor = False

    def on_mount(self) -> None:
        self.show_cursor = self.has_focus

    @property
    def mailing_ids(self) -> list[int]:
        return [int(key) for key in self._order]

    @property
    def selected_id(self) -> int | None:
        if not self._order or self.cursor_row < 0 or self.cursor_row >= len(self._order):
            return None
        return int(self._order[self.cursor_row])

    def row_for(self, mailing_id: int) -> Row | None:
        return self._rows_by_key.get(str(mailing_id))

    def show(self, rows: list[Row]) -> None:
        """Brings the table to ``rows`` (in that order) with as few changes as possible.

        The cursor stays on its mailing; if that one left the pane, on the row that took
        its place (the nearest)."""
        selected, cursor = self.selected_id, self.cursor_row
        wanted = {row.key: row for row in rows}
        gone = [k for k in self._rows_by_key if k not in wanted]
        for key in gone:
            self.remove_row(key)
            del self._rows_by_key[key]
        shown_titles = self.column_titles
        values_changed = bool(gone)
        for row in rows:
            old = self._rows_by_key.get(row.key)
            if old is None:
                values_changed = True
                self.add_row(*self._rendered(row), key=row.key)
            elif old.cells != row.cells or old.failed_alarm != row.failed_alarm:
                values_changed = True
                rendered = dict(zip(shown_titles, self._rendered(row), strict=True))
                for index, (before, after) in enumerate(zip(old.cells, row.cells, strict=True)):
                    title = self._columns[index].title
                    restyled = title == FAILED_COLUMN and old.failed_alarm != row.failed_alarm
                    if (before != after or restyled) and title in rendered:
                        self.update_cell(row.key, title, rendered[title])
            self._rows_by_key[row.key] = row
        order = [row.key for row in rows]
        if order != self._current_order():
            position = {int(key): index for index, key in enumerate(order)}
            self.sort("ID", key=lambda mailing_id: position[mailing_id])
        self._order = order
        if values_changed:  # a reorder alone changes no column's width
            self._fit()
        if selected is not None and str(selected) in wanted:
            self.move_cursor(row=order.index(str(selected)), animate=False)
        elif order:
            self.move_cursor(row=min(max(cursor, 0), len(order) - 1), animate=False)

    def move_to(self, mailing_id: int) -> None:
        """Puts the cursor on ``mailing_id`` (if this pane shows it)."""
        if str(mailing_id) in self._order:
            self.move_cursor(row=self._order.index(str(mailing_id)), animate=False)

    def set_blink(self, visible: bool) -> None:
        """Shows or hides the blinking "starting up" cells (driven by the app's timer)."""
        self.blink_visible = visible
        if self._blink_column not in self.column_titles:
            return
        for row in self._rows_by_key.values():
            if row.blinks:
                self.update_cell(row.key, self._blink_column, self._starting_cell())

    def _rendered(self, row: Row) -> list:
        # text longer than its column ends in "…" rather than being cut mid-word
        cells: list[Text | int] = []
        for index, _ in self._shown:
            value = row.cells[index]
            if self._columns[index].title == self._blink_column and row.blinks:
                cells.append(self._starting_cell())
            elif self._columns[index].title == self._blink_column and row.flagged:
                cells.append(Text(str(value), style=FLAGGED_STYLE, overflow="ellipsis"))
            elif self._columns[index].title == FAILED_COLUMN and row.failed_alarm in ALARM_STYLES:
                cells.append(Text(str(value), style=ALARM_STYLES[row.failed_alarm]))
            elif isinstance(value, str):
                cells.append(Text(value, overflow="ellipsis", no_wrap=True))
            else:
                cells.append(value)
        return cells

    def _starting_cell(self) -> Text:
        # same width either way, so that the column does not jump
        shown = STARTING_UP if self.blink_visible else " " * len(STARTING_UP)
        return Text(shown, style=STARTING_STYLE)

    def _current_order(self) -> list[str | None]:
        return [
            self.coordinate_to_cell_key(Coordinate(index, 0)).row_key.value
            for index in range(self.row_count)
        ]
