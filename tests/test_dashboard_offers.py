"""What the dashboard offers is what applies to the selection: the footer, the palette."""

from sendstatus_tui.core.model import lifecycle
from sendstatus_tui.core.model.states import Area, Mode, State

from .helpers import (
    footer_actions,
    footer_keys,
    open_dashboard,
    palette_hits,
    refresh,
    scenario,
    select_mailing,
    settle,
    until,
)


@scenario
async def test_footer_offers_only_the_keys_that_apply(db):
    parked = db.add("Spring sale")
    sending = db.sending("Flash sale")
    _, (de, *_rest) = db.queue_of_four()
    async with open_dashboard(db.store) as (app, pilot):
        always = {"new_mailing", "filter", "help", "quit_dashboard"}

        await select_mailing(pilot, parked)
        assert app.dashboard.check_action("stop", ()) is False
        assert app.dashboard.check_action("move_up", ()) is False
        assert app.dashboard.check_action("delete", ()) is True
        assert footer_actions(app) >= always | {"send_now", "schedule", "enqueue", "delete"}
        assert not footer_actions(app) & {"stop", "move_up", "move_down"}

        await select_mailing(pilot, sending)
        await pilot.pause()
        assert app.dashboard.check_action("stop", ()) is True
        assert app.dashboard.check_action("send_now", ()) is False
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
        app.dashboard.table(Area.STANDBY).focus()
        await settle(pilot)
        assert app.dashboard.selected() is None
        assert app.dashboard.check_action("details", ()) is False
        assert app.dashboard.check_action("actions", ()) is False
        shown = footer_actions(app)
        assert not shown & {"send_now", "stop", "details", "delete"}
        assert always <= shown
        await pilot.press("s", "x", "delete", "enter", "d")
        await pilot.pause()
        assert app.screen is app.dashboard


@scenario
async def test_footer_offers_enter_for_the_actions_menu(db):
    parked = db.add("Spring sale")
    async with open_dashboard(db.store) as (app, pilot):
        await select_mailing(pilot, parked)
        await pilot.pause()
        keys = footer_keys(app)
        assert keys.get("enter") == "Actions"


@scenario
async def test_command_palette_acts_on_the_selected_mailing(db):
    parked = db.add("Spring sale")
    sending = db.sending("Flash sale")
    async with open_dashboard(db.store) as (app, pilot):
        await select_mailing(pilot, sending)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"s")
        await until(pilot, lambda: "Stop" in palette_hits(app), "the palette's hits")
        # what applies to a sending mailing: Stop, not Send now
        assert "Send now" not in palette_hits(app)
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.dashboard, "the palette closed")
        assert db.get(sending).state == State.SENDING

        await select_mailing(pilot, parked)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"send now")
        await until(pilot, lambda: "Send now" in palette_hits(app), "the palette's hit")
        await pilot.press("enter")
        await until(pilot, lambda: db.get(parked).state == State.STARTING, "send now")
        await settle(pilot)
        assert db.state(parked) == (State.STARTING, Mode.IMMEDIATE, None)
