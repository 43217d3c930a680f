"""A mailing in detail: counters, a sparkline of the send rate, the last relay errors,
recipients remaining. Refreshed while it is open."""

from collections import deque
from collections.abc import Callable
from datetime import datetime, tzinfo

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Label, Sparkline, Static

from ..core.listing import details
from ..core.models import Mailing
from ..core.store import Store
from ..core.when import format_local

SPARK_POINTS = 60


class DetailScreen(Screen):
    DEFAULT_CSS = """
    DetailScreen #counters { padding: 1 2; }
    DetailScreen Sparkline { height: 4; margin: 0 2; }
    DetailScreen #no-rate { padding: 0 2; color: $text-muted; }
    DetailScreen .heading { text-style: bold; padding: 1 2 0 2; }
    DetailScreen #errors { padding: 0 2; }
    """
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("q", "app.pop_screen", "Back", show=False),
    ]

    def __init__(
        self,
        store: Store,
        mailing_id: int,
        zone: tzinfo,
        rate_samples: Callable[[int], list[float]],
        refresh_seconds: float,
    ):
        super().__init__()
        self._store, self._mailing_id, self._zone = store, mailing_id, zone
        self._rate_samples = rate_samples
        self._refresh_seconds = refresh_seconds

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll():
            yield Static("", id="counters")
            yield Label("Send rate (messages per second, last minutes)", classes="heading")
            yield Sparkline([], id="rate")
            yield Static("no samples yet: the rate shows while it is sending", id="no-rate")
            yield Label("Last errors", classes="heading")
            yield Static("", id="errors")
        yield Footer()

    def on_mount(self) -> None:
        self.load()
        if self._refresh_seconds:
            self.set_interval(self._refresh_seconds, self.load)

    @work(thread=True, exclusive=True, group="detail")
    def load(self) -> None:
        with self._store.read() as session:
            mailing = session.get(Mailing, self._mailing_id)
            info = details(session, mailing) if mailing else None
        self.app.call_from_thread(self._show, info)

    def _show(self, info: dict | None) -> None:
        if info is None:
            self.query_one("#counters", Static).update("This mailing no longer exists.")
            return
        self.title = f"Mailing {info['id']}: {info['name']}"
        self.query_one("#counters", Static).update(_counters(info, self._zone))
        samples = self._rate_samples(self._mailing_id)
        # with no samples a sparkline would draw a full bar: say so instead
        self.query_one("#rate", Sparkline).display = bool(samples)
        self.query_one("#no-rate", Static).display = not samples
        self.query_one("#rate", Sparkline).data = samples
        errors = info["last_errors"]
        self.query_one("#errors", Static).update(
            "\n".join(f"{e['email']}: {e['reply']}" for e in errors) or "none"
        )


def _counters(info: dict, zone: tzinfo) -> str:
    def when(key: str) -> str:
        return format_local(datetime.fromisoformat(info[key]), zone) if info[key] else "—"

    lines = [
        f"State        {info['state']}" + (f" ({info['reason']})" if info["reason"] else ""),
        f"Mode         {info['mode'] or '—'}"
        + (f", position {info['position']}" if info["position"] else ""),
        f"Subject      {info['subject']}",
        f"From         {info['sender']}",
        f"Scheduled    {when('scheduled_at')}    Started {when('started_at')}"
        f"    Finished {when('finished_at')}",
        "",
        f"Recipients   {info['total']:,}",
        f"Sent         {info['sent']:,}",
        f"Failed       {info['failed']:,}",
        f"Deferred     {info['deferred']:,} (retrying)",
        f"Remaining    {info['remaining']:,}",
        f"Resent after an engine stopped mid-send: {info['resent_in_doubt']:,}",
    ]
    return "\n".join(lines)


class RateHistory:
    """Send-rate samples per mailing, for the sparkline (the dashboard feeds it)."""

    def __init__(self, points: int = SPARK_POINTS):
        self._points = points
        self._history: dict[int, deque[float]] = {}

    def add(self, mailing_id: int, rate: float) -> None:
        self._history.setdefault(mailing_id, deque(maxlen=self._points)).append(rate)

    def samples(self, mailing_id: int) -> list[float]:
        return list(self._history.get(mailing_id, ()))
