"""H: the mailings completed today, which leave the panes when they complete; ``/``
searches every completed mailing by name or id. The selected one is acted on as in the
panes (details, retry, test, export, copy, preview: screens/mailing_actions.py)."""

from typing import NamedTuple

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Input, Label

from sendstatus_tui.core.model.models import Mailing
from sendstatus_tui.core.model.states import Area, State
from sendstatus_tui.core.model.when import zone
from sendstatus_tui.core.reads.listing import list_mailings
from sendstatus_tui.core.store.store import Store
from sendstatus_tui.tui.actions import BY_NAME, bindings
from sendstatus_tui.tui.screens.mailing_actions import DashboardSettings, MailingActions
from sendstatus_tui.tui.trouble import guarded
from sendstatus_tui.views.cells import quoted
from sendstatus_tui.views.completed import COLUMNS, completed_row, finished_today, matching
from sendstatus_tui.views.layout import fit_columns


class Done(NamedTuple):
    """A completed mailing as H lists it, and the actions read it."""

    mailing_id: int
    name: str
    state: State
    cells: tuple[int | str, ...]


class CompletedScreen(MailingActions):
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("q,H", "app.pop_screen", "Back", show=False),
        Binding("slash", "search", "Search"),
        *bindings("dashboard", selection_only=True),
    ]

    def __init__(self, store: Store, settings: DashboardSettings):
        super().__init__()
        self.store, self.settings = store, settings
        self.zone = zone(settings.zone_name)
        self._rows: list[Done] = []
        self._search = ""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(
            placeholder="search every completed mailing by name or id (escape clears)",
            id="search",
            compact=True,
        )
        yield Label("", id="completed-title")
        yield DataTable(cursor_type="row", zebra_stripes=True, id="completed")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Completed today"
        self.query_one(DataTable).focus()
        self.load()

    def _searching(self) -> bool:
        return self.query_one("#search", Input).has_class("visible")

    def on_resize(self) -> None:
        self._draw()

    # --- what it lists --------------------------------------------------------------------

    @guarded(thread=True, exclusive=True, group="completed")
    def load(self) -> None:
        search = self._search
        with self.store.read() as session:
            done = list_mailings(session, Area.DONE)
        if search:
            shown = matching(done, search)
        else:
            shown = finished_today(done, self.settings.clock(), self.zone)
        rows = [self._done(mailing, with_date=bool(search)) for mailing in shown]
        self.app.call_from_thread(self._show, rows, search)

    def _done(self, mailing: Mailing, *, with_date: bool) -> Done:
        assert mailing.id is not None
        cells = completed_row(mailing, self.zone, with_date=with_date)
        return Done(mailing.id, mailing.name, mailing.state, cells)

    def _show(self, rows: list[Done], search: str) -> None:
        if search != self._search:
            return  # typed on meanwhile: the newer search's rows come
        if search:
            heading = f"Completed mailings matching {quoted(search)} ({len(rows):,})"
        else:
            heading = f"Completed today ({len(rows):,})"
        heading += f", finishing times in {self.zone}"
        self.query_one("#completed-title", Label).update(heading if rows else f"{heading}: none")
        table = self.query_one(DataTable)
        was = self.selected()
        self._rows = rows
        self._draw()
        if was is not None and was.mailing_id in self.mailing_ids:
            table.move_cursor(row=self.mailing_ids.index(was.mailing_id), animate=False)
        if not self._searching():
            table.focus()
        self.refresh_bindings()

    def _draw(self) -> None:
        """The table with its columns fitted to the width (names take what is left)."""
        table = self.query_one(DataTable)
        table.clear(columns=True)
        cells = [row.cells for row in self._rows]
        shown = fit_columns(COLUMNS, cells, table.scrollable_content_region.width)
        for index, width in shown:
            table.add_column(COLUMNS[index].title, width=width)
        for row in self._rows:
            values = [row.cells[index] for index, _ in shown]
            table.add_row(
                *[Text(c, overflow="ellipsis") if isinstance(c, str) else c for c in values],
                key=str(row.mailing_id),
            )

    # --- the selection, and what applies to it -------------------------------------------

    @property
    def mailing_ids(self) -> list[int]:
        """The mailings listed, in order."""
        return [row.mailing_id for row in self._rows]

    def selected(self) -> Done | None:
        table = self.query_one(DataTable)
        if not self._rows or not 0 <= table.cursor_row < len(self._rows):
            return None
        return self._rows[table.cursor_row]

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        """Offers a key only on the table (in the search field the keys are the field's),
        and only where it applies to the selection."""
        on_table = isinstance(self.focused, DataTable)
        if action == "why":
            return on_table
        if action in BY_NAME:
            return on_table and self.applies(action)
        return True

    @on(DataTable.RowHighlighted)
    def _selection_moved(self) -> None:
        self.refresh_bindings()

    def on_descendant_focus(self) -> None:
        self.refresh_bindings()

    def operated(self) -> None:
        self.load()  # a retried mailing leaves the completed ones

    # --- searching -------------------------------------------------------------------------

    def action_search(self) -> None:
        field = self.query_one("#search", Input)
        field.add_class("visible")
        field.focus()

    @on(Input.Changed, "#search")
    def _search_changed(self, event: Input.Changed) -> None:
        self._search = event.value.strip()
        self.load()

    @on(Input.Submitted, "#search")
    def _search_done(self) -> None:
        self.query_one(DataTable).focus()

    def action_back(self) -> None:
        """Escape: clears the search first, then goes back to the panes."""
        field = self.query_one("#search", Input)
        if self._searching():
            field.value = ""
            field.remove_class("visible")
            self.query_one(DataTable).focus()
            return
        self.app.pop_screen()
