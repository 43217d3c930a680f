"""The other screens and keys: details, preview, help, the name filter, quitting."""

from datetime import UTC, datetime
from functools import partial
from zoneinfo import ZoneInfo

from textual.widgets import Input, Static

from sendstatus_tui.core.model import audit, lifecycle
from sendstatus_tui.core.model.states import Area, State
from sendstatus_tui.tui.screens.detail import DetailScreen
from sendstatus_tui.tui.screens.help import HelpScreen
from sendstatus_tui.tui.screens.preview import PreviewScreen
from sendstatus_tui.tui.screens.schedule import ScheduleModal
from sendstatus_tui.tui.widgets.mailing_table import MailingTable

from .helpers import (
    FIXED_NOW,
    ZONE,
    open_dashboard,
    press_on,
    refresh,
    scenario,
    select_mailing,
    settle,
    text_of,
    until,
    wait_for_screen,
)


@scenario
async def test_p_previews_the_selected_mailings_message_as_recipient_n(db):
    sending = db.sending("Flash sale", recipients=3)
    async with open_dashboard(db.store) as (app, pilot):
        preview = await press_on(pilot, sending, "p", PreviewScreen)
        assert text_of(preview.query_one("#title")) == "Preview of “Flash sale”"
        message = preview.query_one("#message", Static)
        await until(pilot, lambda: "To: person0@example.com" in text_of(message), "recipient 1")
        assert "Subject: Hello Person 0" in text_of(message)
        await pilot.press("backspace", "3")
        await until(pilot, lambda: "Subject: Hello Person 2" in text_of(message), "recipient 3")
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is app.dashboard
        assert db.get(sending).sent == 0  # a preview sends nothing


@scenario
async def test_d_gives_a_scheduled_time_also_as_it_was_typed_in_another_zone(db):
    planned_in_new_york = db.add("Launch")
    nine_in_new_york = datetime(2030, 3, 5, 14, 0, tzinfo=UTC)
    db.do(
        partial(lifecycle.schedule_at, zone_name="America/New_York"),
        planned_in_new_york,
        nine_in_new_york,
        FIXED_NOW,
    )
    async with open_dashboard(db.store) as (app, pilot):
        screen = await press_on(pilot, planned_in_new_york, "d", DetailScreen)
        await settle(pilot)
        counters = text_of(screen.query_one("#counters", Static))
        assert "Scheduled 2030-03-05 15:00" in counters  # in Rome, the reader's zone
        assert "planned as 2030-03-05 09:00 America/New_York" in counters
        await pilot.press("escape")
        # scheduled again here, it is planned in Rome, and says so once
        await press_on(pilot, planned_in_new_york, "t", ScheduleModal)
        await pilot.press(*"2030-03-06 10:00", "enter")
        await settle(pilot)
        assert db.get(planned_in_new_york).scheduled_zone == "Europe/Rome"
        screen = await press_on(pilot, planned_in_new_york, "d", DetailScreen)
        await settle(pilot)
        counters = text_of(screen.query_one("#counters", Static))
        assert "Scheduled 2030-03-06 10:00" in counters
        assert "planned as" not in counters


@scenario
async def test_d_shows_the_counters(db):
    sending = db.sending("Flash sale", recipients=10)
    db.deliver(sending, sent=6, failed=1)
    async with open_dashboard(db.store) as (app, pilot):
        screen = await press_on(pilot, sending, "d", DetailScreen)
        await settle(pilot)
        counters = text_of(screen.query_one("#counters", Static))
        assert "State        sending" in counters
        assert "Plan         immediate" in counters
        assert "Started      2030-03-04 09:00" in counters  # 08:00 UTC, in Rome
        assert "(times in Europe/Rome)" in counters
        assert "Recipients   10: 6 sent, 3 remaining, 0 deferred (retrying)" in counters
        assert "Failed       1 — 1 refused (5xx)" in counters
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
        assert app.screen is app.dashboard
        assert app.dashboard.selected().mailing_id == sending


@scenario
async def test_the_details_tell_who_changed_the_mailing(db):
    parked = db.add("Spring sale")
    async with open_dashboard(db.store) as (app, pilot):
        await select_mailing(pilot, parked)
        await pilot.press("s")  # send now, from this dashboard
        await settle(pilot)
        screen = await press_on(pilot, parked, "d", DetailScreen)
        await settle(pilot)
        history = text_of(screen.query_one("#history", Static)).splitlines()
        counters = text_of(screen.query_one("#counters", Static))
        # under its heading, as indented as the errors above it
        indent = screen.query_one("#history").content_region.x
        assert indent == screen.query_one("#errors").content_region.x > 0
    assert [line.split("  ")[1] for line in history] == ["created", "send-now"]
    assert history[0].endswith("via cli")  # the test's builder added it, as `mailing add` would
    assert history[1].endswith("via dashboard")
    # in the operator's zone (Rome), which the screen names once, as it gave it
    with db.store.read() as session:
        sent_now_at = audit.history(session, parked)[-1].at
    assert history[1].startswith(f"{sent_now_at.astimezone(ZoneInfo(ZONE)):%Y-%m-%d %H:%M:%S}  ")
    assert "(times in Europe/Rome)" in counters


@scenario
async def test_main_screen_keys_on_the_detail_screen_leave_the_main_screen_alone(db):
    """'/' and '?' on the detail screen: '/' must not open the filter behind it."""
    parked = db.add("Spring sale")
    async with open_dashboard(db.store) as (app, pilot):
        await press_on(pilot, parked, "d", DetailScreen)
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
        assert app.screen is app.dashboard
        assert not app.query_one("#filter", Input).has_class("visible")
        assert isinstance(app.focused, MailingTable)
        await pilot.press("s")  # must send it, not type "s" into a filter
        await settle(pilot)
        assert db.get(parked).state == State.STARTING


@scenario
async def test_question_mark_shows_help(db):
    async with open_dashboard(db.store) as (app, pilot):
        await pilot.press("question_mark")
        screen = await wait_for_screen(pilot, HelpScreen)
        shown = str(screen.query_one("#help", Static).render())
        assert "shift+↑ / +  Move up in the queue" in shown
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
    timed = db.scheduled("Weekly digest", hours=1)
    async with open_dashboard(db.store) as (app, pilot):
        await pilot.press("slash")
        await pilot.pause()
        field = app.query_one("#filter", Input)
        assert field.has_class("visible") and app.focused is field
        await pilot.press(*"sale")
        await pilot.pause()
        assert app.dashboard.table(Area.STANDBY).mailing_ids == [sale]
        assert app.dashboard.table(Area.NOW).mailing_ids == [sold]
        assert app.dashboard.table(Area.SCHEDULED).mailing_ids == []
        assert str(app.query_one("#title-standby").render()) == "Sends to schedule (1 of 2)"
        # the filter holds across refreshes
        await refresh(pilot)
        assert app.dashboard.table(Area.STANDBY).mailing_ids == [sale]
        await pilot.press("enter")  # back to the panes, still filtered
        await pilot.pause()
        assert isinstance(app.focused, MailingTable)
        assert app.dashboard.table(Area.STANDBY).mailing_ids == [sale]
        await pilot.press("slash", "escape")  # escape clears it
        await pilot.pause()
        assert not field.has_class("visible")
        assert app.dashboard.table(Area.STANDBY).mailing_ids == [sale, news]
        assert app.dashboard.table(Area.SCHEDULED).mailing_ids == [timed]


@scenario
async def test_q_quits_without_an_engine(db):
    db.sending("Flash sale")  # something is sending, but no engine runs in this dashboard
    async with open_dashboard(db.store) as (app, pilot):
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running, "exit")
    assert app.return_code == 0
