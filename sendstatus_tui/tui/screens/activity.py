"""A: the activity, who changed what and when (``sendstatus log`` on a screen, newest
first), reread as often as the panes."""

import contextlib
from collections.abc import Callable
from datetime import datetime, tzinfo

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Label
from textual.worker import get_current_worker

from sendstatus_tui.core.reads.activity import entries_since
from sendstatus_tui.core.store.store import Store, StoreError
from sendstatus_tui.tui.trouble import guarded
from sendstatus_tui.views.activity import COLUMNS, activity_row
from sendstatus_tui.views.layout import fit_columns

# the newest entries shown (`sendstatus log` has them all)
ENTRIES_SHOWN = 1_000


class ActivityScreen(Screen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("q,A", "app.pop_screen", "Back", show=False),
    ]

    def __init__(
        self,
        store: Store,
        zone: tzinfo,
        clock: Callable[[], datetime],
        refresh_seconds: float,
    ):
        super().__init__()
        self._store, self._zone, self._clock = store, zone, clock
        self._refresh_seconds = refresh_seconds
        self._rows: list[tuple[str, str, str]] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label("", id="activity-title")
        yield DataTable(cursor_type="row", zebra_stripes=True, id="activity-table")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Activity"
        self.load()
        if self._refresh_seconds:
            self.set_interval(self._refresh_seconds, self.load)

    def on_resize(self) -> None:
        self._draw()

    @guarded(thread=True, exclusive=True, group="activity")
    def load(self) -> None:
        with contextlib.suppress(StoreError):  # the dashboard's header says since when
            with self._store.read() as session:
                entries = entries_since(session, limit=ENTRIES_SHOWN)
                rows = [activity_row(entry, self._zone) for entry in entries]
            if not get_current_worker().is_cancelled:  # the screen closed while it read
                self.app.call_from_thread(self._show, rows)

    def _show(self, rows: list[tuple[str, str, str]]) -> None:
        heading = f"Activity, newest first ({len(rows):,}), times in {self._zone}"
        self.query_one("#activity-title", Label).update(heading if rows else f"{heading}: none")
        if rows == self._rows and self.query_one(DataTable).row_count:
            return  # nothing new: the cursor stays where the operator put it
        self._rows = rows
        self._draw()
        self.query_one(DataTable).focus()

    def _draw(self) -> None:
        """The table with its columns fitted to the width (who and what share the rest)."""
        table = self.query_one(DataTable)
        cursor = table.cursor_row
        table.clear(columns=True)
        shown = fit_columns(COLUMNS, self._rows, table.scrollable_content_region.width)
        for index, width in shown:
            table.add_column(COLUMNS[index].title, width=width)
        for row in self._rows:
            table.add_row(*[Text(row[index], overflow="ellipsis") for index, _ in shown])
        if self._rows:
            table.move_cursor(row=min(cursor, len(self._rows) - 1), animate=False)
