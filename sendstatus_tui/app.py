"""The Send Status app: it holds the store, the engine and the workers; the dashboard
screen (screens/dashboard.py) draws the panes and takes the keys.

Reads run in a worker thread and come back as PanesRead messages; operators' actions come
from the screens as messages and run as database transactions off the UI loop (the engine,
here or in another process, reacts to them).
"""

import asyncio
import contextlib
import gc
import signal
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from textual import on, work
from textual.app import App
from textual.message import Message
from textual.worker import get_current_worker

from .actions import bindings
from .core import audit, lifecycle
from .core.drafts import DraftRefused, create_mailing, draft_from_files
from .core.models import utc_now
from .core.recipients import MAX_REPORTED_ERRORS, RecipientsRefused
from .core.states import Area
from .core.store import Store
from .core.when import zone
from .engine.thread import EngineThread
from .errors import SendStatusError
from .screens.confirm import ConfirmModal
from .screens.dashboard import DashboardScreen, DashboardSettings
from .screens.help import HelpScreen
from .screens.new_mailing import NewMailingForm, NewMailingRequest
from .views.engine_fact import EngineFact, EngineWhere
from .views.snapshot import Snapshot, SpeedMeter, read_snapshot

# between two attempts to start an engine here (each reads the lease, and a failing one
# must not be retried twice a second)
ENGINE_START_PAUSE_SECONDS = 5.0


class PanesRead(Message):
    """A refresh's snapshot; ``sequence`` orders them, so an older one is never drawn
    after a newer one."""

    def __init__(self, snapshot: Snapshot, sequence: int):
        super().__init__()
        self.snapshot, self.sequence = snapshot, sequence


class SendStatusApp(App):
    TITLE = "Send Status"
    CSS_PATH = ["screens/dashboard.tcss", "screens/modals.tcss", "screens/detail.tcss"]
    BINDINGS = bindings("app")

    def __init__(
        self,
        store: Store,
        *,
        zone_name: str | None = None,
        clock: Callable[[], datetime] = utc_now,
        blink: bool = True,
        refresh_seconds: float = 0.5,
        engine: EngineThread | None = None,
        start_engine: Callable[[], EngineThread | None] | None = None,
        demo: bool = False,
    ):
        """``start_engine``: starts an engine here if no engine holds the lease (None: a
        pure client, ``--no-engine``); called whenever the panes show that none does."""
        super().__init__()
        audit.operating_from(audit.Source.DASHBOARD)  # the trail says who acted from here
        self.store = store
        self.zone = zone(zone_name)
        self.clock = clock
        self.refresh_seconds = refresh_seconds
        self.engine = engine
        self._start_engine = start_engine
        self._engine_asked_at = -ENGINE_START_PAUSE_SECONDS
        self.demo = demo
        self.dashboard = DashboardScreen(
            store, DashboardSettings(zone_name, clock, blink, refresh_seconds)
        )
        self.speeds = SpeedMeter()
        self.snapshot: Snapshot | None = None
        self._refreshes_asked = 0
        self._refresh_drawn = 0
        self._frozen = False

    def get_default_screen(self) -> DashboardScreen:
        return self.dashboard

    def on_mount(self) -> None:
        self.sub_title = "loading…"
        self.refresh_panes()
        if self.refresh_seconds:
            self.set_interval(self.refresh_seconds, self.refresh_panes)
        # an SSH connection that drops is a quit: the engine records its batch in flight
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.exit)

    # --- refreshing the panes -----------------------------------------------------------

    def refresh_panes(self) -> None:
        self._refreshes_asked += 1
        self._read_panes(self._refreshes_asked)

    @work(thread=True, exclusive=True, group="refresh")
    def _read_panes(self, sequence: int) -> None:
        snapshot = read_snapshot(self.store, self.zone, self.clock(), self.speeds)
        if not get_current_worker().is_cancelled:
            self.post_message(PanesRead(snapshot, sequence))

    def on_panes_read(self, message: PanesRead) -> None:
        if message.sequence < self._refresh_drawn:
            return  # a newer snapshot is already on screen
        self._refresh_drawn = message.sequence
        self.snapshot = message.snapshot
        self.dashboard.show_snapshot(message.snapshot)
        self.sub_title = self.engine_fact.text()
        self._start_engine_if_none(message.snapshot)
        if not self._frozen:
            # the widgets and a thousand rows live as long as the app: out of the cyclic
            # collector's sight, full collections (which stop every thread, the engine's
            # too) take microseconds instead of a tenth of a second
            self._frozen = True
            self.call_after_refresh(gc.freeze)

    @property
    def engine_fact(self) -> EngineFact:
        """Where the engine runs and what it sends through, for the header."""
        holder = self.snapshot.engine_holder if self.snapshot else None
        here = self.engine if self.engine is not None and self.engine.alive else None
        if here is not None:
            where = EngineWhere.HERE if holder == here.engine.holder else EngineWhere.STARTING
        else:
            where = EngineWhere.ELSEWHERE if holder else EngineWhere.NONE
        relay = here.relay if here is not None else None
        return EngineFact(where, holder, relay, self_starting=self._start_engine is not None)

    def _start_engine_if_none(self, snapshot: Snapshot) -> None:
        """The engine that held the lease stopped (or this one failed): one starts here,
        unless this dashboard is a pure client."""
        if self._start_engine is None or snapshot.engine_holder:
            return
        if self.engine is not None and self.engine.alive:
            return
        if time.monotonic() - self._engine_asked_at < ENGINE_START_PAUSE_SECONDS:
            return
        self._engine_asked_at = time.monotonic()
        self._start_engine_here()

    @work(thread=True, exclusive=True, group="engine")
    def _start_engine_here(self) -> None:
        assert self._start_engine is not None
        try:
            engine = self._start_engine()
        except SendStatusError as exc:  # e.g. the stored relay's credentials are unusable
            self.call_from_thread(self.notify, f"cannot start an engine: {exc}", severity="error")
            return
        if engine is not None:
            self.engine = engine
            self.call_from_thread(
                self.notify, f"No engine was running: started one here (relay {engine.relay})"
            )

    # --- what the screens ask for -------------------------------------------------------

    @on(DashboardScreen.Operation)
    def _operation_asked(self, asked: DashboardScreen.Operation) -> None:
        self._operate(asked.done, asked.operation, asked.mailing_id, *asked.args)

    @work(thread=True, group="actions")
    def _operate(self, done: str, operation: Callable, mailing_id: int, *args) -> None:
        try:
            with self.store.write() as session:
                operation(session, mailing_id, *args)
        except SendStatusError as exc:  # refused, or the database cannot be written
            self.call_from_thread(self.notify, str(exc), severity="error", timeout=6)
        else:
            if done:
                self.call_from_thread(self.notify, done, timeout=3)
        self.call_from_thread(self.refresh_panes)

    @on(NewMailingForm.Submitted)
    def _creation_asked(self, submitted: NewMailingForm.Submitted) -> None:
        self._create_mailing(submitted.form, submitted.request)

    @work(group="actions")
    async def _create_mailing(self, form: NewMailingForm, request: NewMailingRequest) -> None:
        try:
            mailing_id = await asyncio.to_thread(self._create, request)
        except DraftRefused as refusal:
            form.show_error(refusal.field, str(refusal).split(": ", 1)[-1])
            return
        except RecipientsRefused as refusal:
            details = [str(error) for error in refusal.errors[:MAX_REPORTED_ERRORS]]
            form.show_error("recipients", "\n".join([str(refusal), *details]))
            return
        except SendStatusError as exc:  # e.g. the database cannot be written
            self.notify(str(exc), severity="error", timeout=8)
            return
        if form.is_attached:
            form.dismiss(None)
        if request.choice == "schedule":
            self.dashboard.schedule(mailing_id, request.name)
        self.notify(f"{request.name}: created", timeout=3)
        self.refresh_panes()

    def _create(self, request: NewMailingRequest) -> int:
        draft = draft_from_files(
            request.name, request.subject, request.sender, request.text_path, request.html_path
        )
        with self.store.write() as session:
            mailing, _ = create_mailing(session, draft, Path(request.recipients_path))
            assert mailing.id is not None  # flushed by create_mailing
            if request.choice == "now":
                lifecycle.send_now(session, mailing.id)
            return mailing.id

    # --- the actions that work on every screen (actions.py, scope "app") ----------------

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

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
