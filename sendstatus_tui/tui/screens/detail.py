"""A mailing in detail: counters, its send rate over the last hour and what came back
(from the minutes every engine stores), the last relay errors, its history. Refreshed
while it is open."""

import contextlib
from collections.abc import Callable
from datetime import datetime, tzinfo

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Label, Sparkline, Static

from sendstatus_tui.core.model import audit
from sendstatus_tui.core.model.models import AuditEntry, Mailing
from sendstatus_tui.core.model.states import State
from sendstatus_tui.core.reads.details import MailingDetails, read_details
from sendstatus_tui.core.store.store import Store, StoreError
from sendstatus_tui.tui.trouble import guarded
from sendstatus_tui.views.audit import entries_text
from sendstatus_tui.views.details import (
    came_back_heading,
    chart_axis,
    counters_text,
    errors_text,
    rate_chart,
    rate_heading,
    title,
)

HISTORY_ENTRIES = 8  # the newest; `sendstatus log ID` has them all


class DetailScreen(Screen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("q", "app.pop_screen", "Back", show=False),
    ]

    def __init__(
        self,
        store: Store,
        mailing_id: int,
        zone: tzinfo,
        clock: Callable[[], datetime],
        refresh_seconds: float,
    ):
        super().__init__()
        self._store, self._mailing_id, self._zone = store, mailing_id, zone
        self._clock = clock
        self._refresh_seconds = refresh_seconds

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll():
            yield Static("", id="counters")
            yield Label("Send rate", classes="heading", id="rate-heading")
            yield Sparkline([], id="rate")
            with Horizontal(id="rate-axis"):
                yield Label("", id="rate-since")
                yield Label("now", id="rate-now")
            yield Static("nothing sent in the last day", id="no-rate")
            yield Label("Came back", classes="heading", id="came-back-heading")
            yield Sparkline([], id="came-back")
            yield Label("Last errors", classes="heading")
            yield Static("", id="errors")
            yield Label("History (who changed it, when)", classes="heading")
            yield Static("", id="history")
        yield Footer()

    def on_mount(self) -> None:
        self.load()
        if self._refresh_seconds:
            self.set_interval(self._refresh_seconds, self.load)

    @guarded(thread=True, exclusive=True, group="detail")
    def load(self) -> None:
        with contextlib.suppress(StoreError):  # the dashboard's header says since when
            self._load()

    def _load(self) -> None:
        now = self._clock()
        with self._store.read() as session:
            mailing = session.get(Mailing, self._mailing_id)
            details = read_details(session, mailing, now) if mailing else None
            history = audit.history(session, self._mailing_id, limit=HISTORY_ENTRIES)
        self.app.call_from_thread(self._show, details, history, now)

    def _show(
        self, details: MailingDetails | None, history: list[AuditEntry], now: datetime
    ) -> None:
        self.query_one("#history", Static).update(
            entries_text(history, self._zone, with_mailing=False, zone_named=False)
            or "no changes recorded"
        )
        if details is None:
            self.query_one("#counters", Static).update("This mailing no longer exists.")
            return
        self.title = title(details)
        self.query_one("#counters", Static).update(counters_text(details, self._zone))
        self._show_rate(details, now)
        self._show_came_back(details, now)
        self.query_one("#errors", Static).update(errors_text(details))

    def _show_rate(self, details: MailingDetails, now: datetime) -> None:
        chart = rate_chart(details, now)
        # with no samples a sparkline would draw a full bar: say so instead
        for widget in ("#rate", "#rate-axis"):
            self.query_one(widget).display = chart is not None
        sending = details.state == State.SENDING
        no_rate = self.query_one("#no-rate", Static)
        no_rate.display = chart is None
        no_rate.update(f"nothing sent in the last {'hour' if sending else 'day'}")
        samples = chart.samples if chart else []
        self.query_one("#rate", Sparkline).data = samples
        self.query_one("#rate-heading", Label).update(rate_heading(samples, sending))
        if chart is not None:
            since, until = chart_axis(chart, sending, self._zone)
            self.query_one("#rate-since", Label).update(since)
            self.query_one("#rate-now", Label).update(until)

    def _show_came_back(self, details: MailingDetails, now: datetime) -> None:
        per_minute = details.throughput.came_back_per_minute(now)
        self.query_one("#came-back-heading", Label).update(came_back_heading(details, now))
        sparkline = self.query_one("#came-back", Sparkline)
        sparkline.display = any(per_minute)
        sparkline.data = per_minute
