"""The dashboard driven from the keyboard (Textual's Pilot) against a real SQLite file.

Every test presses keys, answers modals, and then checks the DATABASE, not just the screen.
The clock is fixed, blinking is off and there is no refresh timer: a test refreshes the panes
itself (``refresh``) after it changed the database behind the dashboard's back.
"""

import asyncio
import functools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select
from textual.widgets import Button, Input, Markdown, OptionList, Static
from textual.widgets._footer import FooterKey

from sendstatus_tui.app import SendStatusApp
from sendstatus_tui.core import deliveries, lifecycle
from sendstatus_tui.core.drafts import MailingDraft, create_mailing
from sendstatus_tui.core.models import Mailing
from sendstatus_tui.core.states import Area, Mode, State
from sendstatus_tui.core.store import Store
from sendstatus_tui.screens.actions import ActionsMenu
from sendstatus_tui.screens.confirm import ConfirmModal
from sendstatus_tui.screens.detail import DetailScreen
from sendstatus_tui.screens.help import HelpScreen
from sendstatus_tui.screens.new_mailing import NewMailingForm
from sendstatus_tui.screens.schedule import ScheduleModal
from sendstatus_tui.widgets.mailing_table import MailingTable

# Monday 4 March 2030, 09:00 UTC = 10:00 in Rome (CET, UTC+1: summer time starts 31 March)
FIXED_NOW = datetime(2030, 3, 4, 9, 0, tzinfo=UTC)
ZONE = "Europe/Rome"
SIZE = (120, 40)
SCENARIO_TIMEOUT = 60  # seconds: a hang fails the test instead of freezing the run


# --- the database, written directly (as another operator or the engine would) ---------------


class Mailings:
    """Mailings in the test database, created and changed outside the dashboard."""

    def __init__(self, store: Store, directory: Path):
        self.store = store
        self.directory = directory
        self._files = 0

    def add(self, name: str, recipients: int = 3) -> int:
        """A parked ("decided later") mailing with ``recipients`` addresses; returns its id."""
        self._files += 1
        csv = self.directory / f"recipients-{self._files}.csv"
        rows = "".join(f"person{i}@example.com,Person {i}\n" for i in range(recipients))
        csv.write_text("email,first_name\n" + rows, encoding="utf-8")
        draft = MailingDraft(
            name=name,
            subject="Hello {first_name}",
            sender="Shop <news@shop.example.com>",
            text_body="Hi {first_name}",
        )
        with self.store.write() as session:
            mailing, _ = create_mailing(session, draft, csv)
            return mailing.id

    def do(self, operation, *args):
        with self.store.write() as session:
            return operation(session, *args)

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

    def deliver(self, mailing_id: int, sent: int, failed: int, now: datetime = FIXED_NOW) -> None:
        """Records outcomes as the engine would: ``sent`` accepted, then ``failed`` refused."""
        with self.store.write() as session:
            claimed = deliveries.claim(session, mailing_id, sent + failed, now, claimant="test")
            outcomes = [deliveries.Outcome(r, deliveries.SENT) for r in claimed[:sent]] + [
                deliveries.Outcome(r, deliveries.FAILED, "550 5.1.1 no such user")
                for r in claimed[sent:]
            ]
            deliveries.record(session, mailing_id, outcomes, claimant="test")

    def sending(self, name: str, recipients: int = 3, mode: str = "now") -> int:
        """A mailing in Sending now, past starting up (started at FIXED_NOW - 1h)."""
        mailing_id = self.add(name, recipients)
        start = lifecycle.send_now if mode == "now" else lifecycle.enqueue
        self.do(start, mailing_id, FIXED_NOW - timedelta(hours=1))
        self.do(lifecycle.mark_prepared, mailing_id, FIXED_NOW - timedelta(hours=1))
        return mailing_id


@pytest.fixture
def db(sqlite_url, tmp_path):
    store = Store(sqlite_url)
    yield Mailings(store, tmp_path)
    store.dispose()


# --- driving the dashboard ------------------------------------------------------------------


def dashboard(store: Store, **settings) -> SendStatusApp:
    """The dashboard as a test wants it: fixed clock, no blinking, no refresh timer."""
    return SendStatusApp(
        store,
        zone_name=ZONE,
        clock=lambda: FIXED_NOW,
        blink=False,
        refresh_seconds=0,
        **settings,
    )


def scenario(test):
    """Runs an ``async def`` test on its own event loop (no pytest asyncio plugin needed)."""

    @functools.wraps(test)
    def run(*args, **kwargs):
        asyncio.run(asyncio.wait_for(test(*args, **kwargs), SCENARIO_TIMEOUT))

    return run


async def settle(pilot) -> None:
    """Waits until the actions and refreshes in flight are done and drawn.

    Not for use while an action waits for a modal's answer (that worker is still running).
    """
    app = pilot.app
    while True:
        await app.workers.wait_for_complete()
        await pilot.pause()
        if not app.workers:  # an action's worker starts a refresh worker as it ends
            return


async def refresh(pilot) -> None:
    """The next refresh of the panes, as the timer would trigger it."""
    pilot.app.refresh_panes()
    await settle(pilot)


async def wait_until(pilot, condition, what: str = "condition", timeout: float = 10) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.01)


async def wait_for_screen(pilot, screen_type):
    await wait_until(
        pilot, lambda: isinstance(pilot.app.screen, screen_type), f"a {screen_type.__name__}"
    )
    await pilot.pause()
    return pilot.app.screen


def table_of(app: SendStatusApp, mailing_id: int) -> MailingTable:
    for area in (Area.NOW, Area.SCHEDULED, Area.STANDBY):
        if mailing_id in app.table(area).mailing_ids:
            return app.table(area)
    raise AssertionError(f"mailing {mailing_id} is in no pane")


async def select_mailing(pilot, mailing_id: int) -> MailingTable:
    """Focuses the pane showing ``mailing_id`` and puts the cursor on it."""
    table = table_of(pilot.app, mailing_id)
    table.focus()
    table.move_cursor(row=table.mailing_ids.index(mailing_id), animate=False)
    await pilot.pause()
    assert pilot.app.selected().mailing_id == mailing_id
    return table


async def choose(pilot, option_id: str) -> None:
    """Picks an entry of the open Actions menu with the arrow keys and enter."""
    options = pilot.app.screen.query_one(OptionList)
    ids = [options.get_option_at_index(i).id for i in range(options.option_count)]
    await pilot.press(*["down"] * (ids.index(option_id) - (options.highlighted or 0)), "enter")


def menu_entries(app) -> list[str]:
    options = app.screen.query_one(OptionList)
    return [options.get_option_at_index(i).id for i in range(options.option_count)]


def footer_actions(app) -> set[str]:
    return {key.action for key in app.screen.query(FooterKey)}


def text_of(widget: Static) -> str:
    return str(widget.render())


# --- keys that act on the selected mailing --------------------------------------------------


@scenario
async def test_s_sends_a_parked_mailing_now(db):
    parked = db.add("Spring sale")
    app = dashboard(db.store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        # keyboard only: tab to Sends to schedule (the only row there is selected)
        await pilot.press("tab", "tab")
        assert app.selected().mailing_id == parked
        await pilot.press("s")
        await settle(pilot)
        assert db.state(parked) == (State.STARTING, Mode.IMMEDIATE, None)
        assert app.table(Area.NOW).mailing_ids == [parked]
        assert app.table(Area.STANDBY).mailing_ids == []
        cells = app.table(Area.NOW).row_for(parked).cells
        assert cells[3] == "starting up"


@scenario
async def test_t_schedules_at_the_typed_local_time(db):
    parked = db.add("Spring sale")
    app = dashboard(db.store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select_mailing(pilot, parked)
        await pilot.press("t")
        modal = await wait_for_screen(pilot, ScheduleModal)
        assert modal.query_one("#schedule", Button).disabled  # nothing typed yet
        await pilot.press(*"2030-03-04 15:30")
        await pilot.pause()
        assert not modal.query_one("#schedule", Button).disabled
        assert "starts 2030-03-04 15:30" in text_of(modal.query_one("#feedback", Static))
        await pilot.press("enter")
        await settle(pilot)
        mailing = db.get(parked)
        # 15:30 in Rome is 14:30 UTC
        assert (mailing.state, mailing.mode) == (State.SCHEDULED, Mode.AT)
        assert mailing.scheduled_at == datetime(2030, 3, 4, 14, 30, tzinfo=UTC)
        row = app.table(Area.SCHEDULED).row_for(parked)
        assert row.cells[3:5] == ("2030-03-04 15:30", "in 5h 30m")


@scenario
async def test_t_refuses_a_past_time_and_keeps_schedule_disabled(db):
    parked = db.add("Spring sale")
    app = dashboard(db.store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select_mailing(pilot, parked)
        await pilot.press("t")
        modal = await wait_for_screen(pilot, ScheduleModal)
        await pilot.press(*"2030-03-04 09:59")  # one minute ago, in Rome
        await pilot.pause()
        feedback = modal.query_one("#feedback", Static)
        assert text_of(feedback) == (
            "2030-03-04 09:59 is in the past (it is now 2030-03-04 10:00); use Send now instead"
        )
        assert feedback.has_class("error")
        assert modal.query_one("#schedule", Button).disabled
        await pilot.press("enter")  # refused: the modal stays
        await pilot.pause()
        assert app.screen is modal
        # not a date at all
        await pilot.press(*["backspace"] * 16, *"tomorrow")
        await pilot.pause()
        assert "not a date and time" in text_of(feedback)
        assert modal.query_one("#schedule", Button).disabled
        await pilot.press("escape")
        await settle(pilot)
        assert db.state(parked) == (State.STANDBY, None, None)
        assert db.get(parked).scheduled_at is None


@scenario
async def test_e_with_nothing_ahead_starts_at_once(db):
    parked = db.add("Newsletter EN")
    db.sending("Flash sale")  # immediate: not in the sequential queue's way
    app = dashboard(db.store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select_mailing(pilot, parked)
        await pilot.press("e")
        await settle(pilot)
        assert not isinstance(app.screen, ConfirmModal)  # no warning: nothing ahead
        assert db.state(parked) == (State.STARTING, Mode.SEQUENTIAL, None)
        assert parked in app.table(Area.NOW).mailing_ids


async def _press_e_and_get_warning(db, pilot, new_id) -> ConfirmModal:
    await select_mailing(pilot, new_id)
    await pilot.press("e")
    return await wait_for_screen(pilot, ConfirmModal)


@scenario
async def test_e_warns_about_the_sequential_mailings_ahead_and_confirm_queues(db):
    head = db.sending("Newsletter EN", mode="sequential")
    waiting = db.add("Newsletter DE")
    db.do(lifecycle.enqueue, waiting)
    new = db.add("Newsletter FR")
    app = dashboard(db.store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        modal = await _press_e_and_get_warning(db, pilot, new)
        message = text_of(modal.query_one("#message", Static))
        assert text_of(modal.query_one("#title")) == "Other sequential sendings are in progress"
        assert "Newsletter EN (sending), Newsletter DE (queued)." in message
        assert "Newsletter FR will be number 2 in the sequential queue" in message
        assert db.state(new) == (State.STANDBY, None, None)  # nothing until confirmed
        await pilot.press("enter")  # the confirm button has the focus
        await wait_until(pilot, lambda: db.get(new).state == State.QUEUED, "queued")
        await settle(pilot)
        assert db.state(new) == (State.QUEUED, Mode.SEQUENTIAL, 2)
        assert db.queue() == [waiting, new]
        assert db.get(head).state == State.SENDING
        assert app.table(Area.SCHEDULED).mailing_ids == [waiting, new]


@scenario
async def test_e_warning_cancelled_changes_nothing(db):
    db.sending("Newsletter EN", mode="sequential")
    new = db.add("Newsletter FR")
    app = dashboard(db.store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        modal = await _press_e_and_get_warning(db, pilot, new)
        assert "Newsletter FR will be number 1" in text_of(modal.query_one("#message", Static))
        await pilot.click("#cancel")
        await settle(pilot)
        assert not isinstance(app.screen, ConfirmModal)
        assert db.state(new) == (State.STANDBY, None, None)
        assert db.get(new).state_reason == "decided later"
        assert db.queue() == []


@pytest.mark.parametrize("answer", ["confirm", "cancel"])
@scenario
async def test_x_stops_after_confirmation(db, answer):
    sending = db.sending("Flash sale", recipients=4)
    db.deliver(sending, sent=1, failed=0)
    app = dashboard(db.store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select_mailing(pilot, sending)
        await pilot.press("x")
        modal = await wait_for_screen(pilot, ConfirmModal)
        assert text_of(modal.query_one("#title")) == "Stop Flash sale?"
        assert "Messages already accepted stay sent" in text_of(modal.query_one("#message"))
        await pilot.press("enter" if answer == "confirm" else "escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, ConfirmModal), "the answer")
        await settle(pilot)
        mailing = db.get(sending)
        if answer == "confirm":
            assert (mailing.state, mailing.state_reason) == (
                State.STANDBY,
                "stopped by an operator",
            )
            assert app.table(Area.STANDBY).mailing_ids == [sending]
            assert app.table(Area.STANDBY).row_for(sending).cells[2:4] == (
                "stopped by an operator",
                "1",
            )
        else:
            assert (mailing.state, mailing.mode) == (State.SENDING, Mode.IMMEDIATE)
            assert app.table(Area.NOW).mailing_ids == [sending]
        assert (mailing.sent, mailing.remaining) == (1, 3)


@scenario
async def test_x_stops_a_scheduled_mailing(db):
    timed = db.add("Weekly digest")
    db.do(lifecycle.schedule_at, timed, FIXED_NOW + timedelta(hours=2), FIXED_NOW)
    app = dashboard(db.store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select_mailing(pilot, timed)
        await pilot.press("x")
        modal = await wait_for_screen(pilot, ConfirmModal)
        assert text_of(modal.query_one("#message")) == "It goes back to Sends to schedule."
        await pilot.press("y")
        await wait_until(pilot, lambda: db.get(timed).state == State.STANDBY, "stopped")
        await settle(pilot)
        assert db.get(timed).scheduled_at is None


# --- the sequential queue -------------------------------------------------------------------


def _queue_of_four(db) -> tuple[int, list[int]]:
    head = db.sending("Newsletter EN", mode="sequential")
    queued = [db.add(name) for name in ("DE", "FR", "IT", "ES")]
    for mailing_id in queued:
        db.do(lifecycle.enqueue, mailing_id)
    assert db.queue() == queued
    return head, queued


@scenario
async def test_shift_arrows_and_k_j_move_a_queued_mailing_and_the_cursor_follows(db):
    _, (de, fr, it, es) = _queue_of_four(db)
    app = dashboard(db.store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table = await select_mailing(pilot, it)
        steps = [
            ("shift+up", [de, it, fr, es]),
            ("K", [it, de, fr, es]),
            ("K", [it, de, fr, es]),  # already at the top: stays
            ("shift+down", [de, it, fr, es]),
            ("J", [de, fr, it, es]),
            ("J", [de, fr, es, it]),
            ("shift+down", [de, fr, es, it]),  # already at the bottom: stays
        ]
        for key, expected in steps:
            await pilot.press(key)
            await settle(pilot)
            assert db.queue() == expected, key
            assert table.mailing_ids == expected, key
            assert app.selected().mailing_id == it, key
            assert table.cursor_row == expected.index(it), key
            cells = table.row_for(it).cells
            assert cells[3] == f"queue #{expected.index(it) + 1}", key


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("move_top", lambda de, fr, it, es: [it, de, fr, es]),
        ("move_bottom", lambda de, fr, it, es: [de, fr, es, it]),
        ("move_up", lambda de, fr, it, es: [de, it, fr, es]),
        ("move_down", lambda de, fr, it, es: [de, fr, es, it]),
    ],
)
@scenario
async def test_actions_menu_moves_in_the_queue(db, option, expected):
    _, (de, fr, it, es) = _queue_of_four(db)
    app = dashboard(db.store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table = await select_mailing(pilot, it)
        await pilot.press("enter")
        await wait_for_screen(pilot, ActionsMenu)
        await choose(pilot, option)
        await settle(pilot)
        order = expected(de, fr, it, es)
        assert db.queue() == order
        assert table.mailing_ids == order
        assert app.selected().mailing_id == it


@scenario
async def test_move_keys_do_nothing_to_a_mailing_that_is_not_queued(db):
    parked = db.add("Spring sale")
    _, queued = _queue_of_four(db)
    app = dashboard(db.store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select_mailing(pilot, parked)
        assert app.check_action("move_up", ()) is False
        await pilot.press("K", "shift+up", "J", "shift+down")
        await settle(pilot)
        assert db.queue() == queued
        assert db.state(parked) == (State.STANDBY, None, None)


# --- the Actions menu -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "entries"),
    [
        ("standby", ["send_now", "schedule", "enqueue", "delete", "details"]),
        ("scheduled", ["send_now", "schedule", "enqueue", "stop", "details"]),
        (
            "queued",
            [
                "send_now",
                "schedule",
                "move_up",
                "move_down",
                "move_top",
                "move_bottom",
                "stop",
                "details",
            ],
        ),
        ("starting", ["stop", "details"]),
        ("sending", ["stop", "details"]),
    ],
)
@scenario
async def test_enter_opens_the_actions_menu_with_what_the_state_allows(db, state, entries):
    mailing_id = db.add("Spring sale")
    if state == "scheduled":
        db.do(lifecycle.schedule_at, mailing_id, FIXED_NOW + timedelta(hours=1), FIXED_NOW)
    elif state == "queued":
        db.sending("Newsletter EN", mode="sequential")
        db.do(lifecycle.enqueue, mailing_id)
    elif state == "starting":
        db.do(lifecycle.send_now, mailing_id)
    elif state == "sending":
        db.do(lifecycle.send_now, mailing_id)
        db.do(lifecycle.mark_prepared, mailing_id, FIXED_NOW)
    assert db.get(mailing_id).state == state
    app = dashboard(db.store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select_mailing(pilot, mailing_id)
        await pilot.press("enter")
        menu = await wait_for_screen(pilot, ActionsMenu)
        assert menu_entries(app) == entries
        assert f"Actions: Spring sale ({state})" in text_of(menu.query_one("Label"))
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ActionsMenu)
        assert db.get(mailing_id).state == state


@scenario
async def test_actions_menu_send_now_and_schedule_act_on_the_selected_mailing(db):
    first, second = db.add("First"), db.add("Second")
    app = dashboard(db.store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select_mailing(pilot, first)
        await pilot.press("enter")
        await wait_for_screen(pilot, ActionsMenu)
        await choose(pilot, "send_now")
        await settle(pilot)
        assert db.state(first) == (State.STARTING, Mode.IMMEDIATE, None)

        await select_mailing(pilot, second)
        await pilot.press("enter")
        await wait_for_screen(pilot, ActionsMenu)
        await choose(pilot, "schedule")
        modal = await wait_for_screen(pilot, ScheduleModal)
        assert text_of(modal.query_one("#title")) == "Schedule Second"
        await pilot.press(*"2030-03-05 08:00", "enter")
        await settle(pilot)
        assert db.get(second).scheduled_at == datetime(2030, 3, 5, 7, 0, tzinfo=UTC)


@scenario
async def test_reschedule_a_scheduled_mailing(db):
    timed = db.add("Weekly digest")
    db.do(lifecycle.schedule_at, timed, FIXED_NOW + timedelta(hours=2), FIXED_NOW)
    app = dashboard(db.store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select_mailing(pilot, timed)
        await pilot.press("t")
        await wait_for_screen(pilot, ScheduleModal)
        await pilot.press(*"2030-03-10T06:00+00:00", "enter")
        await settle(pilot)
        assert db.state(timed) == (State.SCHEDULED, Mode.AT, None)
        assert db.get(timed).scheduled_at == datetime(2030, 3, 10, 6, 0, tzinfo=UTC)
        assert app.table(Area.SCHEDULED).row_for(timed).cells[4] == "in 5d 21h"


# --- delete ---------------------------------------------------------------------------------


@scenario
async def test_delete_a_parked_mailing_after_confirmation(db):
    keep, doomed = db.add("Keep me"), db.add("Old draft")
    app = dashboard(db.store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select_mailing(pilot, doomed)
        await pilot.press("delete")
        modal = await wait_for_screen(pilot, ConfirmModal)
        assert text_of(modal.query_one("#title")) == "Delete Old draft?"
        await pilot.press("escape")  # first: cancel
        await wait_until(pilot, lambda: not isinstance(app.screen, ConfirmModal), "cancel")
        await settle(pilot)
        assert db.names() == {"Keep me", "Old draft"}

        await pilot.press("delete")
        await wait_for_screen(pilot, ConfirmModal)
        await pilot.click("#confirm")
        await wait_until(pilot, lambda: db.get(doomed) is None, "deletion")
        await settle(pilot)
        assert db.names() == {"Keep me"}
        assert app.table(Area.STANDBY).mailing_ids == [keep]


@scenario
async def test_delete_is_refused_for_a_mailing_that_is_not_parked(db):
    sending = db.sending("Flash sale")
    app = dashboard(db.store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select_mailing(pilot, sending)
        assert app.check_action("delete", ()) is False
        await pilot.press("delete")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmModal)
        assert db.get(sending).state == State.SENDING


@scenario
async def test_actions_menu_delete(db):
    doomed = db.add("Old draft")
    app = dashboard(db.store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select_mailing(pilot, doomed)
        await pilot.press("enter")
        await wait_for_screen(pilot, ActionsMenu)
        await choose(pilot, "delete")
        await wait_for_screen(pilot, ConfirmModal)
        await pilot.press("y")
        await wait_until(pilot, lambda: db.get(doomed) is None, "deletion")
        await settle(pilot)
        assert app.table(Area.STANDBY).mailing_ids == []


# --- the new-mailing form -------------------------------------------------------------------


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    """Real files for the new-mailing form."""
    (tmp_path / "body.txt").write_text("Hello {first_name}\n", encoding="utf-8")
    (tmp_path / "body.html").write_text("<p>Hello {first_name}</p>\n", encoding="utf-8")
    (tmp_path / "people.csv").write_text(
        "email,first_name\nanna@example.com,Anna\nben@example.com,Ben\n", encoding="utf-8"
    )
    (tmp_path / "bad.csv").write_text(
        "email,first_name\nanna@example.com,Anna\nnot-an-address,Ben\nalso bad,Chloé\n",
        encoding="utf-8",
    )
    return {p.stem: p for p in tmp_path.iterdir() if p.suffix in (".txt", ".html", ".csv")}


async def _fill_form(pilot, **values: str) -> NewMailingForm:
    await pilot.press("n")
    form = await wait_for_screen(pilot, NewMailingForm)
    assert form.focused is form.query_one("#field-name", Input)
    await pilot.press(*values.pop("name"))  # typed, like an operator
    for key, value in values.items():  # long paths: set directly
        form.query_one(f"#field-{key}", Input).value = value
    await pilot.pause()
    return form


async def _press_button(pilot, form: NewMailingForm, button_id: str) -> None:
    button = form.query_one(f"#{button_id}", Button)
    button.focus()
    await pilot.pause()
    await pilot.press("enter")


def _form_values(files, **changes) -> dict[str, str]:
    values = {
        "name": "March newsletter",
        "subject": "News for {first_name}",
        "from": "Shop <news@shop.example.com>",
        "text": str(files["body"].with_suffix(".txt")),
        "html": str(files["body"].with_suffix(".html")),
        "recipients": str(files["people"]),
    }
    values.update(changes)
    return values


@scenario
async def test_new_mailing_send_now_creates_a_starting_mailing(db, files):
    app = dashboard(db.store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        form = await _fill_form(pilot, **_form_values(files))
        await _press_button(pilot, form, "now")
        await wait_until(pilot, lambda: not isinstance(app.screen, NewMailingForm), "form closed")
        await settle(pilot)
        with db.store.read() as session:
            (mailing,) = session.exec(select(Mailing)).all()
        assert (mailing.name, mailing.state, mailing.mode) == (
            "March newsletter",
            State.STARTING,
            Mode.IMMEDIATE,
        )
        assert (mailing.subject, mailing.sender) == (
            "News for {first_name}",
            "Shop <news@shop.example.com>",
        )
        assert mailing.text_body == "Hello {first_name}\n"
        assert mailing.html_body == "<p>Hello {first_name}</p>\n"
        assert mailing.total == 2
        assert app.table(Area.NOW).mailing_ids == [mailing.id]


@scenario
async def test_new_mailing_decide_later_parks_it(db, files):
    app = dashboard(db.store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        form = await _fill_form(pilot, **_form_values(files, html=""))
        await _press_button(pilot, form, "later")
        await wait_until(pilot, lambda: not isinstance(app.screen, NewMailingForm), "form closed")
        await settle(pilot)
        with db.store.read() as session:
            (mailing,) = session.exec(select(Mailing)).all()
        assert (mailing.state, mailing.state_reason) == (State.STANDBY, "decided later")
        assert mailing.html_body is None
        assert app.table(Area.STANDBY).mailing_ids == [mailing.id]


@scenario
async def test_new_mailing_schedule_opens_the_schedule_modal(db, files):
    app = dashboard(db.store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        form = await _fill_form(pilot, **_form_values(files))
        await _press_button(pilot, form, "schedule")
        modal = await wait_for_screen(pilot, ScheduleModal)
        assert text_of(modal.query_one("#title")) == "Schedule March newsletter"
        await pilot.press(*"2030-03-04 12:00", "enter")
        await settle(pilot)
        with db.store.read() as session:
            (mailing,) = session.exec(select(Mailing)).all()
        assert (mailing.state, mailing.mode) == (State.SCHEDULED, Mode.AT)
        assert mailing.scheduled_at == datetime(2030, 3, 4, 11, 0, tzinfo=UTC)


@scenario
async def test_new_mailing_bad_sender_is_shown_at_from_and_nothing_is_created(db, files):
    app = dashboard(db.store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        form = await _fill_form(pilot, **_form_values(files, **{"from": "Shop <news@>"}))
        await _press_button(pilot, form, "now")
        await wait_until(pilot, lambda: text_of(form.query_one("#error-from", Static)), "the error")
        await settle(pilot)
        assert app.screen is form  # still open, to be corrected
        assert "news@" in text_of(form.query_one("#error-from", Static))
        assert form.focused is form.query_one("#field-from", Input)
        for other in ("name", "subject", "text", "html", "recipients"):
            assert text_of(form.query_one(f"#error-{other}", Static)) == "", other
        assert db.names() == set()

        # corrected: created, and the error is gone with the form
        form.query_one("#field-from", Input).value = "news@shop.example.com"
        await _press_button(pilot, form, "later")
        await wait_until(pilot, lambda: db.names() == {"March newsletter"}, "creation")
        await settle(pilot)


@scenario
async def test_new_mailing_csv_with_invalid_rows_is_shown_at_recipients(db, files):
    app = dashboard(db.store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        form = await _fill_form(pilot, **_form_values(files, recipients=str(files["bad"])))
        await _press_button(pilot, form, "now")
        error = form.query_one("#error-recipients", Static)
        await wait_until(pilot, lambda: text_of(error), "the error")
        await settle(pilot)
        assert app.screen is form
        message = text_of(error)
        assert "2 invalid rows, nothing imported" in message
        assert "line 3:" in message and "line 4:" in message
        assert form.focused is form.query_one("#field-recipients", Input)
        assert db.names() == set()


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"text": "/nonexistent/body.txt"}, "text", "no such file"),
        ({"text": "", "html": ""}, "text", "a text body, an HTML body or both"),
        ({"recipients": ""}, "recipients", "a CSV file with an email column"),
        ({"subject": "Hi {nickname}"}, "subject", "{nickname} is not a column"),
        ({"recipients": "/nonexistent/people.csv"}, "recipients", "no such file"),
    ],
)
@scenario
async def test_new_mailing_other_refusals_are_shown_at_their_field(
    db, files, changes, field, words
):
    app = dashboard(db.store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        form = await _fill_form(pilot, **_form_values(files, **changes))
        await _press_button(pilot, form, "now")
        error = form.query_one(f"#error-{field}", Static)
        await wait_until(pilot, lambda: text_of(error), "the error")
        await settle(pilot)
        assert words in text_of(error)
        assert db.names() == set()
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, NewMailingForm)
        assert db.names() == set()


@scenario
async def test_new_mailing_pressed_twice_creates_it_once(db, files):
    app = dashboard(db.store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        form = await _fill_form(pilot, **_form_values(files))
        form.query_one("#now", Button).focus()
        await pilot.pause()
        # a big CSV, or the engine holding the write lock: creating takes a while
        with db.store.write():
            await pilot.press("enter")
            # past the button's 0.2 s debounce, nothing seems to happen: press again
            await pilot.pause(0.5)
            assert app.screen is form  # still creating
            await pilot.press("enter")
            await pilot.pause(0.1)
        await wait_until(
            pilot, lambda: not app.workers or not app.is_running, "the creations", timeout=20
        )
        await pilot.pause()
        with db.store.read() as session:
            created = session.exec(select(Mailing)).all()
        assert [(m.name, m.state) for m in created] == [("March newsletter", State.STARTING)]
        assert app.is_running


# --- details, help, filter, quit ------------------------------------------------------------


@scenario
async def test_d_shows_the_counters(db):
    sending = db.sending("Flash sale", recipients=10)
    db.deliver(sending, sent=6, failed=1)
    app = dashboard(db.store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select_mailing(pilot, sending)
        await pilot.press("d")
        screen = await wait_for_screen(pilot, DetailScreen)
        await settle(pilot)
        counters = text_of(screen.query_one("#counters", Static))
        assert "State        sending" in counters
        assert "Mode         immediate" in counters
        assert "Started 2030-03-04 09:00" in counters  # 08:00 UTC, in Rome
        for line in (
            "Recipients   10",
            "Sent         6",
            "Failed       1",
            "Remaining    3",
        ):
            assert line in counters
        errors = text_of(screen.query_one("#errors", Static))
        assert errors == "person6@example.com: 550 5.1.1 no such user"
        assert screen.title == f"Mailing {sending}: Flash sale"
        # the dashboard's keys do not act on the mailing while details are shown
        await pilot.press("x", "s")
        await pilot.pause()
        assert isinstance(app.screen, DetailScreen)
        assert db.get(sending).state == State.SENDING
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is app.screen_stack[0]
        assert app.selected().mailing_id == sending


@scenario
async def test_main_screen_keys_on_the_detail_screen_leave_the_main_screen_alone(db):
    """'/' and '?' on the detail screen: '/' must not open the filter behind it."""
    parked = db.add("Spring sale")
    app = dashboard(db.store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select_mailing(pilot, parked)
        await pilot.press("d")
        await wait_for_screen(pilot, DetailScreen)
        await settle(pilot)
        await pilot.press("slash", "n", "e")
        await pilot.pause()
        assert isinstance(app.screen, DetailScreen)
        await pilot.press("question_mark")
        await wait_for_screen(pilot, HelpScreen)
        await pilot.press("escape")
        await wait_for_screen(pilot, DetailScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is app.screen_stack[0]
        assert not app.query_one("#filter", Input).has_class("visible")
        assert isinstance(app.focused, MailingTable)
        await pilot.press("s")  # must send it, not type "s" into a filter
        await settle(pilot)
        assert db.get(parked).state == State.STARTING


@scenario
async def test_question_mark_shows_help(db):
    app = dashboard(db.store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        screen = await wait_for_screen(pilot, HelpScreen)
        assert "| shift+↑ / K | move up in the sequential queue |" in screen.query_one(
            Markdown
        ).source.replace("\\", "")
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("question_mark")
        await wait_for_screen(pilot, HelpScreen)
        await pilot.press("q")  # closes help; does not quit
        await pilot.pause()
        assert app.is_running and not isinstance(app.screen, HelpScreen)


@scenario
async def test_slash_filters_by_name(db):
    sale = db.add("Spring SALE")
    news = db.add("Newsletter")
    sold = db.sending("Sale reminder")
    timed = db.add("Weekly digest")
    db.do(lifecycle.schedule_at, timed, FIXED_NOW + timedelta(hours=1), FIXED_NOW)
    app = dashboard(db.store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("slash")
        await pilot.pause()
        field = app.query_one("#filter", Input)
        assert field.has_class("visible") and app.focused is field
        await pilot.press(*"sale")
        await pilot.pause()
        assert app.table(Area.STANDBY).mailing_ids == [sale]
        assert app.table(Area.NOW).mailing_ids == [sold]
        assert app.table(Area.SCHEDULED).mailing_ids == []
        assert str(app.query_one("#title-standby").render()) == "Sends to schedule (1)"
        # the filter holds across refreshes
        await refresh(pilot)
        assert app.table(Area.STANDBY).mailing_ids == [sale]
        await pilot.press("enter")  # back to the panes, still filtered
        await pilot.pause()
        assert isinstance(app.focused, MailingTable)
        assert app.table(Area.STANDBY).mailing_ids == [sale]
        await pilot.press("slash", "escape")  # escape clears it
        await pilot.pause()
        assert not field.has_class("visible")
        assert app.table(Area.STANDBY).mailing_ids == [sale, news]
        assert app.table(Area.SCHEDULED).mailing_ids == [timed]


@scenario
async def test_q_quits_without_an_engine(db):
    db.sending("Flash sale")  # something is sending, but no engine runs in this dashboard
    app = dashboard(db.store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("q")
        await wait_until(pilot, lambda: not app.is_running, "exit")
    assert app.return_code == 0


# --- live panes -----------------------------------------------------------------------------


@scenario
async def test_cursor_stays_on_its_mailing_when_rows_come_and_go(db):
    def timed(name: str, hours: int) -> int:
        mailing_id = db.add(name)
        db.do(lifecycle.schedule_at, mailing_id, FIXED_NOW + timedelta(hours=hours), FIXED_NOW)
        return mailing_id

    b, c, d = timed("B", 2), timed("C", 3), timed("D", 4)
    app = dashboard(db.store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table = await select_mailing(pilot, c)
        assert table.cursor_row == 1
        a = timed("A", 1)  # sorts before the selection
        await refresh(pilot)
        assert table.mailing_ids == [a, b, c, d]
        assert (app.selected().mailing_id, table.cursor_row) == (c, 2)
        db.do(lifecycle.stop, b)  # leaves the pane, before the selection
        db.do(lifecycle.stop, a)
        await refresh(pilot)
        assert table.mailing_ids == [c, d]
        assert (app.selected().mailing_id, table.cursor_row) == (c, 0)
        db.do(lifecycle.schedule_at, c, FIXED_NOW + timedelta(hours=5), FIXED_NOW)  # moves down
        e = timed("E", 6)  # after it
        await refresh(pilot)
        assert table.mailing_ids == [d, c, e]
        assert (app.selected().mailing_id, table.cursor_row) == (c, 1)
        # changes in another pane leave this one's cursor alone
        db.sending("Flash sale")
        await refresh(pilot)
        assert app.selected().mailing_id == c


@scenario
async def test_counters_update_in_place_on_refresh(db):
    sending = db.sending("Flash sale", recipients=10)
    app = dashboard(db.store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table = await select_mailing(pilot, sending)
        assert table.row_for(sending).cells[4:7] == ("░░░░░░░░░░   0%", "0/10", "0")
        db.deliver(sending, sent=4, failed=1)
        await refresh(pilot)
        assert table.row_for(sending).cells[4:7] == ("█████░░░░░  50%", "4/10", "1")
        assert str(table.get_cell(str(sending), "Sent")) == "4/10"
        second = db.add("Second")
        db.do(lifecycle.send_now, second)
        await refresh(pilot)
        assert table.mailing_ids == [sending, second]
        assert str(table.get_cell(str(second), "Start date")) == "starting up"
        db.do(lifecycle.mark_prepared, second, FIXED_NOW)
        await refresh(pilot)
        assert str(table.get_cell(str(second), "Start date")) == "2030-03-04 10:00"
        assert app.selected().mailing_id == sending


@scenario
async def test_an_action_refused_by_the_database_is_reported_not_crashed(db):
    """The selection is stale: another operator sent it meanwhile."""
    parked = db.add("Spring sale")
    app = dashboard(db.store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select_mailing(pilot, parked)
        db.do(lifecycle.send_now, parked)  # behind the dashboard's back, no refresh yet
        await pilot.press("e")
        await settle(pilot)
        assert app.is_running
        assert db.state(parked) == (State.STARTING, Mode.IMMEDIATE, None)
        assert any("cannot enqueue" in str(n.message) for n in app._notifications)
        assert app.table(Area.NOW).mailing_ids == [parked]  # and the panes caught up


# --- the footer offers what applies ---------------------------------------------------------


@scenario
async def test_footer_offers_only_the_keys_that_apply(db):
    parked = db.add("Spring sale")
    sending = db.sending("Flash sale")
    _, (de, *_rest) = _queue_of_four(db)
    app = dashboard(db.store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        always = {"new_mailing", "filter", "help", "quit_dashboard"}

        await select_mailing(pilot, parked)
        assert app.check_action("stop", ()) is False
        assert app.check_action("move_up", ()) is False
        assert app.check_action("delete", ()) is True
        assert footer_actions(app) >= always | {"send_now", "schedule", "enqueue", "delete"}
        assert not footer_actions(app) & {"stop", "move_up", "move_down"}

        await select_mailing(pilot, sending)
        await pilot.pause()
        assert app.check_action("stop", ()) is True
        assert app.check_action("send_now", ()) is False
        shown = footer_actions(app)
        assert "stop" in shown and "details" in shown
        assert not shown & {"send_now", "schedule", "enqueue", "delete", "move_up"}

        await select_mailing(pilot, de)
        await pilot.pause()
        shown = footer_actions(app)
        assert {"move_up", "move_down", "stop", "send_now", "schedule"} <= shown
        assert not shown & {"enqueue", "delete"}

        # an empty pane: nothing to act on
        db.do(lifecycle.send_now, parked)
        await refresh(pilot)
        app.table(Area.STANDBY).focus()
        await pilot.pause()
        assert app.selected() is None
        assert app.check_action("details", ()) is False
        assert app.check_action("actions", ()) is False
        shown = footer_actions(app)
        assert not shown & {"send_now", "stop", "details", "delete"}
        assert always <= shown
        await pilot.press("s", "x", "delete", "enter", "d")
        await pilot.pause()
        assert app.screen is app.screen_stack[0]


@scenario
async def test_footer_offers_enter_for_the_actions_menu(db):
    parked = db.add("Spring sale")
    app = dashboard(db.store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select_mailing(pilot, parked)
        await pilot.pause()
        keys = {key.key: key.description for key in app.screen.query(FooterKey)}
        assert keys.get("enter") == "Actions"


# --- two dashboards on one database ---------------------------------------------------------


@scenario
async def test_a_move_in_one_dashboard_shows_in_the_other_after_its_refresh(db, sqlite_url):
    _, (de, fr, it, es) = _queue_of_four(db)
    other_store = Store(sqlite_url)  # a second operator: its own connections
    try:
        first, second = dashboard(db.store), dashboard(other_store)
        async with first.run_test(size=SIZE) as one, second.run_test(size=SIZE) as two:
            await settle(one)
            await settle(two)
            await select_mailing(one, es)
            theirs = await select_mailing(two, fr)
            await one.press("K", "K")  # ES to second place
            await settle(one)
            assert db.queue() == [de, es, fr, it]
            assert theirs.mailing_ids == [de, fr, it, es]  # not refreshed yet
            await refresh(two)
            assert theirs.mailing_ids == [de, es, fr, it]
            assert second.selected().mailing_id == fr  # their cursor stays on their mailing
            assert theirs.row_for(fr).cells[3] == "queue #3"
            # and back: the second operator moves FR to the top
            await two.press("enter")
            await wait_for_screen(two, ActionsMenu)
            await choose(two, "move_top")
            await settle(two)
            await refresh(one)
            assert first.table(Area.SCHEDULED).mailing_ids == [fr, de, es, it]
            assert first.selected().mailing_id == es
            assert db.queue() == [fr, de, es, it]
    finally:
        other_store.dispose()


# --- the command palette --------------------------------------------------------------------


@scenario
async def test_command_palette_acts_on_the_selected_mailing(db):
    parked = db.add("Spring sale")
    sending = db.sending("Flash sale")
    app = dashboard(db.store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select_mailing(pilot, sending)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"s")
        await wait_until(pilot, lambda: "Stop" in _palette_hits(app), "the palette's hits")
        # what applies to a sending mailing: Stop, not Send now
        assert "Send now" not in _palette_hits(app)
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is app.screen_stack[0], "the palette closed")
        assert db.get(sending).state == State.SENDING

        await select_mailing(pilot, parked)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"send now")
        await wait_until(pilot, lambda: "Send now" in _palette_hits(app), "the palette's hit")
        await pilot.press("enter")
        await wait_until(pilot, lambda: db.get(parked).state == State.STARTING, "send now")
        await settle(pilot)
        assert db.state(parked) == (State.STARTING, Mode.IMMEDIATE, None)


def _palette_hits(app) -> str:
    from textual.command import CommandList

    try:
        hits = app.screen.query_one(CommandList)
    except Exception:
        return ""
    return " ".join(str(hits.get_option_at_index(i).prompt) for i in range(hits.option_count))
