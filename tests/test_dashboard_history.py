"""The last hour, from the minutes every engine stores: a dashboard opened after sending
began draws it at once, the ETA comes from it, and wide screens (160×45 and more) chart
each sending mailing's hour, which narrower ones leave out."""

from datetime import timedelta

from textual.widgets import Sparkline

from sendstatus_tui.core.model.states import Area
from sendstatus_tui.tui.widgets.throughput_charts import ChartLine

from .helpers import FIXED_NOW, open_dashboard, scenario, text_of


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
        assert len(chart) == 60 and chart[-3:] == [60, 120, 120] and not any(chart[:-3])
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
        assert drawn[29] == 300 and drawn[-3:-1] == [600, 900]
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
