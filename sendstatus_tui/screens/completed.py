"""H: the mailings completed today, which leave the panes when they complete."""

from collections.abc import Callable
from datetime import datetime, tzinfo

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Label

from ..core.listing import list_mailings
from ..core.states import Area
from ..core.store import Store
from ..views.completed import COLUMNS, completed_row, finished_today


class CompletedScreen(Screen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("q,H", "app.pop_screen", "Back", show=False),
    ]

    def __init__(self, store: Store, zone: tzinfo, clock: Callable[[], datetime]):
        super().__init__()
        self._store, self._zone, self._clock = store, zone, clock

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label("", id="completed-title")
        yield DataTable(cursor_type="row", zebra_stripes=True, id="completed")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Completed today"
        table = self.query_one(DataTable)
        for column in COLUMNS:
            table.add_column(column, key=column)
        self.load()

    @work(thread=True, exclusive=True, group="completed")
    def load(self) -> None:
        with self._store.read() as session:
            today = finished_today(list_mailings(session, Area.DONE), self._clock(), self._zone)
            rows = [completed_row(mailing, self._zone) for mailing in today]
        self.app.call_from_thread(self._show, rows)

    def _show(self, rows: list[tuple[int | str, ...]]) -> None:
        heading = f"Completed today ({len(rows)}), finishing times in {self._zone}"
        self.query_one("#completed-title", Label).update(heading if rows else f"{heading}: none")
        table = self.query_one(DataTable)
        table.clear()
        for row in rows:
            table.add_row(*row, key=str(row[0]))
        table.focus()
