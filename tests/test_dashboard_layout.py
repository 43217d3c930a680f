"""The dashboard at any width: columns decided by the width alone, the failed share always
shown (coloured past the warning level and the guard's threshold), a footer whose keys
are never cut mid-word."""

import pytest
from sqlmodel import select

from sendstatus_tui.core.feedback.effects import Outcome, apply
from sendstatus_tui.core.model import signing
from sendstatus_tui.core.model.feedback import Report, ReportVerdict
from sendstatus_tui.core.model.models import Recipient
from sendstatus_tui.core.model.states import Area
from sendstatus_tui.core.model.verp import sign
from sendstatus_tui.tui.widgets.mailing_table import ALARM_STYLES
from sendstatus_tui.views.cells import (
    FAILED_SHARE_WARNING_PERCENT,
    GUARD_REFUSALS_DEFAULT_PERCENT,
    Alarm,
    failed_alarm,
    failed_share,
)
from sendstatus_tui.views.layout import fit_columns
from sendstatus_tui.views.panes import COLUMNS, PANE_AREAS

from .helpers import open_dashboard, refresh, scenario, select_mailing

SMALL_ROW = {
    Area.NOW: (1, "A", "immediate", "starting up", "░░░░░░░░   0%", "0/1", "", "", ""),
    Area.SCHEDULED: (1, "A", "at", "queue #1", "in turn", "1"),
    Area.STANDBY: (1, "A", "decided later", "0", "1"),
}
BIG_ROW = {
    Area.NOW: (
        12345,
        "Black Friday last call — every store, every country, all weekend",
        "sequential",
        "relay down, retry 10:01:10",
        "████████  99%",
        "1,234,567/1,250,000",
        "12.5%",
        "123,456/min",
        "12h 30m",
    ),
    Area.SCHEDULED: (
        12345,
        "x" * 70,
        "sequential",
        "2030-03-04 10:00",
        "overdue: no engine",
        "1,250,000",
    ),
    Area.STANDBY: (
        12345,
        "x" * 70,
        "1,234,567 left, 419 of them to retry",
        "1,234,567",
        "1,250,000",
    ),
}


@pytest.mark.parametrize("area", PANE_AREAS)
def test_which_columns_show_depends_on_the_width_alone(area):
    """As numbers and names grow, no column comes or goes: only the terminal's width
    decides, and the essential ones (the failed share among them) are always there."""
    for width in range(60, 221):
        small = [i for i, _ in fit_columns(COLUMNS[area], [SMALL_ROW[area]], width)]
        big = [i for i, _ in fit_columns(COLUMNS[area], [BIG_ROW[area]], width)]
        assert small == big, width
        essential = [i for i, c in enumerate(COLUMNS[area]) if c.priority == 0]
        assert set(essential) <= set(small), width


def test_the_failed_share_shows_at_80_columns_and_what_joins_at_wider_ones():
    def titles(width):
        return [COLUMNS[Area.NOW][i].title for i, _ in fit_columns(COLUMNS[Area.NOW], [], width)]

    assert titles(80) == ["ID", "Name", "Start date", "Progress", "Sent", "Failed"]
    wide = ["ID", "Name", "Start date", "Progress", "Sent", "Failed", "Speed", "ETA"]
    assert titles(120) == wide
    assert titles(200) == [*wide[:2], "Mode", *wide[2:]]


def test_the_failed_share_is_yellow_from_2_percent_and_red_from_the_guards_threshold():
    assert (FAILED_SHARE_WARNING_PERCENT, GUARD_REFUSALS_DEFAULT_PERCENT) == (2.0, 5.0)
    assert failed_share(0, 0) == "" and failed_share(10, 0) == "0%"
    assert failed_share(981, 19) == "1.9%" and failed_alarm(981, 19) is Alarm.NONE
    assert failed_share(98, 2) == "2.0%" and failed_alarm(98, 2) is Alarm.WARNING
    assert failed_alarm(95, 5) is Alarm.GUARD and failed_share(87, 13) == "13%"
    assert ALARM_STYLES[Alarm.WARNING] == "bold yellow"
    assert ALARM_STYLES[Alarm.GUARD] == "bold red"
    # complaints: any is a warning, a share at the guard's complaint limit is red
    assert failed_alarm(2000, 0, 1, 0.001) is Alarm.WARNING
    assert failed_alarm(2000, 0, 2, 0.001) is Alarm.GUARD
    assert failed_alarm(2000, 0, 50, None) is Alarm.WARNING  # guard_complaints off


@scenario
async def test_a_failed_share_past_the_guards_threshold_is_red_in_sending_now(db):
    sending = db.sending("Flash sale", recipients=100)
    db.deliver(sending, sent=90, failed=10)
    db.engine_elsewhere()
    async with open_dashboard(db.store, size=(80, 24)) as (app, pilot):
        table = app.dashboard.table(Area.NOW)
        cell = table.get_cell(str(sending), "Failed")
        assert (str(cell), cell.style) == ("10%", "bold red")


def complain(store, mailing_id: int, which: slice) -> None:
    """A complaint about each of ``which`` of the mailing's recipients, applied as the intake
    applies a feedback report quoting the signed header."""
    with store.write() as session:
        key = signing.signing_key(session)
        ids = session.exec(
            select(Recipient.id).where(Recipient.mailing_id == mailing_id).order_by(Recipient.id)
        ).all()
        for recipient_id in ids[which]:
            code = sign(key, mailing_id, recipient_id)
            report = Report(ReportVerdict.COMPLAINT, f"arf-{recipient_id}", header_codes=(code,))
            assert apply(session, report).outcome == Outcome.COUNTED


@scenario
async def test_complaints_colour_the_failed_cell_yellow_then_red_at_the_guards_threshold(db):
    sending = db.sending("Flash sale", recipients=2000)
    db.deliver(sending, sent=2000, failed=0)
    db.engine_elsewhere()
    async with open_dashboard(db.store, size=(80, 24)) as (app, pilot):
        table = app.dashboard.table(Area.NOW)
        cell = table.get_cell(str(sending), "Failed")
        assert (str(cell), cell.style) == ("0%", "")
        complain(db.store, sending, slice(0, 1))  # 0.05 %: under guard_complaints' 0.1 %
        await refresh(pilot)
        cell = table.get_cell(str(sending), "Failed")
        assert (str(cell), cell.style) == ("0% 1c", "bold yellow")
        complain(db.store, sending, slice(1, 2))  # 0.1 %: the guard's threshold
        await refresh(pilot)
        cell = table.get_cell(str(sending), "Failed")
        assert (str(cell), cell.style) == ("0% 2c", "bold red")


@scenario
async def test_at_80x24_no_key_of_the_footer_is_cut(db):
    """Whatever is selected, the footer shows whole keys only, the command palette's last."""
    _, (de, *_) = db.queue_of_four()
    parked = db.add("Parked")
    scheduled = db.scheduled("Later")
    async with open_dashboard(db.store, size=(80, 24)) as (app, pilot):
        for mailing_id in (de, parked, scheduled):
            await select_mailing(pilot, mailing_id)
            await pilot.pause()
            keys = list(app.screen.query("FooterKey"))
            palette = [key for key in keys if key.has_class("-command-palette")]
            assert palette and len(keys) > 3
            edge = palette[0].region.x
            for key in keys:
                if key not in palette:
                    assert key.region.right <= edge, (mailing_id, key.description)
            last_line = [str(strip.text) for strip in app.screen._compositor.render_strips()][-1]
            for key in keys:
                assert key.description in last_line, (mailing_id, key.description)
