"""A pane's table, kept in step with the database by row key: rows are added, removed, and
changed cell by cell where a value changed; the table is never rebuilt, so the cursor stays
on the same mailing across refreshes and reorders."""

from rich.text import Text
from textual.coordinate import Coordinate
from textual.widgets import DataTable

from ..views.cells import STARTING_UP
from ..views.snapshot import Row

STARTING_STYLE = "bold yellow"


class MailingTable(DataTable):
    DEFAULT_CSS = """
    MailingTable { height: auto; max-height: 100%; }
    """

    def __init__(
        self, columns: tuple[tuple[str, int], ...], *, blink_column: str | None = None, **kwargs
    ):
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self._column_names = [name for name, _ in columns]
        self._blink_column = blink_column
        self._rows_by_key: dict[str, Row] = {}
        self._order: list[str] = []
        self.blink_visible = True
        # columns now, not on mount: the first snapshot may arrive before the mount
        for name, width in columns:
            self.add_column(name, key=name, width=width)

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
        """Brings the table to ``rows`` (in that order) with as few changes as possible."""
        selected = self.selected_id
        wanted = {row.key: row for row in rows}
        for key in [k for k in self._rows_by_key if k not in wanted]:
            self.remove_row(key)
            del self._rows_by_key[key]
        for row in rows:
            old = self._rows_by_key.get(row.key)
            if old is None:
                self.add_row(*self._rendered(row), key=row.key)
            elif old.cells != row.cells:
                rendered = self._rendered(row)
                for index, (before, after) in enumerate(zip(old.cells, row.cells, strict=True)):
                    if before != after:
                        self.update_cell(row.key, self._column_names[index], rendered[index])
            self._rows_by_key[row.key] = row
        order = [row.key for row in rows]
        if order != self._current_order():
            position = {int(key): index for index, key in enumerate(order)}
            self.sort("ID", key=lambda mailing_id: position[mailing_id])
        self._order = order
        if selected is not None and str(selected) in wanted:
            self.move_cursor(row=order.index(str(selected)), animate=False)

    def set_blink(self, visible: bool) -> None:
        """Shows or hides the blinking "starting up" cells (driven by the app's timer)."""
        self.blink_visible = visible
        if self._blink_column is None:
            return
        for row in self._rows_by_key.values():
            if row.blinks:
                self.update_cell(row.key, self._blink_column, self._starting_cell())

    def _rendered(self, row: Row) -> list:
        # text longer than its column ends in "…" rather than being cut mid-word
        cells = [
            Text(c, overflow="ellipsis", no_wrap=True) if isinstance(c, str) else c
            for c in row.cells
        ]
        if self._blink_column is not None and row.blinks:
            cells[self._column_names.index(self._blink_column)] = self._starting_cell()
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
