"""The operator's morning (issue 10), on a default 80×24 terminal: every pane's essential
columns whole, faults in sight, the highlight on the operator's mailing, keys that say why
they do not apply."""

from datetime import timedelta

from textual.widgets import DataTable, Input, Label

from sendstatus_tui.core.model import lifecycle
from sendstatus_tui.core.model.states import Area, State
from sendstatus_tui.tui.screens.completed import CompletedScreen
from sendstatus_tui.tui.screens.detail import DetailScreen
from sendstatus_tui.views.layout import fit_columns, pane_heights
from sendstatus_tui.views.panes import COLUMNS

from .helpers import (
    FIXED_NOW,
    notifications,
    open_dashboard,
    press_on,
    refresh,
    scenario,
    screen_lines,
    select_mailing,
    settle,
    wait_for_screen,
)

SMALL = (80, 24)
LONG_NAME = "Black Friday last call — every store, every country, all weekend"


def shown(area, rows, width):
    titles = [COLUMNS[area][index].title for index, _ in fit_columns(COLUMNS[area], rows, width)]
    return titles


class TestColumnsAt80:
    ROW = (
        7,
        LONG_NAME,
        "immediate",
        "relay down, retry 10:01:10",
        "████░░░░  50%",
        "160/4,000",
        "12.3%",
        "1,200/min",
        "3m 20s",
    )

    def test_the_essential_columns_show_and_numbers_are_never_cut(self):
        layout = fit_columns(COLUMNS[Area.NOW], [self.ROW], 80)
        titles = [COLUMNS[Area.NOW][i].title for i, _ in layout]
        # the failed share is essential: it shows before the name takes more
        assert titles == ["ID", "Name", "Start date", "Progress", "Sent", "Failed"]
        widths = dict(zip(titles, [w for _, w in layout], strict=True))
        assert widths["Start date"] >= len("relay down, retry 10:01:10")
        assert widths["Sent"] >= len("160/4,000")
        assert widths["Failed"] >= len("12.3%")
        assert sum(w + 2 for _, w in layout) <= 80
        # the name gives way to the relay's trouble; otherwise it has more
        assert widths["Name"] >= 9
        quiet = (*self.ROW[:3], "2030-03-04 10:00", *self.ROW[4:])
        assert dict(fit_columns(COLUMNS[Area.NOW], [quiet], 80))[1] >= 16

    def test_names_use_the_width_there_is(self):
        layout = dict(fit_columns(COLUMNS[Area.NOW], [self.ROW], 200))
        assert len(layout) == len(COLUMNS[Area.NOW])  # everything shows at 200 columns
        assert layout[1] == len(LONG_NAME)

    def test_a_lower_priority_column_never_shows_without_a_higher_one(self):
        for width in range(60, 201):
            priorities = [
                COLUMNS[Area.NOW][i].priority for i, _ in fit_columns(COLUMNS[Area.NOW], [], width)
            ]
            shown_optional = sorted(p for p in priorities if p)
            assert shown_optional == list(range(1, len(shown_optional) + 1)), width


def test_panes_take_the_height_their_rows_need():
    assert pane_heights([3, 6, 3], 22) == [6, 9, 7]  # all fit: the spare line goes last
    assert pane_heights([0, 0, 0], 22)[:2] == [4, 4]  # an empty pane: one line for "none"
    assert pane_heights([3, 30, 3], 22) == [6, 10, 6]  # the small ones whole, the rest shared
    assert pane_heights([30, 30, 30], 22) == [7, 7, 8]


@scenario
async def test_at_80x24_a_waiting_row_says_why_and_the_header_names_relay_engine_and_zone(db):
    waiting = db.sending("Black Friday last call", recipients=4_000)
    db.deliver(waiting, sent=160, failed=0)
    db.relay_down(waiting)
    db.engine_elsewhere("mailer-1:4242:abcd1234")
    async with open_dashboard(db.store, size=SMALL) as (app, pilot):
        lines = screen_lines(app)
        row = next(line for line in lines if line.lstrip().startswith(str(waiting)))
        # Rome is UTC+1 in March: the retry 70 s after 09:00 UTC is 10:01:10 there
        assert "relay down, retry 10:01:10" in row
        assert "160/4,000" in row
        assert app.sub_title.startswith("relay down since 10:00")
        assert "engine on mailer-1" in app.sub_title
        assert "Europe/Rome" in app.sub_title
        header = lines[0]
        assert "relay down since 10:00" in header and "Europe/Rome" in header


@scenario
async def test_the_header_says_since_when_the_engine_finds_the_relay_down_not_since_it_opened(db):
    waiting = db.sending("Black Friday last call", recipients=4_000)
    db.relay_down(waiting, since=FIXED_NOW - timedelta(minutes=25))
    db.engine_elsewhere()
    async with open_dashboard(db.store, size=SMALL) as (app, pilot):
        # 08:35 UTC is 09:35 in Rome; the dashboard opened at 10:00
        assert app.sub_title.startswith("relay down since 09:35")


@scenario
async def test_with_no_engine_the_rows_in_sending_now_say_they_are_paused(db):
    sending = db.sending("Flash sale")
    async with open_dashboard(db.store, size=SMALL) as (app, pilot):
        row = next(line for line in screen_lines(app) if line.lstrip().startswith(str(sending)))
        assert "paused: no engine" in row
        assert "no engine" in app.sub_title
        assert "relay" not in app.sub_title  # unknown while no engine uses it: not "ok"


@scenario
async def test_starting_up_longer_than_a_minute_is_flagged(db):
    clock = [FIXED_NOW]
    starting = db.add("Order confirmations")
    db.do(lifecycle.send_now, starting, FIXED_NOW)
    db.engine_elsewhere()
    async with open_dashboard(db.store, size=SMALL, clock=lambda: clock[0]) as (app, pilot):
        table = app.dashboard.table(Area.NOW)
        assert table.row_for(starting).cells[3] == "starting up"
        clock[0] = FIXED_NOW + timedelta(seconds=59)
        await refresh(pilot)
        assert table.row_for(starting).cells[3] == "starting up"
        clock[0] = FIXED_NOW + timedelta(minutes=2, seconds=5)
        await refresh(pilot)
        assert table.row_for(starting).cells[3] == "still starting: 2m"
        assert table.row_for(starting).flagged


@scenario
async def test_the_footer_always_shows_help_and_quit_at_80_columns(db):
    _, queued = db.queue_of_four()
    async with open_dashboard(db.store, size=SMALL) as (app, pilot):
        await select_mailing(pilot, queued[1])  # the most keys the footer offers at once
        await pilot.pause()
        footer = screen_lines(app)[-1]
        assert "? Help" in footer and "q Quit" in footer


@scenario
async def test_every_pane_is_as_tall_as_its_rows_at_80x24(db):
    for name in ("A", "B", "C", "D", "E", "F", "G"):
        db.scheduled(name)
    db.add("Parked")
    async with open_dashboard(db.store, size=SMALL) as (app, pilot):
        lines = screen_lines(app)
        text = "\n".join(lines)
        for name in ("A", "B", "C", "D", "E", "F", "G", "Parked"):
            assert any(f"  {name} " in line for line in lines), (name, text)


class TestTheHighlightFollowsTheMailing:
    @scenario
    async def test_when_its_time_comes_the_cursor_goes_with_it_to_sending_now(self, db):
        first = db.scheduled("Weekly digest", hours=1)
        second = db.scheduled("Advent calendar", hours=2)
        async with open_dashboard(db.store) as (app, pilot):
            await select_mailing(pilot, first)
            db.do(lifecycle.start_due, FIXED_NOW + timedelta(hours=1))
            await refresh(pilot)
            assert app.dashboard.focused is app.dashboard.table(Area.NOW)
            assert app.dashboard.selected().mailing_id == first
            # and a key acts on it, not on the row that took its place
            await pilot.press("x")
            await pilot.press("enter")  # the stop's confirmation, on its safe button…
            await settle(pilot)
            assert db.state(first)[0] == State.STARTING
            assert db.state(second)[0] == State.SCHEDULED

    @scenario
    async def test_a_completed_mailing_leaves_the_highlight_on_the_nearest_row_and_says_so(
        self, db
    ):
        a, b, c = (db.sending(name, recipients=2) for name in ("A", "B", "C"))
        async with open_dashboard(db.store) as (app, pilot):
            table = await select_mailing(pilot, b)
            db.deliver(b, sent=2, failed=0)
            db.do(lifecycle.complete, b)
            await refresh(pilot)
            assert table.mailing_ids == [a, c]
            assert app.dashboard.selected().mailing_id == c
            assert any("“B” completed" in n for n in notifications(app))


class TestKeys:
    @scenario
    async def test_a_key_that_does_not_apply_says_why(self, db):
        sending = db.sending("Flash sale")
        head, queued = db.queue_of_four()
        async with open_dashboard(db.store) as (app, pilot):
            await select_mailing(pilot, sending)
            await pilot.press("t")
            await pilot.press("delete")
            await select_mailing(pilot, head)
            await pilot.press("plus")
            said = notifications(app)
            assert any(f"cannot schedule mailing {sending}: it is sending" in n for n in said)
            assert any(f"cannot delete mailing {sending}: it is sending" in n for n in said)
            assert any(f"cannot move in the queue mailing {head}" in n for n in said)
            assert db.queue() == queued

    @scenario
    async def test_j_k_g_and_shift_g_move_the_cursor(self, db):
        ids = [db.scheduled(name, hours=hours) for hours, name in enumerate("ABCD", start=1)]
        async with open_dashboard(db.store) as (app, pilot):
            await select_mailing(pilot, ids[0])
            await pilot.press("j", "j")
            assert app.dashboard.selected().mailing_id == ids[2]
            await pilot.press("k")
            assert app.dashboard.selected().mailing_id == ids[1]
            await pilot.press("G")
            assert app.dashboard.selected().mailing_id == ids[3]
            await pilot.press("g")
            assert app.dashboard.selected().mailing_id == ids[0]
            await pilot.press("end")
            assert app.dashboard.selected().mailing_id == ids[3]
            await pilot.press("home")
            assert app.dashboard.selected().mailing_id == ids[0]
            # in the filter field, the same keys are the field's own
            await pilot.press("slash", "j", "g", "home")
            field = app.dashboard.query_one("#filter", Input)
            assert (field.value, field.cursor_position) == ("jg", 0)


@scenario
async def test_details_sparkline_has_a_scale_and_a_time_axis(db):
    sending = db.sending("Flash sale", recipients=10)
    db.engine_elsewhere()
    # the minutes the engines stored: 600, 1,200, then 300 a minute, still sending
    now = FIXED_NOW + timedelta(seconds=30)
    db.sent_per_minute(sending, {3: 600, 2: 1_200, 1: 300, 0: 150}, now)
    async with open_dashboard(db.store, clock=lambda: now) as (app, pilot):
        screen = await press_on(pilot, sending, "d", DetailScreen)
        await settle(pilot)
        heading = str(screen.query_one("#rate-heading", Label).render())
        # now: the 450 of the last minute and a half
        assert heading == "Send rate: now 300/min, top of the graph 1,200/min"
        assert str(screen.query_one("#rate-since", Label).render()) == "3m 00s ago"
        assert str(screen.query_one("#rate-now", Label).render()) == "now"


@scenario
async def test_h_shows_todays_completed_mailings_in_the_operators_day(db):
    def completed(name: str, finished) -> int:
        mailing_id = db.sending(name, recipients=2)
        db.deliver(mailing_id, sent=1, failed=1)
        db.do(lifecycle.complete, mailing_id, finished)
        return mailing_id

    # midnight in Rome is 23:00 UTC the day before
    completed("Late yesterday", FIXED_NOW - timedelta(hours=10, minutes=1))
    early = completed("Just after midnight", FIXED_NOW - timedelta(hours=9, minutes=59))
    latest = completed("This morning", FIXED_NOW - timedelta(minutes=5))
    async with open_dashboard(db.store) as (app, pilot):
        await pilot.press("H")
        screen = await wait_for_screen(pilot, CompletedScreen)
        await settle(pilot)
        table = screen.query_one(DataTable)
        rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        assert rows == [
            [str(latest), "This morning", "09:55", "1", "1", "2"],
            [str(early), "Just after midnight", "00:01", "1", "1", "2"],
        ]
        title = str(screen.query_one("#completed-title", Label).render())
        assert title == "Completed today (2), finishing times in Europe/Rome"
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is app.dashboard


def test_the_palettes_screenshot_is_saved_where_a_directory_exists_and_says_where(
    db, tmp_path, monkeypatch
):
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))  # no ~/Downloads, as on most servers
    monkeypatch.delenv("XDG_DOWNLOAD_DIR", raising=False)
    monkeypatch.chdir(work)

    @scenario
    async def run():
        async with open_dashboard(db.store) as (app, pilot):
            app.deliver_screenshot()
            await pilot.pause()
            (saved,) = work.glob("*.svg")
            assert saved.read_text(encoding="utf-8").startswith("<svg")
            assert f"screenshot saved: {saved}" in notifications(app)

    run()
