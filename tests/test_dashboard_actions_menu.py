"""enter: the Actions menu offers what the selected mailing's state allows, and acts."""

from datetime import UTC, datetime, timedelta

import pytest
from textual.widgets import Input, Static

from sendstatus_tui.core.model import lifecycle
from sendstatus_tui.core.model.states import Area, Mode, State
from sendstatus_tui.tui.screens.actions_menu import ActionsMenu
from sendstatus_tui.tui.screens.schedule import ScheduleModal
from sendstatus_tui.views.cells import state_shown

from .helpers import (
    FIXED_NOW,
    choose,
    menu_entries,
    open_dashboard,
    press_on,
    scenario,
    settle,
    text_of,
    wait_for_screen,
)

# offered whatever the state, after what the state allows
FOR_EVERY_STATE = ["test_send", "export_failed", "copy", "preview", "details"]


@pytest.mark.parametrize(
    ("state", "entries"),
    [
        ("standby", ["send_now", "schedule", "enqueue", "delete", "retry", *FOR_EVERY_STATE]),
        ("scheduled", ["send_now", "schedule", "enqueue", "stop", *FOR_EVERY_STATE]),
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
                *FOR_EVERY_STATE,
            ],
        ),
        ("starting", ["stop", *FOR_EVERY_STATE]),
        ("sending", ["stop", *FOR_EVERY_STATE]),
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
    async with open_dashboard(db.store) as (app, pilot):
        menu = await press_on(pilot, mailing_id, "enter", ActionsMenu)
        assert menu_entries(app) == entries
        shown = state_shown(State(state))  # "parked", not the internal "standby"
        assert f"Actions: “Spring sale” ({shown})" in text_of(menu.query_one("Label"))
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ActionsMenu)
        assert db.get(mailing_id).state == state


@scenario
async def test_actions_menu_send_now_and_schedule_act_on_the_selected_mailing(db):
    first, second = db.add("First"), db.add("Second")
    async with open_dashboard(db.store) as (app, pilot):
        await press_on(pilot, first, "enter", ActionsMenu)
        await choose(pilot, "send_now")
        await settle(pilot)
        assert db.state(first) == (State.STARTING, Mode.IMMEDIATE, None)

        await press_on(pilot, second, "enter", ActionsMenu)
        await choose(pilot, "schedule")
        modal = await wait_for_screen(pilot, ScheduleModal)
        assert text_of(modal.query_one("#title")) == "Schedule “Second”"
        await pilot.press(*"2030-03-05 08:00", "enter")
        await settle(pilot)
        assert db.get(second).scheduled_at == datetime(2030, 3, 5, 7, 0, tzinfo=UTC)


@scenario
async def test_reschedule_a_scheduled_mailing(db):
    timed = db.scheduled("Weekly digest")
    async with open_dashboard(db.store) as (app, pilot):
        modal = await press_on(pilot, timed, "t", ScheduleModal)
        # the dialog starts from its time (11:00 UTC, 12:00 in Rome), ready to edit
        field = modal.query_one("#when", Input)
        assert field.value == "2030-03-04 12:00"
        assert "starts 2030-03-04 12:00" in text_of(modal.query_one("#feedback", Static))
        field.value = ""
        await pilot.press(*"2030-03-10T06:00+00:00", "enter")
        await settle(pilot)
        assert db.state(timed) == (State.SCHEDULED, Mode.AT, None)
        assert db.get(timed).scheduled_at == datetime(2030, 3, 10, 6, 0, tzinfo=UTC)
        assert app.dashboard.table(Area.SCHEDULED).row_for(timed).cells[4] == "in 5d 21h"
