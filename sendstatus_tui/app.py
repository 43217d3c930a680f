"""The Send Status dashboard: three live panes steered from the keyboard.

Reads run in a worker thread and replace the tables' contents by row key; operators'
actions are database transactions (the engine, here or in another process, reacts to
them), also run off the UI loop.
"""

import asyncio
import contextlib
import gc
import signal
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Footer, Header, Input, Label

from .core import lifecycle
from .core.drafts import DraftRefused, create_mailing, draft_from_files
from .core.models import utc_now
from .core.queue import Direction
from .core.recipients import MAX_REPORTED_ERRORS, RecipientsRefused
from .core.states import PANE_TITLE, TRANSITIONS, Action, Area, State, TransitionRefused
from .core.store import Store
from .core.when import zone
from .engine.thread import EngineThread
from .palette import MailingCommands
from .panes import COLUMNS, PANE_AREAS, Row, Snapshot, SpeedMeter, read_snapshot
from .screens.actions import ActionsMenu
from .screens.confirm import ConfirmModal
from .screens.detail import DetailScreen, RateHistory
from .screens.help import HelpScreen
from .screens.new_mailing import NewMailingForm, NewMailingRequest
from .screens.schedule import ScheduleModal
from .widgets.mailing_table import MailingTable

# key actions that need a selected mailing, and the state rule that allows each
_NEEDS = {
    "send_now": Action.SEND_NOW,
    "schedule": Action.SCHEDULE_AT,
    "enqueue": Action.ENQUEUE,
    "stop": Action.STOP,
    "move_up": Action.MOVE,
    "move_down": Action.MOVE,
    "delete": Action.DELETE,
}
_MAIN_SCREEN_ACTIONS = (*_NEEDS, "actions", "details", "quit_dashboard", "new_mailing", "filter")
_ACTION_ERRORS = (
    TransitionRefused,
    lifecycle.MailingNotFound,
    lifecycle.TimeInPast,
)


class SendStatusApp(App):
    TITLE = "Send Status"
    COMMANDS = App.COMMANDS | {MailingCommands}
    CSS = """
    .pane { height: 1fr; border-top: solid $primary-darken-2; }
    .pane-title { text-style: bold; color: $accent; padding: 0 1; }
    #filter { display: none; dock: top; }
    #filter.visible { display: block; }
    """
    BINDINGS = [
        Binding("s", "send_now", "Send"),
        Binding("t", "schedule", "Schedule"),
        Binding("e", "enqueue", "Queue"),
        Binding("x", "stop", "Stop"),
        Binding("shift+up,K", "move_up", "Up"),
        Binding("shift+down,J", "move_down", "Down"),
        Binding("d", "details", "Details"),
        Binding("delete", "delete", "Delete"),
        Binding("n", "new_mailing", "New"),
        Binding("slash", "filter", "Filter"),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit_dashboard", "Quit"),
    ]

    def __init__(
        self,
        store: Store,
        *,
        zone_name: str | None = None,
        clock: Callable[[], datetime] = utc_now,
        blink: bool = True,
        refresh_seconds: float = 0.5,
        engine: EngineThread | None = None,
        demo: bool = False,
    ):
        super().__init__()
        self.store = store
        self.zone_name = zone_name
        self.zone = zone(zone_name)
        self.clock = clock
        self.blink = blink
        self.refresh_seconds = refresh_seconds
        self.engine = engine
        self.demo = demo
        self.speeds = SpeedMeter()
        self.rates = RateHistory()
        self.snapshot: Snapshot | None = None
        self._name_filter = ""
        self._blink_visible = True
        self._frozen = False
        self._bindings_for: tuple | None = None

    # --- layout and refresh -------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="filter by name (escape clears)", id="filter")
        for area in PANE_AREAS:
            with Vertical(classes="pane", id=f"pane-{area}"):
                yield Label(PANE_TITLE[area], classes="pane-title", id=f"title-{area}")
                blink_column = "Start date" if area == Area.NOW else None
                yield MailingTable(COLUMNS[area], blink_column=blink_column, id=f"table-{area}")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "loading…"
        self.refresh_panes()
        if self.refresh_seconds:
            self.set_interval(self.refresh_seconds, self.refresh_panes)
        if self.blink:
            self.set_interval(0.5, self._toggle_blink)
        self.table(Area.NOW).focus()
        # an SSH connection that drops is a quit: the engine records its batch in flight
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.exit)

    def table(self, area: Area) -> MailingTable:
        return self.query_one(f"#table-{area}", MailingTable)

    @work(thread=True, exclusive=True, group="refresh")
    def refresh_panes(self) -> None:
        snapshot = read_snapshot(self.store, self.zone, self.clock(), self.speeds)
        self.call_from_thread(self.show_snapshot, snapshot)

    def show_snapshot(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        with self.batch_update():
            for area in PANE_AREAS:
                rows = [r for r in snapshot.rows[area] if self._name_filter in r.name.lower()]
                self.table(area).show(rows)
                self.query_one(f"#title-{area}", Label).update(f"{PANE_TITLE[area]} ({len(rows)})")
        for row in snapshot.rows[Area.NOW]:
            if row.speed is not None:
                self.rates.add(row.mailing_id, row.speed)
        self.sub_title = self._engine_status(snapshot)
        self._bindings_may_change()
        if not self._frozen:
            # the widgets and a thousand rows live as long as the app: out of the cyclic
            # collector's sight, full collections (which stop every thread, the engine's
            # too) take microseconds instead of a tenth of a second
            self._frozen = True
            self.call_after_refresh(gc.freeze)

    def _engine_status(self, snapshot: Snapshot) -> str:
        if self.engine is not None and self.engine.alive:
            if snapshot.engine_holder == self.engine.engine.holder:
                return "engine running in this dashboard"
            return "engine starting: waiting for the lease"
        if snapshot.engine_holder:
            return f"client: the engine runs in {snapshot.engine_holder}"
        return "no engine running: nothing is sent until one starts"

    def _toggle_blink(self) -> None:
        self._blink_visible = not self._blink_visible
        self.table(Area.NOW).set_blink(self._blink_visible)

    # --- selection ----------------------------------------------------------------------

    def selected(self) -> Row | None:
        """The mailing under the cursor of the focused pane (on the main screen)."""
        focused = self.screen_stack[0].focused
        if isinstance(focused, MailingTable) and focused.selected_id is not None:
            return focused.row_for(focused.selected_id)
        return None

    @on(DataTable.RowHighlighted)
    def _selection_moved(self) -> None:
        self._bindings_may_change()

    @on(DataTable.RowSelected)
    def _row_chosen(self) -> None:
        # the table takes enter for itself and says so with this message
        self.action_actions()

    def on_descendant_focus(self) -> None:
        self._bindings_may_change()

    def _bindings_may_change(self) -> None:
        """Refreshes the footer when what it offers may differ: the focus, or the state of
        the selected mailing, changed. Textual rebuilds the whole footer on every
        refresh_bindings (some 20 ms of the UI loop), so not on every refresh."""
        selected = self.selected()
        offered_for = (self.screen, self.focused, selected.state if selected else None)
        if offered_for != self._bindings_for:
            self._bindings_for = offered_for
            self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        """Offers (and allows) a key only where it applies to the selection."""
        if self.screen is not self.screen_stack[0] and action in _MAIN_SCREEN_ACTIONS:
            return False  # a modal or the detail screen is on top: its own keys only
        return self.action_applies(action)

    def action_applies(self, action: str) -> bool:
        """Whether ``action`` makes sense for the selected mailing (keys and palette)."""
        if action in _NEEDS or action in ("actions", "details"):
            row = self.selected()
            if row is None:
                return False
            return action not in _NEEDS or row.state in TRANSITIONS[_NEEDS[action]]
        return True

    # --- actions ------------------------------------------------------------------------

    def action_actions(self) -> None:
        row = self.selected()
        if row is None:
            return

        def chosen(choice: str | None) -> None:
            if choice is None:
                return
            if choice.startswith("move_"):
                self._move(row.mailing_id, Direction(choice.removeprefix("move_")))
            else:
                getattr(self, f"action_{choice}")()

        self.push_screen(ActionsMenu(row.name, row.state), chosen)

    def action_send_now(self) -> None:
        if row := self.selected():
            self._act(f"{row.name}: sending now", lifecycle.send_now, row.mailing_id)

    def action_schedule(self) -> None:
        if row := self.selected():
            self._schedule(row.mailing_id, row.name)

    def _schedule(self, mailing_id: int, name: str) -> None:
        def chosen(when: datetime | None) -> None:
            if when is not None:
                self._act(
                    f"{name}: scheduled", lifecycle.schedule_at, mailing_id, when, self.clock()
                )

        self.push_screen(ScheduleModal(name, self.zone, self.zone_name, self.clock), chosen)

    @work(group="actions")
    async def action_enqueue(self) -> None:
        row = self.selected()
        if row is None:
            return
        ahead = await asyncio.to_thread(self._sequential_ahead)
        if ahead:
            names = ", ".join(f"{name} ({state})" for name, state in ahead)
            position = sum(1 for _, state in ahead if state == State.QUEUED) + 1
            confirmed = await self.push_screen_wait(
                ConfirmModal(
                    "Other sequential sendings are in progress",
                    f"{names}.\n\n{row.name} will be number {position} in the sequential"
                    " queue and start after them.",
                    "Send sequentially",
                )
            )
            if not confirmed:
                return
        self._act(f"{row.name}: sent sequentially", lifecycle.enqueue, row.mailing_id)

    def _sequential_ahead(self) -> list[tuple[str, State]]:
        with self.store.read() as session:
            return [(m.name, m.state) for m in lifecycle.sequential_ahead(session)]

    @work(group="actions")
    async def action_stop(self) -> None:
        row = self.selected()
        if row is None:
            return
        message = (
            "Messages already accepted stay sent; the rest wait in Sends to schedule until"
            " you send it again."
            if row.state in (State.SENDING, State.STARTING)
            else "It goes back to Sends to schedule."
        )
        if await self.push_screen_wait(ConfirmModal(f"Stop {row.name}?", message, "Stop")):
            self._act(f"{row.name}: stopped", lifecycle.stop, row.mailing_id)

    def action_move_up(self) -> None:
        if row := self.selected():
            self._move(row.mailing_id, Direction.UP)

    def action_move_down(self) -> None:
        if row := self.selected():
            self._move(row.mailing_id, Direction.DOWN)

    def _move(self, mailing_id: int, direction: Direction) -> None:
        self._act("", lifecycle.move, mailing_id, direction)

    @work(group="actions")
    async def action_delete(self) -> None:
        row = self.selected()
        if row is None:
            return
        if await self.push_screen_wait(
            ConfirmModal(
                f"Delete {row.name}?", "The mailing and its recipients are deleted.", "Delete"
            )
        ):
            self._act(f"{row.name}: deleted", lifecycle.delete, row.mailing_id)

    def action_details(self) -> None:
        if row := self.selected():
            self.push_screen(
                DetailScreen(
                    self.store, row.mailing_id, self.zone, self.rates.samples, self.refresh_seconds
                )
            )

    def action_new_mailing(self) -> None:
        self.push_screen(NewMailingForm())

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_filter(self) -> None:
        field = self.query_one("#filter", Input)
        field.add_class("visible")
        field.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self._name_filter = event.value.strip().lower()
        if self.snapshot is not None:
            self.show_snapshot(self.snapshot)

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.table(Area.NOW).focus()

    def key_escape(self) -> None:
        field = self.query_one("#filter", Input)
        if field.has_class("visible"):
            field.value = ""
            field.remove_class("visible")
            self.table(Area.NOW).focus()

    @work(group="actions")
    async def action_quit_dashboard(self) -> None:
        if not self.demo and self.engine is not None and self._sending_here():
            confirmed = await self.push_screen_wait(
                ConfirmModal(
                    "Quit and pause sending?",
                    "This dashboard runs the engine. Mailings in Sending now pause until an"
                    " engine runs again (another dashboard, or `sendstatus engine`).",
                    "Quit",
                )
            )
            if not confirmed:
                return
        self.exit()

    def _sending_here(self) -> bool:
        return bool(self.snapshot and self.snapshot.rows[Area.NOW])

    # --- doing things -------------------------------------------------------------------

    @work(thread=True, group="actions")
    def _act(self, done_message: str, operation, mailing_id: int, *args) -> None:
        try:
            with self.store.write() as session:
                operation(session, mailing_id, *args)
        except _ACTION_ERRORS as exc:
            self.call_from_thread(self.notify, str(exc), severity="error", timeout=6)
        else:
            if done_message:
                self.call_from_thread(self.notify, done_message, timeout=3)
        self.call_from_thread(self.refresh_panes)

    @work(group="actions")
    async def create_mailing(self, form: NewMailingForm, request: NewMailingRequest) -> None:
        try:
            mailing_id = await asyncio.to_thread(self._create, request)
        except DraftRefused as refusal:
            form.show_error(refusal.field, str(refusal).split(": ", 1)[-1])
            return
        except RecipientsRefused as refusal:
            details = [str(error) for error in refusal.errors[:MAX_REPORTED_ERRORS]]
            form.show_error("recipients", "\n".join([str(refusal), *details]))
            return
        if form.is_attached:
            form.dismiss(None)
        if request.choice == "schedule":
            self._schedule(mailing_id, request.name)
        self.notify(f"{request.name}: created", timeout=3)
        self.refresh_panes()

    def _create(self, request: NewMailingRequest) -> int:
        draft = draft_from_files(
            request.name, request.subject, request.sender, request.text_path, request.html_path
        )
        with self.store.write() as session:
            mailing, _ = create_mailing(session, draft, Path(request.recipients_path))
            if request.choice == "now":
                lifecycle.send_now(session, mailing.id)
            return mailing.id
