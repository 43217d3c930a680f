"""The last hour, from the minutes every engine stores: a dashboard opened after sending
began draws it at once, the ETA comes from it, wide screens (160×45 and more) chart each
sending mailing's hour, which narrower ones leave out, and the details show what came back
minute by minute."""

import asyncio
from datetime import timedelta

from textual.app import App
from textual.widgets import Label, Sparkline

from sendstatus_tui.core.model import send_minutes
from sendstatus_tui.core.model.states import Area
from sendstatus_tui.tui.screens.detail import DetailScreen
from sendstatus_tui.tui.widgets.throughput_charts import ChartLine, ThroughputCharts

from .helpers import FIXED_NOW, open_dashboard, press_on, resize, scenario, settle, text_of


def now_cells(app, mailing_id: int) -> dict[str, str]:
    row = app.dashboard.table(Area.NOW).row_for(mailing_id)
    return {"speed": str(row.cells[7]), "eta": str(row.cells[8])}


@scenario
async def test_a_dashboard_opened_after_a_minute_of_sending_draws_it_at_once(db):
    sending = db.sending("Flash sale", recipients=400)
    db.engine_elsewhere()
    # the engine recorded a batch of 20 every 10 s for a minute and a half before it opened
    for second in range(0, 90, 10):
        db.deliver(sending, 20, 0, recorded_at=FIXED_NOW - timedelta(seconds=90 - second))
    async with open_dashboard(db.store, size=(200, 50)) as (app, pilot):
        # its first refresh: no warm-up
        # 120 in the minute since the first record of 08:59 (what came before is charted)
        assert now_cells(app, sending)["speed"] == "120/min"
        line = app.dashboard.query_one(f"#chart-{sending}", ChartLine)
        chart = list(line.query_one(Sparkline).data or [])
        # the whole minutes before this one (the speed now is told beside them)
        assert len(chart) == 60 and chart[-2:] == [60, 120] and not any(chart[:-2])
        assert "now 120/min" in str(line.query_one(".chart-figures").render())


@scenario
async def test_the_eta_comes_from_the_stored_minutes(db):
    sending = db.sending("Flash sale", recipients=3_000)
    db.engine_elsewhere()
    db.sent_per_minute(sending, {1: 590, 0: 10}, FIXED_NOW)  # 600 in the last minute
    async with open_dashboard(db.store) as (app, pilot):
        assert now_cells(app, sending) == {"speed": "600/min", "eta": "5m 00s"}


@scenario
async def test_wide_screens_chart_what_is_sending_and_narrow_ones_do_not(db):
    first = db.sending("Flash sale", recipients=10)
    second = db.sending("Newsletter EN", recipients=10)
    db.engine_elsewhere()
    db.sent_per_minute(first, {30: 300, 2: 600, 1: 900}, FIXED_NOW)
    async with open_dashboard(db.store, size=(200, 50)) as (app, pilot):
        panel = app.dashboard.query_one("#throughput")
        assert panel.display and panel.region.height == 4  # its title and two lines
        lines = {line.id: line for line in app.dashboard.query(ChartLine)}
        assert set(lines) == {f"chart-{first}", f"chart-{second}"}
        drawn = list(lines[f"chart-{first}"].query_one(Sparkline).data or [])
        assert drawn[30] == 300 and drawn[-2:] == [600, 900]
        assert not any(lines[f"chart-{second}"].query_one(Sparkline).data or [])
        # the columns narrower screens drop are all there
        table = app.dashboard.table(Area.NOW)
        titles = [str(column.label) for column in table.columns.values()]
        assert {"Mode", "Speed", "ETA"} <= set(titles)
    for size in ((80, 24), (120, 40), (159, 50), (200, 44)):
        async with open_dashboard(db.store, size=size) as (app, pilot):
            assert not app.dashboard.query_one("#throughput").display, size
            assert not app.dashboard.query_one("#throughput").region.height


@scenario
async def test_a_wide_screen_with_nothing_sending_says_so(db):
    db.add("Spring sale")
    async with open_dashboard(db.store, size=(200, 50)) as (app, pilot):
        assert text_of(app.dashboard.query_one("#charts-empty")) == "nothing is sending"
        assert not list(app.dashboard.query(ChartLine))


@scenario
async def test_a_terminal_made_wide_shows_the_charts_and_narrow_again_hides_them(db):
    sending = db.sending("Flash sale", recipients=10)
    db.engine_elsewhere()
    db.sent_per_minute(sending, {2: 600, 1: 900}, FIXED_NOW)
    async with open_dashboard(db.store, size=(120, 40)) as (app, pilot):
        assert not app.dashboard.query_one("#throughput").display
        await resize(pilot, 200, 50)
        line = app.dashboard.query_one(f"#chart-{sending}", ChartLine)
        assert list(line.query_one(Sparkline).data or [])[-2:] == [600, 900]
        await resize(pilot, 120, 40)
        assert not app.dashboard.query_one("#throughput").display


@scenario
async def test_the_details_show_what_came_back_minute_by_minute(db):
    mailing_id = db.sending("Flash sale", recipients=10)
    db.engine_elsewhere()
    with db.store.write() as session:  # as the intake counts them when they arrive
        send_minutes.add_feedback(session, mailing_id, 2, 0, FIXED_NOW - timedelta(minutes=5))
        send_minutes.add_feedback(session, mailing_id, 1, 1, FIXED_NOW - timedelta(minutes=1))
        send_minutes.add_feedback(session, mailing_id, 9, 9, FIXED_NOW - timedelta(hours=2))
    async with open_dashboard(db.store) as (app, pilot):
        screen = await press_on(pilot, mailing_id, "d", DetailScreen)
        await settle(pilot)
        heading = str(screen.query_one("#came-back-heading", Label).render())
        assert heading == (
            "Came back in the last hour: 3 bounced or blocked, 1 complaint (per minute below)"
        )
        per_minute = screen.query_one("#came-back", Sparkline)
        assert per_minute.display and list(per_minute.data or [])[-6:] == [2, 0, 0, 0, 2, 0]


def test_the_charts_take_a_snapshot_before_they_are_composed():
    """The first snapshot can reach the charts between their mount and their compose (a
    dashboard opened wide): they show it instead of failing to find their note."""

    class Host(App):
        async def on_mount(self) -> None:
            charts = ThroughputCharts(id="charts")
            self.mount(charts)  # not awaited: composed later
            charts.show([])
            await asyncio.sleep(0)
            self.shown = charts

    async def run() -> None:
        app = Host()
        async with app.run_test(size=(200, 50)) as pilot:
            await pilot.pause()
            assert app.shown.query_one("#charts-empty").display

    asyncio.run(run())
