"""A mailing in detail: counters, a sparkline of the send rate, the last relay errors,
recipients remaining. Refreshed while it is open."""

import contextlib
from collections import deque
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
from sendstatus_tui.views.details import counters_text, errors_text, rate_heading, time_ago, title

SPARK_POINTS = 60
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
        rates: "RateHistory",
        refresh_seconds: float,
    ):
        super().__init__()
        self._store, self._mailing_id, self._zone = store, mailing_id, zone
        self._rates = rates
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
            yield Static("no samples yet: the rate shows while it is sending", id="no-rate")
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
        with self._store.read() as session:
            mailing = session.get(Mailing, self._mailing_id)
            details = read_details(session, mailing) if mailing else None
            history = audit.history(session, self._mailing_id, limit=HISTORY_ENTRIES)
        self.app.call_from_thread(self._show, details, history)

    def _show(self, details: MailingDetails | None, history: list[AuditEntry]) -> None:
        self.query_one("#history", Static).update(
            entries_text(history, self._zone, with_mailing=False, zone_named=False)
            or "no changes recorded"
        )
        if details is None:
            self.query_one("#counters", Static).update("This mailing no longer exists.")
            return
        self.title = title(details)
        self.query_one("#counters", Static).update(counters_text(details, self._zone))
        samples = self._rates.samples(self._mailing_id)
        # with no samples a sparkline would draw a full bar: say so instead
        sparkline = self.query_one("#rate", Sparkline)
        sparkline.display = bool(samples)
        self.query_one("#rate-axis").display = bool(samples)
        self.query_one("#no-rate", Static).display = not samples
        sparkline.data = samples
        sending = details.state == State.SENDING
        self.query_one("#rate-heading", Label).update(rate_heading(samples, sending))
        since = time_ago(self._rates.span(self._mailing_id))
        self.query_one("#rate-since", Label).update(since)
        self.query_one("#errors", Static).update(errors_text(details))


class RateHistory:
    """Send-rate samples per mailing, with when each was taken, for the sparkline and its
    time axis (the dashboard feeds it at every refresh)."""

    def __init__(self, points: int = SPARK_POINTS):
        self._points = points
        self._history: dict[int, deque[tuple[datetime, float]]] = {}

    def add(self, mailing_id: int, rate: float, at: datetime) -> None:
        self._history.setdefault(mailing_id, deque(maxlen=self._points)).append((at, rate))

    def samples(self, mailing_id: int) -> list[float]:
        return [rate for _, rate in self._history.get(mailing_id, ())]

    def span(self, mailing_id: int) -> float:
        """Seconds from the first sample kept to the last."""
        history = self._history.get(mailing_id)
        return (history[-1][0] - history[0][0]).total_seconds() if history else 0.0
