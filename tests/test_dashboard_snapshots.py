"""How the dashboard looks: SVG snapshots (pytest-textual-snapshot) of every screen, at
the default terminal of an SSH session (80×24) and of the main screen at 120×40 and
200×50 too.

Deterministic by construction: a fixed clock, blinking off, no refresh timer, every time
written into the database fixed (start dates, schedules, so countdowns never vary), and the
speeds and charts read from minutes stored at fixed times. Update with
``--snapshot-update``, then look at the SVGs before committing them.
"""

from datetime import timedelta

import pytest
import sqlalchemy as sa
from textual.widgets import Button, Input, Static

from sendstatus_tui.core.coordination import lease
from sendstatus_tui.core.model import lifecycle
from sendstatus_tui.core.model.audit import Actor, Source
from sendstatus_tui.core.model.models import Mailing
from sendstatus_tui.tui.screens.actions_menu import ActionsMenu
from sendstatus_tui.tui.screens.activity import ActivityScreen
from sendstatus_tui.tui.screens.completed import CompletedScreen
from sendstatus_tui.tui.screens.confirm import ConfirmModal
from sendstatus_tui.tui.screens.detail import DetailScreen
from sendstatus_tui.tui.screens.engines import EnginesScreen
from sendstatus_tui.tui.screens.export_failed import ExportFailedModal
from sendstatus_tui.tui.screens.help import HelpScreen
from sendstatus_tui.tui.screens.new_mailing import NewMailingForm
from sendstatus_tui.tui.screens.preview import PreviewScreen
from sendstatus_tui.tui.screens.schedule import ScheduleModal

from .helpers import (
    FIXED_NOW,
    Mailings,
    choose,
    dashboard,
    engine_beat,
    select_mailing,
    settle,
    until,
    wait_for_screen,
)


@pytest.fixture
def looks_as_saved(db, snap_compare):
    """Compares the dashboard, settled and then brought where ``steps`` leave it, with its
    saved SVG."""

    def compare(steps=None, size=SMALL) -> bool:
        async def run_before(pilot):
            await settle(pilot)
            if steps is not None:
                await steps(pilot)

        return snap_compare(dashboard(db.store), terminal_size=size, run_before=run_before)

    return compare


def populate(db: Mailings) -> dict[str, int]:
    """Every pane with rows in every state it shows; returns the ids by name."""
    ids = {}
    db.engine_elsewhere("mailer-1:4242:abcd1234")
    # Sending now: immediate and sequential ones sending, one starting up, one waiting
    # for its relay; a long name
    ids["black friday"] = db.sending(LONG_NAME, recipients=12_000)
    db.deliver(ids["black friday"], sent=4_500, failed=12)
    ids["newsletter en"] = db.sending("Newsletter EN", recipients=800, mode="sequential")
    db.deliver(ids["newsletter en"], sent=300, failed=0)
    # their last hour, as the engines stored it: one sending for 40 minutes, faster lately,
    # the other for 12
    ramp = {ago: 90 + (40 - ago) * 3 + (ago * 7) % 20 for ago in range(1, 40)}
    db.sent_per_minute(ids["black friday"], {**ramp, 0: 5}, FIXED_NOW)
    db.sent_per_minute(ids["newsletter en"], {**{a: 25 for a in range(1, 13)}, 0: 1}, FIXED_NOW)
    ids["orders"] = db.add("Order confirmations", recipients=40)
    db.do(lifecycle.send_now, ids["orders"], FIXED_NOW)
    ids["partner news"] = db.add("Partner newsletter", recipients=4_000)
    db.do(lifecycle.send_now, ids["partner news"], FIXED_NOW)
    db.relay_down(ids["partner news"])
    # Scheduled sendings: three at a time (soonest first), then the sequential queue
    ids["digest"] = db.add("Weekly digest", recipients=30)
    db.do(
        lifecycle.schedule_at, ids["digest"], FIXED_NOW + timedelta(hours=2, minutes=30), FIXED_NOW
    )
    ids["advent"] = db.add("Advent calendar day 1", recipients=50)
    db.do(lifecycle.schedule_at, ids["advent"], FIXED_NOW + timedelta(days=3, hours=1), FIXED_NOW)
    ids["soon"] = db.add("Flash sale", recipients=5)
    db.do(
        lifecycle.schedule_at, ids["soon"], FIXED_NOW + timedelta(minutes=4, seconds=30), FIXED_NOW
    )
    for name in ("Newsletter DE", "Newsletter FR"):
        ids[name.lower()] = db.add(name, recipients=20)
        db.do(lifecycle.enqueue, ids[name.lower()], FIXED_NOW)
    # Sends to schedule: decided later, stopped after some were sent, interrupted
    ids["spring"] = db.add("Spring sale", recipients=25)
    ids["old promo"] = db.sending("Old promo", recipients=60)
    db.deliver(ids["old promo"], sent=21, failed=2)
    db.do(lifecycle.stop, ids["old promo"], FIXED_NOW)
    ids["partner"] = db.add("Partner mailing", recipients=10)
    db.do(lifecycle.send_now, ids["partner"], FIXED_NOW)
    db.do(
        lifecycle.interrupt,
        ids["partner"],
        "535 5.7.8 authentication failed: check the relay credentials",
        FIXED_NOW,
    )
    db.pin_history(FIXED_NOW - timedelta(hours=2))  # the details show it
    return ids


LONG_NAME = "Black Friday last call — every store, every country, all weekend long"
SMALL, MEDIUM, LARGE = (80, 24), (120, 40), (200, 50)


def test_main_screen_with_every_pane(db, looks_as_saved):
    populate(db)

    assert looks_as_saved()


def test_main_screen_at_120x40(db, looks_as_saved):
    populate(db)

    assert looks_as_saved(size=MEDIUM)


def test_main_screen_at_200x50(db, looks_as_saved):
    populate(db)

    assert looks_as_saved(size=LARGE)


def test_main_screen_with_no_engine(db, looks_as_saved):
    ids = populate(db)
    with db.store.write() as session:
        lease.release(session, "mailer-1:4242:abcd1234", FIXED_NOW)
    del ids

    assert looks_as_saved()


def test_help_screen(looks_as_saved):
    async def help_screen(pilot):
        await pilot.press("question_mark")
        await wait_for_screen(pilot, HelpScreen)

    assert looks_as_saved(help_screen)


def test_stop_confirmation(db, looks_as_saved):
    ids = populate(db)

    async def stop(pilot):
        await select_mailing(pilot, ids["black friday"])
        await pilot.press("x")
        await wait_for_screen(pilot, ConfirmModal)

    assert looks_as_saved(stop)


def test_delete_confirmation(db, looks_as_saved):
    ids = populate(db)

    async def delete(pilot):
        await select_mailing(pilot, ids["spring"])
        await pilot.press("delete")
        await wait_for_screen(pilot, ConfirmModal)

    assert looks_as_saved(delete)


def test_reschedule_modal(db, looks_as_saved):
    ids = populate(db)

    async def reschedule(pilot):
        await select_mailing(pilot, ids["digest"])
        await pilot.press("t")
        await wait_for_screen(pilot, ScheduleModal)

    assert looks_as_saved(reschedule)


def test_detail_screen_of_a_mailing_waiting_for_its_relay(db, looks_as_saved):
    ids = populate(db)

    async def details(pilot):
        await select_mailing(pilot, ids["partner news"])
        await pilot.press("d")
        await wait_for_screen(pilot, DetailScreen)
        await settle(pilot)

    assert looks_as_saved(details)


def test_empty_database(looks_as_saved):
    assert looks_as_saved()


def test_schedule_modal_with_an_error(db, looks_as_saved):
    ids = populate(db)

    async def past_time(pilot):
        await select_mailing(pilot, ids["spring"])
        await pilot.press("t")
        await wait_for_screen(pilot, ScheduleModal)
        await pilot.press(*"2030-03-04 09:15")

    assert looks_as_saved(past_time)


def test_sequential_warning_modal(db, looks_as_saved):
    ids = populate(db)

    async def enqueue(pilot):
        await select_mailing(pilot, ids["spring"])
        await pilot.press("e")
        await wait_for_screen(pilot, ConfirmModal)

    assert looks_as_saved(enqueue)


def test_actions_menu_of_a_queued_mailing(db, looks_as_saved):
    ids = populate(db)

    async def menu(pilot):
        await select_mailing(pilot, ids["newsletter fr"])
        await pilot.press("enter")
        await wait_for_screen(pilot, ActionsMenu)

    assert looks_as_saved(menu)


def test_detail_screen(db, looks_as_saved):
    ids = populate(db)

    async def details(pilot):
        await select_mailing(pilot, ids["black friday"])
        await pilot.press("d")
        await wait_for_screen(pilot, DetailScreen)
        await settle(pilot)

    assert looks_as_saved(details)


def test_new_mailing_form(db, looks_as_saved):
    populate(db)

    async def form(pilot):
        await pilot.press("n")
        await wait_for_screen(pilot, NewMailingForm)
        await settle(pilot)  # its checkbox and error lines laid out

    assert looks_as_saved(form)


def test_main_screen_footer_for_a_queued_mailing(db, looks_as_saved):
    """The most keys the footer offers at once: ? and q still show at 80 columns."""
    ids = populate(db)

    async def queued(pilot):
        await select_mailing(pilot, ids["newsletter de"])

    assert looks_as_saved(queued)


def test_new_mailing_form_with_an_error_at_from(looks_as_saved):
    async def refused(pilot):
        await pilot.press("n")
        form = await wait_for_screen(pilot, NewMailingForm)
        values = {
            "name": "March newsletter",
            "subject": "News for {first_name}",
            "from": "Shop <news@>",
            "recipients": "people.csv",
        }
        for key, value in values.items():
            form.query_one(f"#field-{key}", Input).value = value
        send_now = form.query_one("#now", Button)
        send_now.press()
        error = form.query_one("#error-from", Static)
        await until(pilot, lambda: str(error.render()), "the error")
        # the button's pressed look lasts 0.2 s: a busy machine used to outlast it or not
        await until(pilot, lambda: not send_now.has_class("-active"), "the press shown")
        await settle(pilot)

    assert looks_as_saved(refused)


def test_completed_today_screen(db, looks_as_saved):
    finished = db.sending(LONG_NAME, recipients=40)
    db.deliver(finished, sent=39, failed=1)
    db.do(lifecycle.complete, finished, FIXED_NOW - timedelta(minutes=20))

    async def completed(pilot):
        await pilot.press("H")
        await wait_for_screen(pilot, CompletedScreen)
        await settle(pilot)

    assert looks_as_saved(completed)


def test_engines_screen(db, looks_as_saved):
    """A leader sending, another engine (every engine sends; this one has nothing to send),
    and an engine silent for 42 s (10:00 in Rome)."""
    leader = engine_beat(
        "mailer-1", 4242, "leader", FIXED_NOW - timedelta(hours=2), sending=(3, 7),
        sent=12_345, rate=299.6, connections=4, reason="connections busy 95% at 300 msg/s",
    )  # fmt: skip
    sender = engine_beat("mailer-2", 515, "sender", FIXED_NOW - timedelta(minutes=30))
    refused = "the relay refused connection 3: 421 4.7.0 Too many connections from your IP"
    lost = engine_beat(
        "mailer-3", 77, "sender", FIXED_NOW - timedelta(minutes=20), connections=2,
        reason=refused,
    )  # fmt: skip
    db.engine_elsewhere(leader.id)  # the leader holds the lease, as the header says
    db.heartbeat(leader, FIXED_NOW - timedelta(seconds=1))
    db.heartbeat(sender, FIXED_NOW)
    db.heartbeat(lost, FIXED_NOW - timedelta(seconds=42))

    async def engines(pilot):
        await pilot.press("E")
        await wait_for_screen(pilot, EnginesScreen)
        await settle(pilot)

    assert looks_as_saved(engines)


def test_main_screen_with_failed_shares_past_the_warning_and_the_guard(db, looks_as_saved):
    """Sending now's failed share: plain below 2 %, yellow from 2 %, red from 5 %."""
    db.engine_elsewhere("mailer-1:4242:abcd1234")
    for name, failed in (("Healthy list", 1), ("Old list", 3), ("Bought list", 9)):
        mailing_id = db.sending(name, recipients=200)
        db.deliver(mailing_id, sent=100 - failed, failed=failed)

    assert looks_as_saved()


def test_main_screen_with_bounces_and_complaints(db, looks_as_saved):
    """What came back shows in the Failed cell once any came: bounced or blocked ("b"),
    complaints ("c"); the name still reads at 80 columns."""
    db.engine_elsewhere("mailer-1:4242:abcd1234")
    quiet = db.sending("Healthy list", recipients=200)
    db.deliver(quiet, sent=100, failed=0)
    bouncing = db.sending("November news", recipients=2_000)
    db.deliver(bouncing, sent=1_800, failed=0)
    with db.store.write() as session:  # the counters as the intake leaves them
        session.execute(
            sa.update(Mailing)
            .where(Mailing.id == bouncing)
            .values(sent=1_612, failed=188, bounced=180, blocked=8, complained=2)
        )

    assert looks_as_saved()


def test_activity_screen(db, looks_as_saved):
    """A: who changed what, newest first, in the operator's zone."""
    ids = populate(db)
    for minutes, operation, actor in (
        (5, lifecycle.stop, Actor("ops2", Source.DASHBOARD, session="elsewhere")),
        (9, lifecycle.send_now, Actor("bob", Source.CLI)),
    ):
        with db.store.write() as session:
            operation(session, ids["soon"], FIXED_NOW + timedelta(minutes=minutes), actor=actor)

    async def activity(pilot):
        await pilot.press("A")
        await wait_for_screen(pilot, ActivityScreen)
        await settle(pilot)

    assert looks_as_saved(activity)


def test_preview_screen(db, looks_as_saved):
    """p: the message as its second recipient gets it."""
    ids = populate(db)

    async def preview(pilot):
        await select_mailing(pilot, ids["spring"])
        await pilot.press("p")
        screen = await wait_for_screen(pilot, PreviewScreen)
        await pilot.press("backspace", "2")
        await until(pilot, lambda: "person1@" in str(screen.query_one("#message").render()), "2")
        await settle(pilot)

    assert looks_as_saved(preview)


def test_completed_screen_searching_every_completed_mailing(db, looks_as_saved):
    for name, days_ago in (("Black Friday 2029", 100), ("Friday digest", 2), ("Spring sale", 0)):
        finished = db.sending(name, recipients=40)
        db.deliver(finished, sent=38, failed=2)
        db.do(lifecycle.complete, finished, FIXED_NOW - timedelta(days=days_ago, minutes=20))

    async def search(pilot):
        await pilot.press("H")
        screen = await wait_for_screen(pilot, CompletedScreen)
        await settle(pilot)
        await pilot.press("slash", *"friday", "enter")
        await until(pilot, lambda: len(screen.mailing_ids) == 2, "the search")
        await settle(pilot)

    assert looks_as_saved(search)


def test_export_failed_modal(db, looks_as_saved, monkeypatch):
    monkeypatch.chdir("/tmp")  # the file it offers is in the working directory
    finished = db.sending("Spring sale", recipients=40)
    db.deliver(finished, sent=38, failed=2)
    db.do(lifecycle.complete, finished, FIXED_NOW - timedelta(minutes=20))

    async def export(pilot):
        await pilot.press("H")
        await wait_for_screen(pilot, CompletedScreen)
        await settle(pilot)
        await pilot.press("enter")
        await wait_for_screen(pilot, ActionsMenu)
        await choose(pilot, "export_failed")
        await wait_for_screen(pilot, ExportFailedModal)

    assert looks_as_saved(export)
