"""E: the engines on this database (``sendstatus engines`` on a screen), reread as often as
the panes."""

import contextlib
from collections.abc import Callable
from datetime import datetime, tzinfo

from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Label, Static
from textual.worker import get_current_worker

from sendstatus_tui.core.coordination import heartbeats, relay_breakers
from sendstatus_tui.core.store.store import Store, StoreError
from sendstatus_tui.tui.trouble import guarded
from sendstatus_tui.views.engines import NO_ENGINE, EngineShown, engine_shown


class EnginesScreen(Screen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("q,E", "app.pop_screen", "Back", show=False),
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

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label("", id="engines-title")
        with VerticalScroll(id="engines-scroll"):
            yield Static("", id="engines")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Engines"
        self.load()
        if self._refresh_seconds:
            self.set_interval(self._refresh_seconds, self.load)

    @guarded(thread=True, exclusive=True, group="engines")
    def load(self) -> None:
        with contextlib.suppress(StoreError):  # the dashboard's header says since when
            self._load()

    def _load(self) -> None:
        now = self._clock()
        with self._store.read() as session:
            rows = heartbeats.engines(session)
            lost = heartbeats.lost_ids(rows, now)
            down = relay_breakers.breakers(session)
            shown = [engine_shown(row, now, self._zone, row.id in lost, down) for row in rows]
        if not get_current_worker().is_cancelled:  # the screen closed while it read
            self.app.call_from_thread(self._show, shown)

    def _show(self, engines: list[EngineShown]) -> None:
        heading = f"Engines on this database ({len(engines)}), start times in {self._zone}"
        self.query_one("#engines-title", Label).update(heading)
        self.query_one("#engines", Static).update(engines_text(engines))
        self.query_one("#engines-scroll").focus()


def engines_text(engines: list[EngineShown]) -> RenderableType:
    """Each engine on a line in bold (red when lost), then what it sends and its relay
    connections indented (a long reason wraps under itself), a blank line between two."""
    if not engines:
        return Text(NO_ENGINE)
    parts: list[RenderableType] = []
    for index, engine in enumerate(engines):
        if index:
            parts.append(Text())
        parts.append(Text(engine.who, style="bold red" if engine.lost else "bold"))
        parts.append(Padding(Text(f"{engine.work}\n{engine.relay}"), (0, 0, 0, 2)))
    return Group(*parts)
