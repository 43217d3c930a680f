"""The dashboard: three live panes and the keys that act on the selected mailing.

Its keys are its own bindings, so they are silent whenever another screen (a modal, the
details) is on top. What it changes goes to the app as an Operation message: the app runs
the database transaction in a worker and refreshes the panes.
"""

import asyncio
import functools
import time
from datetime import datetime

from rich.text import Text
from sqlmodel import Session
from textual import on
from textual.app import ComposeResult
from textual.binding import ActiveBinding
from textual.containers import Vertical
from textual.widgets import DataTable, Header, Input, Label, Static

from sendstatus_tui.core.model import lifecycle
from sendstatus_tui.core.model.guard import is_guard_stop
from sendstatus_tui.core.model.queue import Direction, queue_end
from sendstatus_tui.core.model.states import Area, State
from sendstatus_tui.core.model.when import format_local, zone, zone_label
from sendstatus_tui.core.reads.activity import CameBack
from sendstatus_tui.core.store.store import Store
from sendstatus_tui.errors import SendStatusError
from sendstatus_tui.tui.actions import ALWAYS_IN_FOOTER, BY_NAME, bindings
from sendstatus_tui.tui.screens.activity import ActivityScreen
from sendstatus_tui.tui.screens.completed import CompletedScreen
from sendstatus_tui.tui.screens.confirm import ConfirmModal
from sendstatus_tui.tui.screens.engines import EnginesScreen
from sendstatus_tui.tui.screens.mailing_actions import DashboardSettings, MailingActions
from sendstatus_tui.tui.screens.new_mailing import NewMailingForm
from sendstatus_tui.tui.screens.palette import DashboardCommands
from sendstatus_tui.tui.screens.schedule import Scheduled, ScheduleModal, schedule_in_window
from sendstatus_tui.tui.trouble import (
    guarded,
)
from sendstatus_tui.tui.widgets.footer import FittingFooter
from sendstatus_tui.tui.widgets.mailing_table import MailingTable
from sendstatus_tui.tui.widgets.throughput_charts import ThroughputCharts
from sendstatus_tui.views.activity import (
    activity_line,
    came_back_notice,
    change_notice,
    is_news,
)
from sendstatus_tui.views.cells import quoted, state_shown
from sendstatus_tui.views.layout import pane_heights
from sendstatus_tui.views.panes import BLINKING_COLUMN, COLUMNS, PANE_AREAS, PANE_TITLE, heading
from sendstatus_tui.views.snapshot import Row, Snapshot

# the activity panel shows from this terminal height on, with this many of today's changes
ACTIVITY_FROM_HEIGHT = 40
ACTIVITY_LINES = 6
ACTIVITY_CHROME = 2  # its border and its title
# wide screens (both at least) also chart what is sending over the last hour, one line each
CHARTS_FROM_SIZE = (160, 45)
CHART_LINES_AT_MOST = 6
CHARTS_CHROME = 2  # its border and its title
# other people's changes told one by one in a refresh, at most; the rest summed up
NEWS_TOLD_AT_MOST = 3
# what came back about one completed mailing is told at most this often (seconds)
CAME_BACK_EVERY = 60.0


class AlreadyThere(SendStatusError):
    """A move that would leave the queue as it is: said, and nothing written."""


def move_in_queue(name: str, session: Session, mailing_id: int, direction: Direction) -> int:
    """``lifecycle.move``, refused with why when the mailing is already at that end (as on
    the command line, nothing is recorded then)."""
    moved = lifecycle.move(session, mailing_id, direction)
    if not moved.changed:
        raise AlreadyThere(f"{quoted(name)} is already {queue_end(direction)} in the queue")
    return moved.after


class DashboardScreen(MailingActions):
    BINDINGS = bindings("dashboard")
    COMMANDS = {DashboardCommands}

    def __init__(self, store: Store, settings: DashboardSettings):
        super().__init__()
        self.store, self.settings = store, settings
        self.zone = zone(settings.zone_name)
        self.snapshot: Snapshot | None = None
        self._name_filter = ""
        self._blink_visible = True
        self._bindings_for: tuple | None = None
        self._new_mailing: int | None = None  # created here: highlighted once it shows
        self.own_session: str | None = None  # the audit session of this dashboard's changes
        self.came_back_every = CAME_BACK_EVERY
        self._came_back_told: dict[int, float] = {}  # monotonic time of each one's notice
        self._came_back_waiting: dict[int, CameBack] = {}

    # --- layout and drawing -------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(
            placeholder="filter by name or id (enter: to the first match, escape clears)",
            id="filter",
            compact=True,
        )
        for area in PANE_AREAS:
            with Vertical(classes="pane", id=f"pane-{area}"):
                yield Label(PANE_TITLE[area], classes="pane-title", id=f"title-{area}")
                yield MailingTable(
                    COLUMNS[area], blink_column=BLINKING_COLUMN.get(area), id=f"table-{area}"
                )
        with Vertical(id="throughput"):
            yield Label("Sending now: messages per minute, the last hour", classes="pane-title")
            yield ThroughputCharts(id="charts")
        with Vertical(id="activity"):
            yield Label("Activity today (A: all of it)", classes="pane-title")
            yield Static("", id="activity-lines")
        yield FittingFooter()

    def on_mount(self) -> None:
        if self.settings.blink:
            self.set_interval(0.5, self._toggle_blink)
        self.table(Area.NOW).focus()

    def table(self, area: Area) -> MailingTable:
        return self.query_one(f"#table-{area}", MailingTable)

    def show_snapshot(self, snapshot: Snapshot) -> None:
        before, self.snapshot = self.snapshot, snapshot
        focused = self.focused
        followed = focused.selected_id if isinstance(focused, MailingTable) else None
        if self._new_mailing is not None and any(
            row.mailing_id == self._new_mailing for rows in snapshot.rows.values() for row in rows
        ):
            followed, self._new_mailing = self._new_mailing, None
        with self.app.batch_update():
            for area in PANE_AREAS:
                every = snapshot.rows[area]
                rows = [r for r in every if self._matches(r)]
                self.table(area).show(rows)
                title = heading(area, len(rows), len(every) if self._name_filter else None)
                self.query_one(f"#title-{area}", Label).update(title)
            self._fit_panes()
            self._show_charts()
            if followed is not None:
                self._follow(followed)
        if before is not None:
            self._tell_completed(before, snapshot)
            self._tell_news(before, snapshot)
        self._tell_came_back(snapshot.came_back)
        if snapshot.activity is not None:
            self._show_activity(snapshot)
        self._bindings_may_change()

    def follow_next(self, mailing_id: int) -> None:
        """Highlights ``mailing_id`` (just created) when the next refresh shows it."""
        self._new_mailing = mailing_id

    def _follow(self, mailing_id: int) -> None:
        """Keeps the highlight on the operator's mailing when it changed pane (sent now,
        started at its time, stopped...): the keys then act on the mailing they chose."""
        if isinstance(self.focused, MailingTable) and mailing_id in self.focused.mailing_ids:
            return
        for area in PANE_AREAS:
            table = self.table(area)
            if mailing_id in table.mailing_ids:
                table.focus(scroll_visible=False)
                table.move_to(mailing_id)
                return

    def _tell_completed(self, before: Snapshot, now: Snapshot) -> None:
        """A mailing that leaves Sending now for no pane has completed: says so; one the
        guard stopped into Sends to schedule: says why."""
        still_shown = {row.mailing_id for rows in now.rows.values() for row in rows}
        stopped = {row.mailing_id: row for row in now.rows[Area.STANDBY]}
        for row in before.rows[Area.NOW]:
            if row.mailing_id not in still_shown:
                self.notify(f"{quoted(row.name)} completed", timeout=6)
            elif (parked := stopped.get(row.mailing_id)) and is_guard_stop(parked.state_reason):
                self.notify(
                    f"{quoted(row.name)} {parked.state_reason}", severity="error", timeout=15
                )

    def _tell_news(self, before: Snapshot, now: Snapshot) -> None:
        """Changes by someone else (another dashboard, the command line, the engine, the
        guard) to a mailing on screen: who did what, when; a burst summed up."""
        on_screen = before.on_screen | now.on_screen
        news = [e for e in now.news if is_news(e, self.own_session, on_screen)]
        told = news if len(news) <= NEWS_TOLD_AT_MOST else news[: NEWS_TOLD_AT_MOST - 1]
        for entry in told:
            self.notify(change_notice(entry, self.zone), timeout=6)
        if len(news) > len(told):
            more = len(news) - len(told)
            self.notify(f"and {more:,} more changes by others (A: the activity)", timeout=6)

    def _tell_came_back(self, came_back: list[CameBack]) -> None:
        """Bounces and complaints about completed mailings, as they come: one notice per
        mailing at most every ``came_back_every`` seconds, with the counts since it
        completed."""
        for item in came_back:
            self._came_back_waiting[item.mailing_id] = item
        now = time.monotonic()
        for mailing_id, item in list(self._came_back_waiting.items()):
            if now - self._came_back_told.get(mailing_id, -self.came_back_every) >= (
                self.came_back_every
            ):
                self.notify(came_back_notice(item), timeout=8)
                self._came_back_told[mailing_id] = now
                del self._came_back_waiting[mailing_id]

    def _show_activity(self, snapshot: Snapshot) -> None:
        assert snapshot.activity is not None
        lines = [activity_line(entry, self.zone) for entry in snapshot.activity]
        text = Text("\n".join(lines) or "no changes today", no_wrap=True, overflow="ellipsis")
        self.query_one("#activity-lines", Static).update(text)

    def on_resize(self) -> None:
        self._fit_panes()
        self._show_charts()

    def _wide(self) -> bool:
        width, height = CHARTS_FROM_SIZE
        return self.size.width >= width and self.size.height >= height

    def _charted(self) -> list[Row]:
        """What the charts show: the sending mailings the filter keeps."""
        rows = self.snapshot.rows[Area.NOW] if self.snapshot else []
        name = self._name_filter
        return [r for r in rows if r.state == State.SENDING and name in r.name.lower()]

    def _show_charts(self) -> None:
        if self._wide():
            self.query_one(ThroughputCharts).show(self._charted())

    def _fit_panes(self) -> None:
        """Gives each pane the lines its rows need, as far as the terminal allows; from
        ACTIVITY_FROM_HEIGHT lines on, today's activity under them; on wide screens
        (CHARTS_FROM_SIZE), the charts of what is sending above it."""
        filter_shown = self.query_one("#filter", Input).has_class("visible")
        height = self.size.height - 2 - (1 if filter_shown else 0)  # header, footer
        charts = self.query_one("#throughput")
        charts.display = self._wide()
        if charts.display:
            lines = min(CHART_LINES_AT_MOST, max(1, len(self._charted())))
            charts.styles.height = CHARTS_CHROME + lines
            height -= CHARTS_CHROME + lines
        panel = self.query_one("#activity")
        panel.display = self.size.height >= ACTIVITY_FROM_HEIGHT
        if panel.display:
            panel.styles.height = ACTIVITY_CHROME + ACTIVITY_LINES
            height -= ACTIVITY_CHROME + ACTIVITY_LINES
        counts = [self.table(area).row_count for area in PANE_AREAS]
        for area, lines in zip(PANE_AREAS, pane_heights(counts, height), strict=True):
            self.query_one(f"#pane-{area}").styles.height = lines

    def _toggle_blink(self) -> None:
        self._blink_visible = not self._blink_visible
        self.table(Area.NOW).set_blink(self._blink_visible)

    # --- selection, and what applies to it ----------------------------------------------

    def selected(self) -> Row | None:
        """The mailing under the cursor of the focused pane."""
        focused = self.focused
        if isinstance(focused, MailingTable) and focused.selected_id is not None:
            return focused.row_for(focused.selected_id)
        return None

    @on(DataTable.RowHighlighted)
    def _selection_moved(self) -> None:
        self._bindings_may_change()

    @on(DataTable.RowSelected)
    def _row_clicked(self) -> None:
        self.action_actions()

    def on_descendant_focus(self) -> None:
        self._bindings_may_change()

    def _bindings_may_change(self) -> None:
        """Refreshes the footer when what it offers may differ: the focus, or the state of
        the selected mailing, changed. Textual rebuilds the whole footer on every
        refresh_bindings (some 20 ms of the UI loop), so not on every refresh."""
        selected = self.selected()
        offered_for = (self.focused, selected.state if selected else None)
        if offered_for != self._bindings_for:
            self._bindings_for = offered_for
            self.refresh_bindings()

    @property
    def active_bindings(self) -> dict[str, ActiveBinding]:
        # help and quit first, so that a narrow footer never cuts them off
        bindings = super().active_bindings
        first = {k: b for k, b in bindings.items() if b.binding.action in ALWAYS_IN_FOOTER}
        return first | {k: b for k, b in bindings.items() if k not in first}

    def _on_a_pane(self) -> bool:
        return isinstance(self.focused, MailingTable)

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        """Offers (and allows) a key only where it applies to the selection."""
        if action == "why":
            return self._on_a_pane()  # elsewhere (the filter field) the key is the field's
        if action not in BY_NAME:
            return True
        if BY_NAME[action].moves_cursor:
            return self._on_a_pane()
        selected = self.selected()
        return BY_NAME[action].applies_to(selected.state if selected else None)

    # --- the actions of the registry (actions.py) ---------------------------------------

    def _focused_table(self) -> MailingTable | None:
        return self.focused if isinstance(self.focused, MailingTable) else None

    def action_cursor_down(self) -> None:
        if table := self._focused_table():
            table.action_cursor_down()

    def action_cursor_up(self) -> None:
        if table := self._focused_table():
            table.action_cursor_up()

    def action_first_row(self) -> None:
        if table := self._focused_table():
            table.move_cursor(row=0, animate=False)

    def action_last_row(self) -> None:
        if table := self._focused_table():
            table.move_cursor(row=table.row_count - 1, animate=False)

    @guarded(group="actions")
    async def action_send_now(self) -> None:
        row = self.selected()
        if row is not None and await self.confirm_after_guard(row):
            self._operate(f"{row.name}: sending now", lifecycle.send_now, row.mailing_id)

    @guarded(group="actions")
    async def action_schedule(self) -> None:
        row = self.selected()
        if row is not None and await self.confirm_after_guard(row):
            self.schedule(row.mailing_id, row.name, row.scheduled_at, row.window)

    async def confirm_after_guard(self, row: Row) -> bool:
        """A mailing the guard stopped: says why, and asks before sending it again (as the
        command line's --yes); True for any other mailing."""
        if not is_guard_stop(row.state_reason):
            return True
        confirmed: bool = await self.app.push_screen_wait(
            ConfirmModal(
                f"Send {quoted(row.name)} again?",
                f"It was {row.state_reason}. Sending it again starts the guard's window afresh.",
                "Send again",
            )
        )
        return confirmed

    def schedule(
        self,
        mailing_id: int,
        name: str,
        current: datetime | None = None,
        window: str | None = None,
    ) -> None:
        def chosen(scheduled: Scheduled | None) -> None:
            if scheduled is not None:
                now = self.settings.clock()
                self._operate(
                    f"{name}: scheduled",
                    functools.partial(schedule_in_window, zone_name=zone_label(self.zone)),
                    mailing_id,
                    scheduled,
                    now,
                )

        self.app.push_screen(self.schedule_modal(name, current, window), chosen)

    def schedule_modal(
        self, name: str, current: datetime | None = None, window: str | None = None
    ) -> ScheduleModal:
        """The date-and-time dialog, holding ``current`` (a reschedule's time) and the
        mailing's ``window`` to edit."""
        initial = format_local(current, self.zone) if current else ""
        return ScheduleModal(
            name,
            self.zone,
            self.settings.zone_name,
            self.settings.clock,
            initial=initial,
            window=window,
        )

    @guarded(group="actions")
    async def action_enqueue(self) -> None:
        row = self.selected()
        if row is None or not await self.confirm_after_guard(row):
            return
        if await self.confirm_sequential(row.name):
            self._operate(f"{row.name}: sent sequentially", lifecycle.enqueue, row.mailing_id)

    async def confirm_sequential(self, name: str) -> bool:
        """Warns, when other sequential mailings are ahead, which ones and the new place
        in the queue; True when there are none or the operator confirms."""
        ahead = await asyncio.to_thread(self._sequential_ahead)
        if not ahead:
            return True
        names = ", ".join(f"{quoted(name)} ({state_shown(state)})" for name, state in ahead)
        position = sum(1 for _, state in ahead if state == State.QUEUED) + 1
        confirmed: bool = await self.app.push_screen_wait(
            ConfirmModal(
                "Other sequential sendings are in progress",
                f"{names}.\n\n{quoted(name)} will be number {position} in the sequential"
                " queue and start after them.",
                "Send sequentially",
            )
        )
        return confirmed

    def _sequential_ahead(self) -> list[tuple[str, State]]:
        with self.store.read() as session:
            return [(m.name, m.state) for m in lifecycle.sequential_ahead(session)]

    @guarded(group="actions")
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
        if await self.app.push_screen_wait(
            ConfirmModal(f"Stop {quoted(row.name)}?", message, "Stop", safe=True)
        ):
            self._operate(f"{row.name}: stopped", lifecycle.stop, row.mailing_id)

    def action_move_up(self) -> None:
        self._move(Direction.UP)

    def action_move_down(self) -> None:
        self._move(Direction.DOWN)

    def action_move_top(self) -> None:
        self._move(Direction.TOP)

    def action_move_bottom(self) -> None:
        self._move(Direction.BOTTOM)

    def _move(self, direction: Direction) -> None:
        if row := self.selected():
            self._operate("", functools.partial(move_in_queue, row.name), row.mailing_id, direction)

    @guarded(group="actions")
    async def action_delete(self) -> None:
        row = self.selected()
        if row is None:
            return
        if await self.app.push_screen_wait(
            ConfirmModal(
                f"Delete {quoted(row.name)}?",
                "The mailing and its recipients are deleted.",
                "Delete",
                safe=True,
            )
        ):
            self._operate(f"{row.name}: deleted", lifecycle.delete, row.mailing_id)

    def action_completed_today(self) -> None:
        self.app.push_screen(CompletedScreen(self.store, self.settings))

    def action_activity(self) -> None:
        settings = self.settings
        self.app.push_screen(
            ActivityScreen(self.store, self.zone, settings.clock, settings.refresh_seconds)
        )

    def action_engines(self) -> None:
        settings = self.settings
        self.app.push_screen(
            EnginesScreen(self.store, self.zone, settings.clock, settings.refresh_seconds)
        )

    def action_new_mailing(self) -> None:
        self.app.push_screen(NewMailingForm())

    def action_filter(self) -> None:
        field = self.query_one("#filter", Input)
        field.add_class("visible")
        self._fit_panes()
        field.focus()

    def _matches(self, row: Row) -> bool:
        """Whether the filter shows ``row``: its name holds the text, or its id is it."""
        wanted = self._name_filter
        return wanted in row.name.lower() or wanted == str(row.mailing_id)

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self._name_filter = event.value.strip().lower()
        if self.snapshot is not None:
            self.show_snapshot(self.snapshot)
        if first := self._first_match():
            first.move_cursor(row=0, animate=False)

    def _first_match(self) -> MailingTable | None:
        """The first pane that shows a mailing (the filter's first match is its first)."""
        return next((t for t in map(self.table, PANE_AREAS) if t.row_count), None)

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        table = self._first_match() or self.table(Area.NOW)
        table.focus()
        if table.row_count:
            table.move_cursor(row=0, animate=False)

    def key_escape(self) -> None:
        field = self.query_one("#filter", Input)
        if field.has_class("visible"):
            field.value = ""
            field.remove_class("visible")
            self._fit_panes()
            self.table(Area.NOW).focus()
