"""Whether it lands, and what others did: bounces and complaints in Sending now and told
after a mailing completed, other people's changes told as notices, the activity panel
and the A screen."""

import itertools
from datetime import timedelta

import sqlalchemy as sa
from textual.widgets import DataTable, Static

from sendstatus_tui.core.model import audit, lifecycle
from sendstatus_tui.core.model.audit import Actor, Source
from sendstatus_tui.core.model.models import Feedback, Mailing, Recipient, utc_now
from sendstatus_tui.core.model.states import Area
from sendstatus_tui.core.reads import activity
from sendstatus_tui.core.store.together import read_one
from sendstatus_tui.tui.screens.activity import ActivityScreen
from sendstatus_tui.tui.screens.confirm import ConfirmModal
from sendstatus_tui.tui.screens.detail import DetailScreen

from .helpers import (
    FIXED_NOW,
    notifications,
    open_dashboard,
    press_on,
    refresh,
    resize,
    scenario,
    screen_lines,
    select_mailing,
    settle,
    text_of,
    wait_for_screen,
)

OPS2_ELSEWHERE = Actor("ops2", Source.DASHBOARD, session="another-dashboard")
_keys = itertools.count()


def came_back(db, mailing_id: int, kind: str, count: int, at=None) -> None:
    """``count`` reports of ``kind`` (bounce, blocked, complaint) counted as the intake
    counts them: on sent recipients, with the mailing's counters (core/feedback)."""
    at = at or utc_now()
    with db.store.write() as session:
        mailing = session.get(Mailing, mailing_id)
        recipients = session.exec(
            sa.select(Recipient.id).where(
                Recipient.mailing_id == mailing_id, Recipient.status == "sent"
            )
        ).all()
        for (recipient_id,) in recipients[:count]:
            session.add(
                Feedback(
                    report_key=f"report-{next(_keys)}",
                    mailing_id=mailing_id,
                    recipient_id=recipient_id,
                    kind=kind,
                    counted=True,
                    matched_by="return-path",
                    arrived_at=at,
                )
            )
            if kind == "complaint":
                mailing.complained += 1
                continue
            session.execute(
                sa.update(Recipient)
                .where(Recipient.id == recipient_id)
                .values(status="failed", failure_class=kind)
            )
            mailing.sent -= 1
            mailing.failed += 1
            if kind == "bounce":
                mailing.bounced += 1
            else:
                mailing.blocked += 1
        mailing.updated_at = at
        session.add(mailing)


def row_cells(app, mailing_id: int) -> tuple:
    return app.dashboard.table(Area.NOW).row_for(mailing_id).cells


# --- bounces in sight ------------------------------------------------------------------------


@scenario
async def test_sending_now_shows_bounces_and_complaints_once_any_come(db):
    db.engine_elsewhere()
    mailing_id = db.sending("November news", recipients=100)
    db.deliver(mailing_id, sent=90, failed=0)
    async with open_dashboard(db.store, size=(80, 24)) as (app, pilot):
        assert row_cells(app, mailing_id)[6] == "0%"  # nothing came back: the share alone

        came_back(db, mailing_id, "bounce", 12)
        came_back(db, mailing_id, "complaint", 2)
        await refresh(pilot)

        assert row_cells(app, mailing_id)[6] == "13% 12b 2c"
        row = next(line for line in screen_lines(app) if "13% 12b 2c" in line)
        assert "November" in row  # the name still reads at 80 columns


@scenario
async def test_bounces_after_completion_are_told_as_the_completion_is(db):
    db.engine_elsewhere()
    mailing_id = db.sending("November news", recipients=10)
    db.deliver(mailing_id, sent=10, failed=0)
    async with open_dashboard(db.store) as (app, pilot):
        db.do(lifecycle.complete, mailing_id, utc_now() - timedelta(minutes=5))
        await refresh(pilot)
        assert notifications(app) == ["“November news” completed"]

        came_back(db, mailing_id, "bounce", 3)
        came_back(db, mailing_id, "complaint", 2)
        await refresh(pilot)
        assert notifications(app)[-1] == (
            "“November news”: 3 bounced, 2 complaints since it completed"
        )

        # more within the minute: told once the minute is over, with the new counts
        came_back(db, mailing_id, "blocked", 1)
        await refresh(pilot)
        assert len(notifications(app)) == 2
        app.dashboard.came_back_every = 0
        await refresh(pilot)
        assert notifications(app)[-1] == (
            "“November news”: 3 bounced, 1 blocked, 2 complaints since it completed"
        )


@scenario
async def test_what_came_back_before_the_dashboard_opened_is_not_news(db):
    mailing_id = db.sending("October news", recipients=10)
    db.deliver(mailing_id, sent=10, failed=0)
    db.do(lifecycle.complete, mailing_id, utc_now() - timedelta(hours=1))
    came_back(db, mailing_id, "bounce", 4)
    async with open_dashboard(db.store) as (app, pilot):
        await refresh(pilot)
        assert notifications(app) == []


@scenario
async def test_details_list_what_came_back_with_its_share_of_what_was_sent(db):
    db.engine_elsewhere()
    mailing_id = db.sending("November news", recipients=100)
    db.deliver(mailing_id, sent=100, failed=0)
    came_back(db, mailing_id, "bounce", 4)
    came_back(db, mailing_id, "blocked", 1)
    came_back(db, mailing_id, "complaint", 2)
    async with open_dashboard(db.store) as (app, pilot):
        screen = await press_on(pilot, mailing_id, "d", DetailScreen)
        await settle(pilot)
        counters = text_of(screen.query_one("#counters", Static))
        assert (
            "Came back    4 bounced (4.0%), 1 blocked (1.0%), 2 complaints (2.0%),"
            " 0 unsubscribed (0.0%) of 100 sent"
        ) in counters


# --- what others did -------------------------------------------------------------------------


@scenario
async def test_a_change_by_someone_else_is_told_with_who_and_when(db):
    flash = db.scheduled("Flash sale")
    async with open_dashboard(db.store) as (app, pilot):
        with db.store.write() as session:
            lifecycle.stop(session, flash, FIXED_NOW, actor=OPS2_ELSEWHERE)
        await refresh(pilot)

        assert notifications(app) == [f"ops2 stopped {flash} “Flash sale” at 10:00"]


@scenario
async def test_the_command_line_and_the_engine_are_someone_else(db):
    db.engine_elsewhere()
    digest = db.scheduled("Weekly digest")
    async with open_dashboard(db.store) as (app, pilot):
        with db.store.write() as session:
            lifecycle.stop(session, digest, FIXED_NOW, actor=Actor("ops2", Source.CLI))
        with db.store.write() as session:
            lifecycle.send_now(session, digest, FIXED_NOW, actor=Actor("ops2", Source.CLI))
            lifecycle.interrupt(session, digest, "550 message refused", FIXED_NOW)
        await refresh(pilot)

        assert notifications(app) == [
            f"ops2 via cli stopped {digest} “Weekly digest” at 10:00",
            f"ops2 via cli sent now {digest} “Weekly digest” at 10:00",
            f"the engine interrupted {digest} “Weekly digest” at 10:00",
        ]


@scenario
async def test_this_dashboards_own_changes_are_not_told_a_second_dashboards_are(db):
    flash = db.scheduled("Flash sale")
    async with open_dashboard(db.store) as (app, pilot):
        await select_mailing(pilot, flash)
        await pilot.press("x")
        await wait_for_screen(pilot, ConfirmModal)
        await pilot.press("y")
        await settle(pilot)
        await refresh(pilot)
        assert notifications(app) == ["Flash sale: stopped"]

        # the same user in a second dashboard: another session
        same_user_elsewhere = Actor(audit.operator().user, Source.DASHBOARD, session="second")
        with db.store.write() as session:
            lifecycle.send_now(session, flash, FIXED_NOW, actor=same_user_elsewhere)
        await refresh(pilot)
        assert notifications(app)[-1] == f"ann sent now {flash} “Flash sale” at 10:00"


@scenario
async def test_a_burst_of_changes_by_others_is_summed_up(db):
    ids = [db.scheduled(f"Mailing {n}") for n in range(6)]
    async with open_dashboard(db.store) as (app, pilot):
        for mailing_id in ids:
            with db.store.write() as session:
                lifecycle.stop(session, mailing_id, FIXED_NOW, actor=OPS2_ELSEWHERE)
        await refresh(pilot)

        assert notifications(app) == [
            f"ops2 stopped {ids[0]} “Mailing 0” at 10:00",
            f"ops2 stopped {ids[1]} “Mailing 1” at 10:00",
            "and 4 more changes by others (A: the activity)",
        ]


@scenario
async def test_changes_to_mailings_not_on_screen_are_not_told(db):
    done = db.sending("Old news")
    db.do(lifecycle.complete, done, FIXED_NOW - timedelta(days=1))
    async with open_dashboard(db.store) as (app, pilot):
        with db.store.write() as session:
            mailing = session.get(Mailing, done)
            audit.record(session, audit.Change.RETRIED, mailing, "none", actor=OPS2_ELSEWHERE)
        await refresh(pilot)
        assert notifications(app) == []


def test_entries_carry_the_session_that_wrote_them(store):
    first = audit.new_session()
    with store.write() as session:
        audit.record(session, audit.Change.SETTING, detail="rate = 10/s")
    second = audit.new_session()
    with store.write() as session:
        audit.record(session, audit.Change.SETTING, detail="rate = 20/s")
    with store.read() as session:
        entries = read_one(session, activity.entries_after_reading(0))
    assert [entry.session for entry in entries] == [first, second] and first != second


# --- activity --------------------------------------------------------------------------------


@scenario
async def test_the_activity_panel_lists_todays_changes_newest_first_from_40_rows(db):
    flash = db.scheduled("Flash sale")
    digest = db.add("Weekly digest")
    db.pin_history(FIXED_NOW - timedelta(days=1))  # yesterday's: not in today's panel
    async with open_dashboard(db.store, size=(120, 40)) as (app, pilot):
        with db.store.write() as session:
            lifecycle.stop(session, flash, FIXED_NOW, actor=OPS2_ELSEWHERE)
        with db.store.write() as session:
            lifecycle.send_now(session, digest, FIXED_NOW, actor=Actor("bob", Source.CLI))
        await refresh(pilot)

        panel = app.dashboard.query_one("#activity")
        assert panel.display
        lines = str(app.dashboard.query_one("#activity-lines", Static).render()).splitlines()
        assert lines == [
            f"10:00  bob via cli  sent now {digest} “Weekly digest”",
            f"10:00  ops2  stopped {flash} “Flash sale” (was scheduled, 0 of 3 sent)",
        ]

        await resize(pilot, 120, 39)
        assert not panel.display


@scenario
async def test_a_opens_the_activity_newest_first(db):
    flash = db.add("Flash sale")
    with db.store.write() as session:
        lifecycle.send_now(session, flash, FIXED_NOW, actor=OPS2_ELSEWHERE)
    async with open_dashboard(db.store) as (app, pilot):
        await pilot.press("A")
        screen = await wait_for_screen(pilot, ActivityScreen)
        await settle(pilot)
        table = screen.query_one(DataTable)
        rows = [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]
        assert rows[0][1:] == ["ops2", f"sent now {flash} “Flash sale”"]
        assert rows[1][1] == "ann via cli" and rows[1][2].startswith(f"created {flash}")

        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is app.dashboard
