"""H: the mailings completed today, which leave the panes when they complete."""

from collections.abc import Callable
from datetime import datetime, tzinfo

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Label

from sendstatus_tui.core.model.states import Area
from sendstatus_tui.core.reads.listing import list_mailings
from sendstatus_tui.core.store.store import Store
from sendstatus_tui.tui.trouble import guarded
from sendstatus_tui.views.completed import COLUMNS, completed_row, finished_today
from sendstatus_tui.views.layout import fit_columns


class CompletedScreen(Screen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("q,H", "app.pop_screen", "Back", show=False),
    ]

    def __init__(self, store: Store, zone: tzinfo, clock: Callable[[], datetime]):
        super().__init__()
        self._store, self._zone, self._clock = store, zone, clock
        self._rows: list[tuple[int | str, ...]] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label("", id="completed-title")
        yield DataTable(cursor_type="row", zebra_stripes=True, id="completed")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Completed today"
        self.load()

    def on_resize(self) -> None:
        self._draw()

    @guarded(thread=True, exclusive=True, group="completed")
    def load(self) -> None:
        with self._store.read() as session:
            today = finished_today(list_mailings(session, Area.DONE), self._clock(), self._zone)
            rows = [completed_row(mailing, self._zone) for mailing in today]
        self.app.call_from_thread(self._show, rows)

    def _show(self, rows: list[tuple[int | str, ...]]) -> None:
        heading = f"Completed today ({len(rows)}), finishing times in {self._zone}"
        self.query_one("#completed-title", Label).update(heading if rows else f"{heading}: none")
        self._rows = rows
        self._draw()
        self.query_one(DataTable).focus()

    def _draw(self) -> None:
        """The table with its columns fitted to the width (names take what is left)."""
        table = self.query_one(DataTable)
        table.clear(columns=True)
        shown = fit_columns(COLUMNS, self._rows, table.scrollable_content_region.width)
        for index, width in shown:
            table.add_column(COLUMNS[index].title, width=width)
        for row in self._rows:
            cells = [row[index] for index, _ in shown]
            table.add_row(
                *[Text(c, overflow="ellipsis") if isinstance(c, str) else c for c in cells]
            )
