"""What the tests share: builders of test data and the drivers of the dashboard.

Fixtures live in conftest.py; plain functions and classes live here, so that no test module
imports another (nor conftest).
"""

import asyncio
import contextlib
import functools
import secrets
import shutil
import sys
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import select
from textual.command import CommandList
from textual.pilot import Pilot
from textual.widgets import OptionList, Static

from sendstatus_tui.core.coordination import deliveries, heartbeats, lease
from sendstatus_tui.core.importing.drafts import MailingDraft, create_mailing
from sendstatus_tui.core.model import lifecycle, send_minutes, verp
from sendstatus_tui.core.model.models import AuditEntry, EngineHeartbeat, Mailing, Secret, utc_now
from sendstatus_tui.core.model.states import State
from sendstatus_tui.core.model.waiting import WaitingKind
from sendstatus_tui.core.store.store import Store
from sendstatus_tui.engine.settings import EngineSettings
from sendstatus_tui.engine.thread import EngineThread
from sendstatus_tui.tui.app import SendStatusApp
from sendstatus_tui.tui.widgets.mailing_table import MailingTable
from sendstatus_tui.views.panes import PANE_AREAS

# --- files and times ------------------------------------------------------------------------


def in_minutes(minutes: int) -> datetime:
    return datetime.now(UTC) + timedelta(minutes=minutes)


def write_file(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


# --- stores ---------------------------------------------------------------------------------


def migrated_store(url: str, sqlite_template: Path) -> Store:
    """The store of a new database. A new SQLite file is a copy of the template, private to
    its owner as Store makes it, with a signing key of its own, as every database the
    migrations make has (0012); a PostgreSQL database is a copy already (db_url)."""
    if not url.startswith("sqlite:///"):
        return Store(url)
    path = Path(url.removeprefix("sqlite:///"))
    shutil.copyfile(sqlite_template, path)
    path.chmod(0o600)
    store = Store(url)
    new_signing_key(store)
    return store


def new_signing_key(store: Store) -> None:
    """A copy of a template gets a signing key of its own, as a database migrated anew."""
    with store.write() as session:
        key = session.get(Secret, verp.KEY_NAME)
        key.value, key.created_at = secrets.token_hex(32), utc_now()


# --- mailings --------------------------------------------------------------------------------


def add_mailing(
    store: Store,
    directory: Path,
    recipients: int | Sequence[str] = 3,
    *,
    name: str = "Mailing",
    sender: str = "Shop <news@shop.example.com>",
    subject: str = "Hello {first_name}",
    text_body: str = "Hi {first_name}",
) -> int:
    """The one builder of test mailings: a parked ("decided later") mailing, imported as
    an operator's would be; returns its id.

    ``recipients``: how many people (person0@example.com, first name "Person 0", ...), or
    the addresses themselves (then the list has no first names: give a ``subject`` and
    ``text_body`` without fields). The recipients file is written in ``directory`` and
    removed once imported."""
    if isinstance(recipients, int):
        csv_text = "email,first_name\n" + "".join(
            f"person{i}@example.com,Person {i}\n" for i in range(recipients)
        )
    else:
        csv_text = "email\n" + "".join(f"{address}\n" for address in recipients)
    csv = write_file(directory, f"recipients-{uuid.uuid4().hex[:12]}.csv", csv_text)
    draft = MailingDraft(name=name, subject=subject, sender=sender, text_body=text_body)
    try:
        with store.write() as session:
            mailing, _ = create_mailing(session, draft, csv)
            return mailing.id
    finally:
        csv.unlink()


# --- the engine ------------------------------------------------------------------------------

# short leases, reconciles and retries: the engine's tests see in a second what takes minutes
FAST = EngineSettings(
    reconcile_seconds=0.1,
    lease_renew_seconds=0.2,
    lease_ttl=timedelta(seconds=1),
    retry_base=timedelta(milliseconds=200),
    max_attempts=3,
    relay_retry_max_seconds=0.5,
)


def stop_engine_thread(thread: EngineThread, timeout: float = 20.0) -> None:
    """Stops an engine hosted on a thread; fails, with every thread's stack, when it does
    not stop within ``timeout`` (its own wait, 60 s, would pass unseen: its log, captured
    with the test, says where its tasks wait) or when it died."""
    thread.stop(timeout=timeout)
    if thread.alive:
        stacks = "\n".join(
            f"thread {ident}:\n{''.join(traceback.format_stack(frame))}"
            for ident, frame in sys._current_frames().items()
        )
        raise AssertionError(
            f"the engine did not stop within {timeout:g} s; the threads:\n{stacks}"
        )
    assert thread.error is None, f"the engine thread died: {thread.error!r}"


def wait_until(predicate, timeout=15.0, what="condition", every=0.02):
    """Polls ``predicate`` every ``every`` seconds until it is true, and returns its value;
    fails with "timed out waiting for ``what``" after ``timeout`` seconds. Tests wait on
    what they need, never for a fixed time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what} ({timeout:g} s)")


def assert_stays(predicate, seconds, what="condition", every=0.02) -> None:
    """Checks that ``predicate`` holds for ``seconds`` (what must *not* happen can only be
    watched for a while); fails as soon as it stops holding."""
    started = time.monotonic()
    while True:
        assert predicate(), f"{what} stopped holding after {time.monotonic() - started:.2f} s"
        if time.monotonic() - started >= seconds:
            return
        time.sleep(every)


def mailing(store, mailing_id) -> Mailing:
    with store.read() as session:
        return session.get(Mailing, mailing_id)


def act(store, operation, *args):
    with store.write() as session:
        return operation(session, *args)


# --- the database, written directly (as another operator or the engine would) ---------------

# Monday 4 March 2030, 09:00 UTC = 10:00 in Rome (CET, UTC+1: summer time starts 31 March)
FIXED_NOW = datetime(2030, 3, 4, 9, 0, tzinfo=UTC)


class Mailings:
    """Mailings in the test database, created and changed outside the dashboard."""

    def __init__(self, store: Store, directory: Path):
        self.store = store
        self.directory = directory
        self._files = 0

    def add(self, name: str, recipients: int = 3) -> int:
        """A parked ("decided later") mailing with ``recipients`` addresses; returns its id."""
        return add_mailing(self.store, self.directory, recipients, name=name)

    def do(self, operation, *args):
        with self.store.write() as session:
            return operation(session, *args)

    def pin_history(self, at: datetime) -> None:
        """Gives every audit entry the time ``at`` (they carry the real clock's)."""
        with self.store.write() as session:
            session.execute(sa.update(AuditEntry).values(at=at))

    def heartbeat(self, beat: heartbeats.Beat, at: datetime) -> None:
        """An engine's heartbeat, written as the engine writes it, then dated ``at`` (it
        carries the real clock's)."""
        with self.store.write() as session:
            heartbeats.beat(session, beat, fresh=True)
        with self.store.write() as session:
            session.execute(
                sa.update(EngineHeartbeat)
                .where(EngineHeartbeat.id == beat.id)
                .values(heartbeat_at=at)
            )

    def get(self, mailing_id: int) -> Mailing | None:
        with self.store.read() as session:
            return session.get(Mailing, mailing_id)

    def state(self, mailing_id: int) -> tuple:
        mailing = self.get(mailing_id)
        return (mailing.state, mailing.mode, mailing.position)

    def names(self) -> set[str]:
        with self.store.read() as session:
            return {m.name for m in session.exec(select(Mailing))}

    def queue(self) -> list[int]:
        """The queued mailings' ids in queue order; checks that positions are 1..n."""
        with self.store.read() as session:
            queued = session.exec(
                select(Mailing).where(Mailing.state == State.QUEUED).order_by(Mailing.position)
            ).all()
        assert [m.position for m in queued] == list(range(1, len(queued) + 1))
        return [m.id for m in queued]

    def deliver(
        self,
        mailing_id: int,
        sent: int,
        failed: int,
        now: datetime = FIXED_NOW,
        recorded_at: datetime | None = None,
    ) -> None:
        """Records outcomes as the engine would: ``sent`` accepted, then ``failed`` refused;
        ``recorded_at``: the time their minute is counted at (else the real clock's)."""
        with self.store.write() as session:
            claimed = deliveries.claim(session, mailing_id, sent + failed, now, claimant="test")
            outcomes = [deliveries.Outcome(r, deliveries.SENT) for r in claimed[:sent]] + [
                deliveries.Outcome(r, deliveries.FAILED, "550 5.1.1 no such user")
                for r in claimed[sent:]
            ]
            deliveries.record(session, mailing_id, outcomes, claimant="test", now=recorded_at)

    def sent_per_minute(self, mailing_id: int, counts: dict[int, int], end: datetime) -> None:
        """Stores ``counts[n]`` messages sent in the minute ``n`` minutes before ``end``'s, as
        the engines count them: recorded at the start of each minute, ``end``'s at ``end``."""
        with self.store.write() as session:
            for ago, count in counts.items():
                minute = send_minutes.minute_of(end) - timedelta(minutes=ago)
                send_minutes.add_outcomes(session, mailing_id, count, 0, minute if ago else end)

    def sending(self, name: str, recipients: int = 3, mode: str = "now") -> int:
        """A mailing in Sending now, past starting up (started at FIXED_NOW - 1h)."""
        mailing_id = self.add(name, recipients)
        start = lifecycle.send_now if mode == "now" else lifecycle.enqueue
        self.do(start, mailing_id, FIXED_NOW - timedelta(hours=1))
        self.do(lifecycle.mark_prepared, mailing_id, FIXED_NOW - timedelta(hours=1))
        return mailing_id

    def relay_down(
        self,
        mailing_id: int,
        retry_in: timedelta = timedelta(seconds=70),
        since: datetime = FIXED_NOW,
    ) -> None:
        """The engine notes on the mailing that it cannot reach the relay, as it does
        (first at ``since``)."""
        reason = "cannot reach smtp://127.0.0.1:2525: [Errno 111] Connection refused"
        self.do(
            deliveries.show_waiting,
            mailing_id,
            WaitingKind.RELAY_DOWN,
            reason,
            FIXED_NOW + retry_in,
            since,
        )

    def engine_elsewhere(self, holder: str = "engine@elsewhere") -> None:
        """An engine in another process holds the lease (for a day after FIXED_NOW)."""
        with self.store.write() as session:
            assert lease.acquire(session, holder, timedelta(days=1), FIXED_NOW).held

    def scheduled(self, name: str, hours: int = 2) -> int:
        """A mailing scheduled ``hours`` after FIXED_NOW."""
        mailing_id = self.add(name)
        self.do(lifecycle.schedule_at, mailing_id, FIXED_NOW + timedelta(hours=hours), FIXED_NOW)
        return mailing_id

    def queue_of_four(self) -> tuple[int, list[int]]:
        """A sequential mailing sending and four queued behind it (DE, FR, IT, ES)."""
        head = self.sending("Newsletter EN", mode="sequential")
        queued = [self.add(name) for name in ("DE", "FR", "IT", "ES")]
        for mailing_id in queued:
            self.do(lifecycle.enqueue, mailing_id)
        assert self.queue() == queued
        return head, queued


def engine_beat(
    host: str,
    pid: int,
    role: str,
    started_at: datetime,
    sending: tuple[int, ...] = (),
    sent: int = 0,
    rate: float = 0.0,
    connections: int = 0,
    reason: str = "",
) -> heartbeats.Beat:
    """A heartbeat as an engine on ``host`` with ``pid`` writes it."""
    holder = f"{host}:{pid}:abcd1234"
    return heartbeats.Beat(
        holder, host, pid, role, started_at, sending, sent, rate, connections, reason
    )


# --- driving the dashboard ------------------------------------------------------------------

ZONE = "Europe/Rome"
SIZE = (120, 40)
SCENARIO_TIMEOUT = 60  # seconds: a hang fails the test instead of freezing the run


def dashboard(store: Store, **settings) -> SendStatusApp:
    """The app as tests and snapshots want it: fixed clock, no blinking, no refresh timer
    (a test refreshes the panes itself after it changed the database)."""
    defaults = dict(zone_name=ZONE, clock=lambda: FIXED_NOW, blink=False, refresh_seconds=0)
    return SendStatusApp(store, **{**defaults, **settings})


@contextlib.asynccontextmanager
async def open_dashboard(
    store: Store, size: tuple[int, int] = SIZE, **settings
) -> AsyncIterator[tuple[SendStatusApp, Pilot]]:
    """The dashboard running headless, its first refresh drawn."""
    app = dashboard(store, **settings)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        yield app, pilot


def scenario(test):
    """Runs an ``async def`` test on its own event loop (no pytest asyncio plugin needed)."""

    async def bounded(*args, **kwargs):
        async with asyncio.timeout(SCENARIO_TIMEOUT):
            await test(*args, **kwargs)

    @functools.wraps(test)
    def run(*args, **kwargs):
        asyncio.run(bounded(*args, **kwargs))

    return run


async def settle(pilot) -> None:
    """Waits until the actions and refreshes in flight are done and drawn.

    Not for use while an action waits for a modal's answer (that worker is still running).
    """
    app = pilot.app
    while True:
        await app.workers.wait_for_complete()
        await pilot.pause()
        await _refreshed(app)  # what waits for the next refresh (the footer's keys) is done
        if not app.workers:  # an action's worker starts a refresh worker as it ends
            # and laid out: a label whose text grew was drawn clipped to its old width
            # when the idle that lays it out came after the screenshot (a busy machine)
            await until(pilot, lambda: _laid_out(app.screen), what="the screen laid out")
            return


async def _refreshed(app) -> None:
    """After the app's next refresh, and the callbacks that waited for it."""
    done = asyncio.Event()
    app.call_after_refresh(done.set)
    await done.wait()


def _laid_out(screen) -> bool:
    """Nothing on ``screen`` waits to be laid out or painted again (Textual's own flags:
    Textual is pinned)."""
    return not any(
        widget._layout_required or widget._repaint_required
        for widget in (screen, *screen.walk_children())
    )


async def refresh(pilot) -> None:
    """The next refresh of the panes, as the timer would trigger it."""
    pilot.app.refresh_panes()
    await settle(pilot)


async def resize(pilot, width: int, height: int) -> None:
    """The terminal resized, and the screen's own resize handlers run (Textual hands a
    resize on to the screen after a short timer of its own: Textual is pinned)."""
    app = pilot.app
    await pilot.resize_terminal(width, height)
    await until(
        pilot,
        lambda: app._resize_event is None and app._resize_timer is None,
        "Textual to hand the resize on to the screen",
    )
    await pilot._wait_for_screen()  # the screen's queue, the resize in it, handled
    await settle(pilot)


async def until(pilot, condition, what: str = "condition", timeout: float = 10) -> None:
    """``wait_until`` inside a running dashboard: polls between the app's own steps."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.01)


async def wait_for_screen(pilot, screen_type):
    await until(
        pilot, lambda: isinstance(pilot.app.screen, screen_type), f"a {screen_type.__name__}"
    )
    await pilot.pause()
    return pilot.app.screen


def table_of(app: SendStatusApp, mailing_id: int) -> MailingTable:
    for area in PANE_AREAS:
        if mailing_id in app.dashboard.table(area).mailing_ids:
            return app.dashboard.table(area)
    raise AssertionError(f"mailing {mailing_id} is in no pane")


async def select_mailing(pilot, mailing_id: int) -> MailingTable:
    """Focuses the pane showing ``mailing_id`` and puts the cursor on it."""
    table = table_of(pilot.app, mailing_id)
    table.focus()
    table.move_cursor(row=table.mailing_ids.index(mailing_id), animate=False)
    await settle(pilot)
    assert pilot.app.dashboard.selected().mailing_id == mailing_id
    return table


async def press_on(pilot, mailing_id: int, key: str, screen_type):
    """Selects ``mailing_id``, presses ``key`` and returns the screen it opens."""
    await select_mailing(pilot, mailing_id)
    await pilot.press(key)
    return await wait_for_screen(pilot, screen_type)


async def choose(pilot, option_id: str) -> None:
    """Picks an entry of the open Actions menu with the arrow keys and enter."""
    options = pilot.app.screen.query_one(OptionList)
    ids = [options.get_option_at_index(i).id for i in range(options.option_count)]
    await pilot.press(*["down"] * (ids.index(option_id) - (options.highlighted or 0)), "enter")


# --- reading the screen ---------------------------------------------------------------------


def menu_entries(app) -> list[str]:
    options = app.screen.query_one(OptionList)
    return [options.get_option_at_index(i).id for i in range(options.option_count)]


def footer_keys(app) -> dict[str, str]:
    """The footer's keys and their labels, as drawn."""
    return {key.key: key.description for key in app.screen.query("FooterKey")}


def footer_actions(app) -> set[str]:
    return {key.action for key in app.screen.query("FooterKey")}


def palette_hits(app) -> str:
    """The command palette's hits, as shown ("" when it is not open)."""
    hits = app.screen.query(CommandList)
    if not hits:
        return ""
    shown = hits.first()
    return " ".join(str(shown.get_option_at_index(i).prompt) for i in range(shown.option_count))


def screen_lines(app) -> list[str]:
    """The screen as the operator reads it: one string per line."""
    return [strip.text for strip in app.screen._compositor.render_strips()]


def notifications(app) -> list[str]:
    return [str(n.message) for n in app._notifications]


def text_of(widget: Static) -> str:
    return str(widget.render())
