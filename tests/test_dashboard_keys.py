"""The keys that act on the selected mailing: s, t, e, x and delete, each checked in the
DATABASE after the keys were pressed and the modals answered."""

from datetime import UTC, datetime

import pytest
from textual.widgets import Button, Input, Static

from sendstatus_tui.core.model import lifecycle
from sendstatus_tui.core.model.states import Area, Mode, State
from sendstatus_tui.tui.screens.actions_menu import ActionsMenu
from sendstatus_tui.tui.screens.confirm import ConfirmModal
from sendstatus_tui.tui.screens.schedule import ScheduleModal

from .helpers import (
    choose,
    open_dashboard,
    press_on,
    scenario,
    select_mailing,
    settle,
    text_of,
    until,
    wait_for_screen,
)


@scenario
async def test_s_sends_a_parked_mailing_now(db):
    parked = db.add("Spring sale")
    async with open_dashboard(db.store) as (app, pilot):
        # keyboard only: tab to Sends to schedule (the only row there is selected)
        await pilot.press("tab", "tab")
        assert app.dashboard.selected().mailing_id == parked
        await pilot.press("s")
        await settle(pilot)
        assert db.state(parked) == (State.STARTING, Mode.IMMEDIATE, None)
        assert app.dashboard.table(Area.NOW).mailing_ids == [parked]
        assert app.dashboard.table(Area.STANDBY).mailing_ids == []
        # the highlight followed it to Sending now, where no engine runs to start it
        assert app.dashboard.focused is app.dashboard.table(Area.NOW)
        assert app.dashboard.selected().mailing_id == parked
        cells = app.dashboard.table(Area.NOW).row_for(parked).cells
        assert cells[3] == "paused: no engine"


@scenario
async def test_t_schedules_at_the_typed_local_time(db):
    parked = db.add("Spring sale")
    async with open_dashboard(db.store) as (app, pilot):
        modal = await press_on(pilot, parked, "t", ScheduleModal)
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
        row = app.dashboard.table(Area.SCHEDULED).row_for(parked)
        assert row.cells[3:5] == ("2030-03-04 15:30", "in 5h 30m")


@scenario
async def test_t_refuses_a_past_time_and_keeps_schedule_disabled(db):
    parked = db.add("Spring sale")
    async with open_dashboard(db.store) as (app, pilot):
        modal = await press_on(pilot, parked, "t", ScheduleModal)
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
    async with open_dashboard(db.store) as (app, pilot):
        await select_mailing(pilot, parked)
        await pilot.press("e")
        await settle(pilot)
        assert not isinstance(app.screen, ConfirmModal)  # no warning: nothing ahead
        assert db.state(parked) == (State.STARTING, Mode.SEQUENTIAL, None)
        assert parked in app.dashboard.table(Area.NOW).mailing_ids


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
    async with open_dashboard(db.store) as (app, pilot):
        modal = await _press_e_and_get_warning(db, pilot, new)
        message = text_of(modal.query_one("#message", Static))
        assert text_of(modal.query_one("#title")) == "Other sequential sendings are in progress"
        assert "“Newsletter EN” (sending), “Newsletter DE” (queued)." in message
        assert "“Newsletter FR” will be number 2 in the sequential queue" in message
        assert db.state(new) == (State.STANDBY, None, None)  # nothing until confirmed
        await pilot.press("enter")  # the confirm button has the focus
        await until(pilot, lambda: db.get(new).state == State.QUEUED, "queued")
        await settle(pilot)
        assert db.state(new) == (State.QUEUED, Mode.SEQUENTIAL, 2)
        assert db.queue() == [waiting, new]
        assert db.get(head).state == State.SENDING
        assert app.dashboard.table(Area.SCHEDULED).mailing_ids == [waiting, new]


@scenario
async def test_e_warning_cancelled_changes_nothing(db):
    db.sending("Newsletter EN", mode="sequential")
    new = db.add("Newsletter FR")
    async with open_dashboard(db.store) as (app, pilot):
        modal = await _press_e_and_get_warning(db, pilot, new)
        assert "“Newsletter FR” will be number 1" in text_of(modal.query_one("#message", Static))
        await pilot.click("#cancel")
        await settle(pilot)
        assert not isinstance(app.screen, ConfirmModal)
        assert db.state(new) == (State.STANDBY, None, None)
        assert db.get(new).state_reason == "decided later"
        assert db.queue() == []


# enter answers with the focused button, Cancel: a stray enter stops nothing
@pytest.mark.parametrize("answer", ["y", "escape", "enter"])
@scenario
async def test_x_stops_after_confirmation(db, answer):
    sending = db.sending("Flash sale", recipients=4)
    db.deliver(sending, sent=1, failed=0)
    async with open_dashboard(db.store) as (app, pilot):
        modal = await press_on(pilot, sending, "x", ConfirmModal)
        assert text_of(modal.query_one("#title")) == "Stop “Flash sale”?"
        assert "Messages already accepted stay sent" in text_of(modal.query_one("#message"))
        assert modal.focused is modal.query_one("#cancel")
        await pilot.press(answer)
        await until(pilot, lambda: not isinstance(app.screen, ConfirmModal), "the answer")
        await settle(pilot)
        mailing = db.get(sending)
        if answer == "y":
            assert (mailing.state, mailing.state_reason) == (
                State.STANDBY,
                "stopped by an operator",
            )
            assert app.dashboard.table(Area.STANDBY).mailing_ids == [sending]
            assert app.dashboard.table(Area.STANDBY).row_for(sending).cells[2:4] == (
                "stopped by an operator",
                "1",
            )
        else:
            assert (mailing.state, mailing.mode) == (State.SENDING, Mode.IMMEDIATE)
            assert app.dashboard.table(Area.NOW).mailing_ids == [sending]
        assert (mailing.sent, mailing.remaining) == (1, 3)


@scenario
async def test_x_stops_a_scheduled_mailing(db):
    timed = db.scheduled("Weekly digest")
    async with open_dashboard(db.store) as (app, pilot):
        modal = await press_on(pilot, timed, "x", ConfirmModal)
        assert text_of(modal.query_one("#message")) == "It goes back to Sends to schedule."
        await pilot.press("y")
        await until(pilot, lambda: db.get(timed).state == State.STANDBY, "stopped")
        await settle(pilot)
        assert db.get(timed).scheduled_at is None


@scenario
async def test_delete_a_parked_mailing_after_confirmation(db):
    keep, doomed = db.add("Keep me"), db.add("Old draft")
    async with open_dashboard(db.store) as (app, pilot):
        modal = await press_on(pilot, doomed, "delete", ConfirmModal)
        assert text_of(modal.query_one("#title")) == "Delete “Old draft”?"
        assert modal.focused is modal.query_one("#cancel")
        await pilot.press("escape")  # first: cancel
        await until(pilot, lambda: not isinstance(app.screen, ConfirmModal), "cancel")
        await settle(pilot)
        assert db.names() == {"Keep me", "Old draft"}

        await pilot.press("delete")
        await wait_for_screen(pilot, ConfirmModal)
        await pilot.click("#confirm")
        await until(pilot, lambda: db.get(doomed) is None, "deletion")
        await settle(pilot)
        assert db.names() == {"Keep me"}
        assert app.dashboard.table(Area.STANDBY).mailing_ids == [keep]


@scenario
async def test_delete_is_refused_for_a_mailing_that_is_not_parked(db):
    sending = db.sending("Flash sale")
    async with open_dashboard(db.store) as (app, pilot):
        await select_mailing(pilot, sending)
        assert app.dashboard.check_action("delete", ()) is False
        await pilot.press("delete")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmModal)
        assert db.get(sending).state == State.SENDING


@scenario
async def test_actions_menu_delete(db):
    doomed = db.add("Old draft")
    async with open_dashboard(db.store) as (app, pilot):
        await press_on(pilot, doomed, "enter", ActionsMenu)
        await choose(pilot, "delete")
        await wait_for_screen(pilot, ConfirmModal)
        await pilot.press("y")
        await until(pilot, lambda: db.get(doomed) is None, "deletion")
        await settle(pilot)
        assert app.dashboard.table(Area.STANDBY).mailing_ids == []


@scenario
async def test_t_offers_the_sending_window_prefilled_with_the_mailings_own(db):
    parked = db.add("Spring sale")
    db.do(lifecycle.set_window, parked, "Sat 10:00-13:00 Europe/Rome")
    async with open_dashboard(db.store) as (app, pilot):
        modal = await press_on(pilot, parked, "t", ScheduleModal)
        window = modal.query_one("#window", Input)
        assert window.value == "Sat 10:00-13:00 Europe/Rome"
        await pilot.press(*"2030-03-04 15:30")
        # a window that ends before it starts: said at once, and nothing can be scheduled
        window.value = "Mon-Fri 18:00-09:00"
        await pilot.pause()
        feedback = text_of(modal.query_one("#window-feedback", Static))
        assert "'18:00-09:00' ends before it starts" in feedback
        assert modal.query_one("#schedule", Button).disabled
        # one without a zone is read in the dashboard's
        window.value = "Mon-Fri 09:00-18:00"
        await pilot.pause()
        assert text_of(modal.query_one("#window-feedback", Static)) == (
            "sends only Mon-Fri 09:00-18:00 Europe/Rome"
        )
        await pilot.click("#schedule")
        await settle(pilot)
        mailing = db.get(parked)
        assert (mailing.state, mailing.window) == (
            State.SCHEDULED,
            "Mon-Fri 09:00-18:00 Europe/Rome",
        )
