"""Figures that are true now (issue "A console to live in"): a speed falls to nothing once
nothing is sent, an engine that is lost takes its speed with it, a stopped mailing has no
current rate, an overdue mailing with no engine says so, and ``ls`` reads like the panes."""

from datetime import timedelta
from zoneinfo import ZoneInfo

from textual.widgets import Label

from sendstatus_tui.core.coordination import lease
from sendstatus_tui.core.model import lifecycle
from sendstatus_tui.core.model.states import Area
from sendstatus_tui.core.reads.listing import list_mailings
from sendstatus_tui.tui.screens.detail import DetailScreen
from sendstatus_tui.views.listing import render_panes
from sendstatus_tui.views.snapshot import StallWatch

from .helpers import FIXED_NOW, ZONE, open_dashboard, press_on, refresh, scenario, settle


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0  # a second between refreshes

        return self.now


def speed_cell(app, mailing_id: int) -> str:
    row = app.dashboard.table(Area.NOW).row_for(mailing_id)
    return str(row.cells[7])


@scenario
async def test_the_speed_falls_to_nothing_and_a_lost_engine_shows_none(db):
    sending = db.sending("Flash sale", recipients=400)
    db.engine_elsewhere()
    async with open_dashboard(db.store, size=(200, 50)) as (app, pilot):
        app.stalls = StallWatch(clock=FakeClock())
        for ago in (5, 4, 3, 2, 1):  # 60 messages a second, as the engine records them
            db.deliver(sending, 60, 0, recorded_at=FIXED_NOW - timedelta(seconds=ago))
            await refresh(pilot)
        assert speed_cell(app, sending) == "3,600/min" and "3,600/min" in app.sub_title
        await refresh(pilot)
        await refresh(pilot)  # two refreshes with nothing sent
        assert speed_cell(app, sending) == "" and "/min" not in app.sub_title

        db.deliver(sending, 60, 0, recorded_at=FIXED_NOW)
        await refresh(pilot)
        assert speed_cell(app, sending) != ""
        with db.store.write() as session:  # the engine is lost: its lease lapses
            lease.release(session, "engine@elsewhere")
        db.deliver(sending, 60, 0, recorded_at=FIXED_NOW)  # (a last batch it recorded)
        await refresh(pilot)
        assert "no engine" in app.sub_title and "/min" not in app.sub_title
        assert speed_cell(app, sending) == ""


@scenario
async def test_a_stopped_mailing_has_no_current_rate_in_its_details(db):
    sending = db.sending("Flash sale", recipients=10)
    db.engine_elsewhere()
    db.sent_per_minute(sending, {2: 600, 1: 300}, FIXED_NOW)  # 600 a minute at most
    async with open_dashboard(db.store) as (app, pilot):
        db.do(lifecycle.stop, sending)
        await refresh(pilot)
        screen = await press_on(pilot, sending, "d", DetailScreen)
        await settle(pilot)
        heading = str(screen.query_one("#rate-heading", Label).render())
        assert heading == "Send rate while it was sending: top of the graph 600/min"


@scenario
async def test_an_overdue_mailing_with_no_engine_says_so(db):
    overdue = db.add("Morning news")
    an_hour = timedelta(hours=1)
    db.do(lifecycle.schedule_at, overdue, FIXED_NOW - an_hour, FIXED_NOW - 2 * an_hour)
    async with open_dashboard(db.store) as (app, pilot):
        row = app.dashboard.table(Area.SCHEDULED).row_for(overdue)
        assert row.cells[4] == "overdue: no engine"
        db.engine_elsewhere()
        await refresh(pilot)
        row = app.dashboard.table(Area.SCHEDULED).row_for(overdue)
        assert row.cells[4] == "now"  # an engine starts it at its next look


def test_ls_shows_the_short_reasons_of_the_panes(db):
    sending = db.sending("Flash sale", recipients=10)
    db.relay_down(sending)
    retried = db.sending("Old news", recipients=10)
    db.deliver(retried, 6, 2)
    db.do(lifecycle.stop, retried)
    db.do(lifecycle.retry, retried, ("5xx",))
    with db.store.read() as session:
        mailings = list_mailings(session)
    areas = [Area.NOW, Area.STANDBY]
    text = render_panes(mailings, areas, ZoneInfo(ZONE), now=FIXED_NOW, engine_running=True)
    assert "relay down, retry 10:01:10" in text  # not the relay's whole reply
    assert "cannot reach" not in text
    assert "4 left, 2 of them to retry" in text
    idle = render_panes(mailings, areas, ZoneInfo(ZONE), now=FIXED_NOW, engine_running=False)
    assert "paused: no engine" in idle
