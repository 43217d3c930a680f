"""The Send Status app: it holds the store, the engine and the workers; the dashboard
screen (screens/dashboard.py) draws the panes and takes the keys.

Reads run in a worker thread and come back as PanesRead messages; operators' actions come
from the screens as messages and run as database transactions off the UI loop (the engine,
here or in another process, reacts to them).
"""

import asyncio
import contextlib
import dataclasses
import gc
import os
import signal
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import platformdirs
from sqlmodel import Session
from textual import on
from textual.app import App
from textual.content import Content
from textual.message import Message
from textual.worker import get_current_worker

from sendstatus_tui.core.importing.drafts import (
    DraftRefused,
    MailingDraft,
    add_mailing,
    check_draft,
    draft_from_files,
    draft_problems,
)
from sendstatus_tui.core.importing.recipients import (
    ImportReport,
    RecipientsRefused,
    reported_rows,
)
from sendstatus_tui.core.model import audit, lifecycle, settings
from sendstatus_tui.core.model.models import Mailing, utc_now
from sendstatus_tui.core.model.states import Area
from sendstatus_tui.core.model.waiting import WaitingKind
from sendstatus_tui.core.model.when import to_zone, zone, zone_label
from sendstatus_tui.core.store.store import Store, StoreError
from sendstatus_tui.engine.send_test import RelayForTests
from sendstatus_tui.engine.thread import EngineThread
from sendstatus_tui.errors import SendStatusError
from sendstatus_tui.tui.actions import bindings
from sendstatus_tui.tui.screens.confirm import ConfirmModal
from sendstatus_tui.tui.screens.dashboard import DashboardScreen
from sendstatus_tui.tui.screens.help import HelpScreen
from sendstatus_tui.tui.screens.mailing_actions import DashboardSettings, Operation
from sendstatus_tui.tui.screens.new_mailing import NewMailingForm, NewMailingRequest
from sendstatus_tui.tui.screens.preview import PreviewScreen
from sendstatus_tui.tui.screens.schedule import Scheduled, schedule_in_window
from sendstatus_tui.tui.trouble import (
    Trouble,
    guarded,
    kind_of,
    report,
    report_from_thread,
    tell,
    tell_from_thread,
)
from sendstatus_tui.views.activity import AuditWatch
from sendstatus_tui.views.cells import quoted
from sendstatus_tui.views.engine_fact import EngineFact, EngineWhere
from sendstatus_tui.views.header import (
    RelayState,
    database_text,
    header_parts,
    header_status,
    locked_text,
    relay_text,
    speed_text,
)
from sendstatus_tui.views.preview import Preview, draft_preview
from sendstatus_tui.views.snapshot import Snapshot, StallWatch, StartWatch, read_snapshot

# a write waiting longer waits for a lock, not for a busy moment: the header says so
WRITES_LOCKED_AFTER = timedelta(seconds=5)
HEADER_MARGINS = 18  # the header's icon (8) and its clock's space (10)
TITLE_SEPARATOR = " — "


CREATED_AS = {
    "now": "sending now",
    "schedule": "scheduled",
    "sequential": "in the sequential queue",
    "later": "parked in Sends to schedule",
}


def form_problems(request: NewMailingRequest) -> dict[str, str]:
    """What is wrong with a new mailing's fields, all at once (files are read)."""
    problems = draft_problems(
        request.name,
        request.subject,
        request.sender,
        request.text_path,
        request.html_path,
        request.unsubscribe_url,
        request.unsubscribe_mailto,
    )
    if request.recipients_path is None:
        problems["recipients"] = "a CSV file with an email column is needed"
    elif not request.recipients_path.is_file():
        problems["recipients"] = f"{request.recipients_path}: no such file"
    return problems


# invalid rows of a CSV the form shows (the command line, MAX_REPORTED_ERRORS)
FORM_REPORTED_ROWS = 3


def _draft_of(request: NewMailingRequest) -> MailingDraft:
    """The form's mailing, its bodies read from their files."""
    draft = draft_from_files(
        request.name, request.subject, request.sender, request.text_path, request.html_path
    )
    return dataclasses.replace(
        draft,
        unsubscribe_url=request.unsubscribe_url,
        unsubscribe_mailto=request.unsubscribe_mailto,
    )


def in_form_words(refusal: RecipientsRefused) -> str:
    """The import's refusal, with the form's checkbox where it names the command's option."""
    return str(refusal).replace("--skip-invalid", "“Skip invalid rows”")


def screenshot_directory() -> Path:
    """The downloads directory if there is one, else the working directory if it can be
    written, else the temporary directory."""
    downloads = Path(platformdirs.user_downloads_dir())
    if downloads.is_dir():
        return downloads
    here = Path.cwd()
    return here if os.access(here, os.W_OK) else Path(tempfile.gettempdir())


# between two attempts to start an engine here (each reads the lease, and a failing one
# must not be retried twice a second)
ENGINE_START_PAUSE_SECONDS = 5.0


class PanesRead(Message):
    """A refresh's snapshot, or why there is none: ``trouble``, the database could not be
    read (both None: the read failed otherwise, and was reported). ``sequence`` orders
    them, so an older one is never drawn after a newer one."""

    def __init__(self, snapshot: Snapshot | None, sequence: int, trouble: StoreError | None = None):
        super().__init__()
        self.snapshot, self.sequence, self.trouble = snapshot, sequence, trouble


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
        test_relay: RelayForTests | None = None,
    ):
        """``start_engine``: starts an engine here if no engine holds the lease (None: a
        pure client, ``--no-engine``); called whenever the panes show that none does."""
        super().__init__()
        audit.operating_from(audit.Source.DASHBOARD)  # the trail says who acted from here
        # and in which session: this dashboard tells the changes of every other one
        self.audit_watch = AuditWatch(session=audit.new_session())
        self.store = store
        self.test_relay = test_relay  # where test sends go (None: the dashboard sends none)
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
        self.dashboard.own_session = self.audit_watch.session
        self.stalls = StallWatch()
        self.starts = StartWatch()
        self.snapshot: Snapshot | None = None
        self._refreshes_asked = 0
        self._refresh_drawn = 0
        self._frozen = False
        # what ended the dashboard before it could show anything: the command says it
        self.failure: SendStatusError | None = None
        # when this dashboard first failed to read the database (None: it reads)
        self.database_down_since: datetime | None = None
        self._reading = False  # a refresh's read is under way
        self._read_again = False  # and another was asked for meanwhile

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
        """Reads the panes again, one read at a time: asked while one is under way (a
        database slow to answer), the next starts when it ends."""
        if self._reading:
            self._read_again = True
            return
        self._reading = True
        self._refreshes_asked += 1
        self._read_panes(self._refreshes_asked)

    @guarded(thread=True, group="refresh")
    def _read_panes(self, sequence: int) -> None:
        snapshot, trouble = None, None
        try:
            snapshot = read_snapshot(
                self.store, self.zone, self.clock(), self.stalls, self.starts, self.audit_watch
            )
        except StoreError as exc:  # the database cannot be reached: said in the header
            trouble = exc
        finally:  # also after an unforeseen error (guarded reports it): the next read may go
            if not get_current_worker().is_cancelled:  # else the app is closing
                self.post_message(PanesRead(snapshot, sequence, trouble))

    def on_panes_read(self, message: PanesRead) -> None:
        self._reading = False
        if self._read_again:
            self._read_again = False
            self.refresh_panes()
        if message.sequence < self._refresh_drawn:
            return  # a newer snapshot is already on screen
        self._refresh_drawn = message.sequence
        if message.snapshot is None and message.trouble is not None and self.snapshot is None:
            # nothing could be read at all (a damaged file, no server): the dashboard ends
            # and the command says why in one line, as `ls` would; after the screen's first
            # refresh (an exit while it mounts leaves its coroutines unawaited)
            self.failure = message.trouble
            self.call_after_refresh(self.exit, return_code=1)
            return
        if message.snapshot is None:
            if message.trouble is not None:
                self._database_unreachable(message.trouble)
            return
        if self.database_down_since is not None:
            since = to_zone(self.database_down_since, self.zone)
            self.database_down_since = None
            tell(self, Trouble.DONE, f"the database answers again (unreachable from {since:%H:%M})")
        try:
            self._draw(message.snapshot)
        except Exception as exc:  # noqa: BLE001  a bug in drawing: told, the next one may do
            report(self, exc)

    def _database_unreachable(self, trouble: StoreError) -> None:
        """The header says since when; the first failure is told in full."""
        if self.database_down_since is None:
            self.database_down_since = self.clock()
            report(self, trouble)
        if self.snapshot is not None:
            self._show_status(self.snapshot)
        else:
            self.sub_title = database_text(self.database_down_since, self.zone) or ""

    def _draw(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.dashboard.show_snapshot(snapshot)
        self._show_status(snapshot)
        self._start_engine_if_none(snapshot)
        if not self._frozen:
            # the widgets and a thousand rows live as long as the app: out of the cyclic
            # collector's sight, full collections (which stop every thread, the engine's
            # too) take microseconds instead of a tenth of a second
            self._frozen = True
            self.call_after_refresh(gc.freeze)

    def _show_status(self, snapshot: Snapshot) -> None:
        """The header: the relay's state, the engines, the zone of every time shown, the
        speed; as much as fits, what matters least left out first (views/header.py)."""
        sending = snapshot.rows[Area.NOW]
        # what the engine last noted is stale while none runs: the relay's state is unknown
        waiting = [row for row in sending if row.waiting_kind == WaitingKind.RELAY_DOWN]
        trouble, since = None, None
        if waiting and snapshot.engine_holder:
            trouble = waiting[0].waiting_reason or ""
            # since the engine first found it down (stored), not since this dashboard saw it
            since = min((row.waiting_since for row in waiting if row.waiting_since), default=None)
        # and "relay ok" is claimed only while an engine uses it
        in_use = bool(sending) and snapshot.engine_holder is not None
        relay = RelayState(trouble, since, in_use, snapshot.relays_down)
        speed = sum(row.speed or 0 for row in sending)
        locked = locked_text(self._writes_waiting_since(), self.zone)
        database = database_text(self.database_down_since, self.zone) or locked
        parts = header_parts(
            # while the database cannot be read, the relay and the speed are not known
            relay_text(relay, self.zone) if database is None else None,
            # and while it cannot be written, the lease lapses: "engine starting" would mislead
            None if locked else self.engine_fact,
            zone_label(self.zone),
            speed_text(speed, snapshot.rate) if database is None else None,
            database,
        )
        # the header's icon and clock space; the title goes first when it leaves no room
        room = self.size.width - HEADER_MARGINS
        with_title = header_status(parts, room - len(TITLE_SEPARATOR) - len(self.TITLE))
        status = header_status(parts, room)
        self.title = self.TITLE if with_title == status else ""
        self.sub_title = status

    def format_title(self, title: str, sub_title: str) -> Content:
        # the status is what the operator reads: not dimmed, as Textual's default would
        parts = [part for part in (title, sub_title) if part]
        return Content(TITLE_SEPARATOR.join(parts))

    def _writes_waiting_since(self) -> datetime | None:
        """Since when this dashboard's engine has waited to write, if for long."""
        if self.engine is None or not self.engine.alive:
            return None
        since = self.engine.engine.db.oldest_pending_write()
        if since is None or utc_now() - since < WRITES_LOCKED_AFTER:
            return None
        return since

    @property
    def engine_fact(self) -> EngineFact:
        """Where the engine runs and what it sends through, for the header."""
        holder = self.snapshot.engine_holder if self.snapshot else None
        running = self.snapshot.engines_running if self.snapshot else 0
        here = self.engine if self.engine is not None and self.engine.alive else None
        if here is not None:
            where = EngineWhere.HERE if holder == here.engine.holder else EngineWhere.STARTING
        else:
            where = EngineWhere.ELSEWHERE if holder else EngineWhere.NONE
        relay = here.relay if here is not None else None
        return EngineFact(
            where, holder, relay, self_starting=self._start_engine is not None, running=running
        )

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

    @guarded(thread=True, exclusive=True, group="engine")
    def _start_engine_here(self) -> None:
        assert self._start_engine is not None
        try:
            engine = self._start_engine()
        except SendStatusError as exc:  # e.g. the stored relay's credentials are unusable
            tell_from_thread(self, kind_of(exc), f"cannot start an engine: {exc}")
            return
        if engine is not None:
            self.engine = engine
            self.call_from_thread(
                self.notify, f"No engine was running: started one here (relay {engine.relay})"
            )

    # --- what the screens ask for -------------------------------------------------------

    @on(Operation)
    def _operation_asked(self, asked: Operation) -> None:
        self._operate(asked.done, asked.after, asked.operation, asked.mailing_id, *asked.args)

    @guarded(thread=True, group="actions")
    def _operate(
        self,
        done: str,
        after: Callable[[], None] | None,
        operation: Callable,
        mailing_id: int,
        *args,
    ) -> None:
        try:
            with self.store.write(ahead=True) as session:  # before the engine's bookkeeping
                operation(session, mailing_id, *args)
        except SendStatusError as exc:  # refused, or the database cannot be written
            report_from_thread(self, exc)
        else:
            if done:
                tell_from_thread(self, Trouble.DONE, done)
        finally:
            with contextlib.suppress(RuntimeError):  # the app closed meanwhile
                self.call_from_thread(self.refresh_panes)
                if after is not None:  # the screen that asked reads again too (H)
                    self.call_from_thread(after)

    @on(NewMailingForm.Submitted)
    def _creation_asked(self, submitted: NewMailingForm.Submitted) -> None:
        self._create_mailing(submitted.form, submitted.request)

    @guarded(group="actions")
    async def _create_mailing(self, form: NewMailingForm, request: NewMailingRequest) -> None:
        """Creates exactly what the operator confirmed: every field's problem is shown at
        once, and a time to schedule at (or a sequential warning) is asked before anything
        is written, so that Escape there leaves nothing behind."""
        problems = await asyncio.to_thread(form_problems, request)
        if problems:
            form.show_errors(problems)
            return
        if not await self._previewed(form, request):
            return
        scheduled: Scheduled | None = None
        if request.choice == "schedule":
            default_window = await asyncio.to_thread(self._default_window)
            scheduled = await self.push_screen_wait(
                self.dashboard.schedule_modal(request.name, window=default_window)
            )
            declined = scheduled is None
        elif request.choice == "sequential":
            declined = not await self.dashboard.confirm_sequential(request.name)
        else:
            declined = False
        if declined:  # no time chosen, or the queue's warning declined: nothing created
            form.show_errors({})
            return
        try:
            mailing_id, imported = await asyncio.to_thread(self._create, request, scheduled)
        except DraftRefused as refusal:
            form.show_error(refusal.field, str(refusal).split(": ", 1)[-1])
            return
        except RecipientsRefused as refusal:
            details = reported_rows(refusal.errors, FORM_REPORTED_ROWS)
            form.show_error("recipients", "\n".join([in_form_words(refusal), *details]))
            return
        except SendStatusError as exc:  # a time now past, or the database cannot be written
            form.show_errors({})
            report(self, exc)
            return
        if form.is_attached:
            form.dismiss(None)
        self.notify(
            f"{quoted(request.name)} created with {imported.counted()}"
            f" ({CREATED_AS[request.choice]})",
            timeout=4,
        )
        if imported.skipped:  # as `mailing add --skip-invalid` warns
            rows = len(imported.skipped)
            skipped = reported_rows(imported.skipped, FORM_REPORTED_ROWS)
            tell(
                self,
                Trouble.REFUSED,
                f"skipped {rows:,} invalid row{'' if rows == 1 else 's'}: " + "; ".join(skipped),
            )
        self.dashboard.follow_next(mailing_id)
        self.refresh_panes()

    async def _previewed(self, form: NewMailingForm, request: NewMailingRequest) -> bool:
        """Shows the message as recipient N will get it, before anything is created; True
        when the operator goes on to create it. A placeholder the CSV has no column for,
        or a CSV that cannot be read, is shown at its field instead."""
        recipients = request.recipients_path
        assert recipients is not None  # form_problems made sure
        store = self.store

        def load(number: int) -> Preview:
            draft = check_draft(_draft_of(request))
            with store.read() as session:
                return draft_preview(session, draft, recipients, number)

        try:
            first = await asyncio.to_thread(load, 1)
        except DraftRefused as refusal:
            form.show_error(refusal.field, str(refusal).split(": ", 1)[-1])
            return False
        except RecipientsRefused as refusal:
            form.show_error("recipients", str(refusal))
            return False
        except SendStatusError as exc:  # the database cannot be read
            form.show_errors({})
            report(self, exc)
            return False
        title = f"Preview of {quoted(request.name)}: not created yet"
        preview = PreviewScreen(title, load, confirm_label="Create", first=first)
        if not await self.push_screen_wait(preview):
            form.show_errors({})  # back to the form, nothing created
            return False
        return True

    def _default_window(self) -> str | None:
        """The window a new mailing gets (``config set window``)."""
        with self.store.read() as session:
            return settings.read(session, "window")

    def _create(
        self, request: NewMailingRequest, scheduled: Scheduled | None
    ) -> tuple[int, ImportReport]:
        assert request.recipients_path is not None  # form_problems made sure
        draft = _draft_of(request)

        def plan(session: Session, mailing: Mailing) -> None:
            # in the transaction that shows the imported mailing: it appears planned
            assert mailing.id is not None  # flushed by add_mailing
            if request.choice == "now":
                lifecycle.send_now(session, mailing.id)
            elif request.choice == "schedule":
                assert scheduled is not None
                schedule_in_window(
                    session, mailing.id, scheduled, self.clock(), zone_name=zone_label(self.zone)
                )
            elif request.choice == "sequential":
                lifecycle.enqueue(session, mailing.id)

        # in short transactions: the engine in this process goes on sending meanwhile
        mailing, imported, _ = add_mailing(
            self.store,
            draft,
            request.recipients_path,
            skip_invalid=request.skip_invalid,
            then=plan,
        )
        assert mailing.id is not None  # flushed by add_mailing
        return mailing.id, imported

    def deliver_screenshot(
        self, filename: str | None = None, path: str | None = None, time_format: str | None = None
    ) -> str | None:
        """The palette's Screenshot: saved where a directory exists (Textual's default,
        ~/Downloads, is missing on most servers), and the operator told where."""
        try:
            saved = self.save_screenshot(filename, path or str(screenshot_directory()), time_format)
        except OSError as exc:
            self.notify(f"cannot save the screenshot: {exc}", severity="error", timeout=8)
            return None
        self.notify(f"screenshot saved: {saved}", timeout=8)
        return None

    # --- the actions that work on every screen (actions.py, scope "app") ----------------

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    @guarded(group="actions")
    async def action_quit_dashboard(self) -> None:
        if not self.demo and self.engine is not None and self._sending_here():
            confirmed = await self.push_screen_wait(
                ConfirmModal(
                    "Quit and pause sending?",
                    "This dashboard runs the engine. Mailings in Sending now pause until an"
                    " engine runs again (another dashboard, or `sendstatus engine`).",
                    "Quit",
                    safe=True,
                )
            )
            if not confirmed:
                return
        self.exit()

    def _sending_here(self) -> bool:
        return bool(self.snapshot and self.snapshot.rows[Area.NOW])
