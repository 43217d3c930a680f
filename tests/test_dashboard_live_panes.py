"""The panes follow the database: refreshed by row key, the cursor kept on its mailing,
also with two dashboards on one database."""

from datetime import timedelta

from sendstatus_tui.core.model import lifecycle
from sendstatus_tui.core.model.states import Area, Mode, State
from sendstatus_tui.core.store.store import Store
from sendstatus_tui.tui.app import PanesRead
from sendstatus_tui.tui.screens.actions_menu import ActionsMenu
from sendstatus_tui.views.snapshot import StallWatch, read_snapshot

from .helpers import (
    FIXED_NOW,
    choose,
    open_dashboard,
    refresh,
    scenario,
    select_mailing,
    settle,
    wait_for_screen,
)


@scenario
async def test_cursor_stays_on_its_mailing_when_rows_come_and_go(db):
    def timed(name: str, hours: int) -> int:
        mailing_id = db.add(name)
        db.do(lifecycle.schedule_at, mailing_id, FIXED_NOW + timedelta(hours=hours), FIXED_NOW)
        return mailing_id

    b, c, d = timed("B", 2), timed("C", 3), timed("D", 4)
    async with open_dashboard(db.store) as (app, pilot):
        table = await select_mailing(pilot, c)
        assert table.cursor_row == 1
        a = timed("A", 1)  # sorts before the selection
        await refresh(pilot)
        assert table.mailing_ids == [a, b, c, d]
        assert (app.dashboard.selected().mailing_id, table.cursor_row) == (c, 2)
        db.do(lifecycle.stop, b)  # leaves the pane, before the selection
        db.do(lifecycle.stop, a)
        await refresh(pilot)
        assert table.mailing_ids == [c, d]
        assert (app.dashboard.selected().mailing_id, table.cursor_row) == (c, 0)
        db.do(lifecycle.schedule_at, c, FIXED_NOW + timedelta(hours=5), FIXED_NOW)  # moves down
        e = timed("E", 6)  # after it
        await refresh(pilot)
        assert table.mailing_ids == [d, c, e]
        assert (app.dashboard.selected().mailing_id, table.cursor_row) == (c, 1)
        # changes in another pane leave this one's cursor alone
        db.sending("Flash sale")
        await refresh(pilot)
        assert app.dashboard.selected().mailing_id == c


@scenario
async def test_counters_update_in_place_on_refresh(db):
    sending = db.sending("Flash sale", recipients=10)
    db.engine_elsewhere()
    async with open_dashboard(db.store) as (app, pilot):
        table = await select_mailing(pilot, sending)
        # Failed is the failed share of those handed to the relay: none yet
        assert table.row_for(sending).cells[4:7] == ("░░░░░░░░   0%", "0/10", "")
        db.deliver(sending, sent=4, failed=1)
        await refresh(pilot)
        assert table.row_for(sending).cells[4:7] == ("████░░░░  50%", "4/10", "20%")
        assert str(table.get_cell(str(sending), "Sent")) == "4/10"
        second = db.add("Second")
        db.do(lifecycle.send_now, second)
        await refresh(pilot)
        assert table.mailing_ids == [sending, second]
        assert str(table.get_cell(str(second), "Start date")) == "starting up"
        db.do(lifecycle.mark_prepared, second, FIXED_NOW)
        await refresh(pilot)
        assert str(table.get_cell(str(second), "Start date")) == "2030-03-04 10:00"
        assert app.dashboard.selected().mailing_id == sending


@scenario
async def test_an_action_refused_by_the_database_is_reported_not_crashed(db):
    """The selection is stale: another operator sent it meanwhile."""
    parked = db.add("Spring sale")
    async with open_dashboard(db.store) as (app, pilot):
        await select_mailing(pilot, parked)
        db.do(lifecycle.send_now, parked)  # behind the dashboard's back, no refresh yet
        await pilot.press("e")
        await settle(pilot)
        assert app.is_running
        assert db.state(parked) == (State.STARTING, Mode.IMMEDIATE, None)
        assert any("cannot enqueue" in str(n.message) for n in app._notifications)
        assert app.dashboard.table(Area.NOW).mailing_ids == [parked]  # and the panes caught up


@scenario
async def test_a_move_in_one_dashboard_shows_in_the_other_after_its_refresh(db, sqlite_url):
    _, (de, fr, it, es) = db.queue_of_four()
    other_store = Store(sqlite_url)  # a second operator: its own connections
    try:
        async with (
            open_dashboard(db.store) as (first, one),
            open_dashboard(other_store) as (second, two),
        ):
            await select_mailing(one, es)
            theirs = await select_mailing(two, fr)
            await one.press("plus", "plus")  # ES to second place
            await settle(one)
            assert db.queue() == [de, es, fr, it]
            assert theirs.mailing_ids == [de, fr, it, es]  # not refreshed yet
            await refresh(two)
            assert theirs.mailing_ids == [de, es, fr, it]
            assert second.dashboard.selected().mailing_id == fr  # their cursor stays on theirs
            assert theirs.row_for(fr).cells[3] == "queue #3"
            # and back: the second operator moves FR to the top
            await two.press("enter")
            await wait_for_screen(two, ActionsMenu)
            await choose(two, "move_top")
            await settle(two)
            await refresh(one)
            assert first.dashboard.table(Area.SCHEDULED).mailing_ids == [fr, de, es, it]
            assert first.dashboard.selected().mailing_id == es
            assert db.queue() == [fr, de, es, it]
    finally:
        other_store.dispose()


@scenario
async def test_an_older_snapshot_is_never_drawn_after_a_newer_one(db):
    """A slow read that began before a quicker one arrives last: it is dropped."""
    parked = db.add("Spring sale")
    async with open_dashboard(db.store) as (app, pilot):
        older = read_snapshot(db.store, app.zone, FIXED_NOW, StallWatch())
        db.do(lifecycle.send_now, parked)
        await refresh(pilot)  # the newer one: the second refresh
        assert app.dashboard.table(Area.NOW).mailing_ids == [parked]
        app.post_message(PanesRead(older, sequence=1))
        await pilot.pause()
        assert app.dashboard.table(Area.NOW).mailing_ids == [parked]
        assert app.dashboard.table(Area.STANDBY).mailing_ids == []
