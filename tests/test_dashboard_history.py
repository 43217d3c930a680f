"""H acts like the panes: details, the Actions menu, retry, test, export failed CSV, copy
and preview on today's completed mailings, and ``/`` searches every completed one."""

import csv
from datetime import timedelta

from textual.widgets import DataTable, Input, Label, Static

from sendstatus_tui.core.model import lifecycle
from sendstatus_tui.core.model.states import Area, State
from sendstatus_tui.engine.send_test import relay_for_tests
from sendstatus_tui.tui.screens.actions_menu import ActionsMenu
from sendstatus_tui.tui.screens.completed import CompletedScreen
from sendstatus_tui.tui.screens.confirm import ConfirmModal
from sendstatus_tui.tui.screens.detail import DetailScreen
from sendstatus_tui.tui.screens.export_failed import ExportFailedModal
from sendstatus_tui.tui.screens.preview import PreviewScreen
from sendstatus_tui.tui.screens.send_test import SendTestModal

from .helpers import (
    FIXED_NOW,
    choose,
    footer_keys,
    menu_entries,
    notifications,
    open_dashboard,
    scenario,
    settle,
    text_of,
    until,
    wait_for_screen,
)


def _completed(db, name: str, finished=FIXED_NOW - timedelta(minutes=20)) -> int:
    mailing_id = db.sending(name, recipients=4)
    db.deliver(mailing_id, sent=2, failed=2)
    db.do(lifecycle.complete, mailing_id, finished)
    return mailing_id


async def _open_h(pilot, mailing_id: int | None = None) -> CompletedScreen:
    await pilot.press("H")
    screen = await wait_for_screen(pilot, CompletedScreen)
    await settle(pilot)
    if mailing_id is not None:
        table = screen.query_one(DataTable)
        table.move_cursor(row=screen.mailing_ids.index(mailing_id), animate=False)
        await pilot.pause()
        assert screen.selected().mailing_id == mailing_id
    return screen


@scenario
async def test_h_offers_the_actions_of_a_completed_mailing_and_d_opens_its_details(db):
    done = _completed(db, "Spring sale")
    async with open_dashboard(db.store, size=(80, 24)) as (app, pilot):
        screen = await _open_h(pilot, done)
        assert {"d", "p"} <= set(footer_keys(app))
        await pilot.press("enter")
        await wait_for_screen(pilot, ActionsMenu)
        assert menu_entries(app) == [
            "retry",
            "test_send",
            "export_failed",
            "copy",
            "preview",
            "details",
        ]
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("d")
        details = await wait_for_screen(pilot, DetailScreen)
        await settle(pilot)
        assert "Spring sale" in details.title
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen

        # a key that does not apply says why, as in the panes, and changes nothing
        await pilot.press("s")
        await settle(pilot)
        assert any("it is completed" in n for n in notifications(app))
        assert db.get(done).state == State.COMPLETED


@scenario
async def test_retry_from_h_parks_the_failed_and_the_mailing_leaves_h(db):
    done, other = _completed(db, "Spring sale"), _completed(db, "Autumn sale")
    async with open_dashboard(db.store) as (app, pilot):
        screen = await _open_h(pilot, done)
        await pilot.press("enter")
        await wait_for_screen(pilot, ActionsMenu)
        await choose(pilot, "retry")
        modal = await wait_for_screen(pilot, ConfirmModal)
        assert text_of(modal.query_one("#title")) == "Retry “Spring sale”?"
        await pilot.press("y")
        await until(pilot, lambda: db.get(done).state == State.STANDBY, "the retry")
        await until(pilot, lambda: screen.mailing_ids == [other], "H read again")
        await settle(pilot)
        assert (db.get(done).state_reason, db.get(done).failed) == ("2 to retry", 0)
        assert app.dashboard.table(Area.STANDBY).mailing_ids == [done]


@scenario
async def test_export_failed_from_h_writes_the_csv_failed_writes(db, tmp_path):
    done = _completed(db, "Spring sale")
    target = tmp_path / "out" / "failed.csv"
    target.parent.mkdir()
    async with open_dashboard(db.store) as (app, pilot):
        await _open_h(pilot, done)
        await pilot.press("enter")
        await wait_for_screen(pilot, ActionsMenu)
        await choose(pilot, "export_failed")
        modal = await wait_for_screen(pilot, ExportFailedModal)
        assert text_of(modal.query_one("#title")) == (
            "Export the failed recipients of “Spring sale”"
        )
        modal.query_one("#path", Input).value = str(target)
        await pilot.press("enter")
        await until(pilot, target.exists, "the file")
        await settle(pilot)
        assert f"“Spring sale”: 2 failed recipients written to {target}" in notifications(app)
    with open(target, encoding="utf-8", newline="") as stream:
        rows = list(csv.reader(stream))
    assert rows == [
        ["email", "first_name", "class", "reply"],
        ["person2@example.com", "Person 2", "5xx", "550 5.1.1 no such user"],
        ["person3@example.com", "Person 3", "5xx", "550 5.1.1 no such user"],
    ]


@scenario
async def test_copy_from_h_parks_a_new_mailing_with_the_same_recipients(db):
    done = _completed(db, "Spring sale")
    async with open_dashboard(db.store) as (app, pilot):
        await _open_h(pilot, done)
        await pilot.press("enter")
        await wait_for_screen(pilot, ActionsMenu)
        await choose(pilot, "copy")
        modal = await wait_for_screen(pilot, ConfirmModal)
        assert text_of(modal.query_one("#title")) == "Copy “Spring sale”?"
        assert modal.focused is modal.query_one("#confirm")  # nothing destructive
        await pilot.press("enter")
        await until(pilot, lambda: "Spring sale (copy)" in db.names(), "the copy")
        await settle(pilot)
        (copy_id,) = app.dashboard.table(Area.STANDBY).mailing_ids
        copy = db.get(copy_id)
        assert (copy.state, copy.total, copy.sent, copy.failed) == (State.STANDBY, 4, 0, 0)
        assert (
            "“Spring sale (copy)” created as a copy of “Spring sale” with 4 recipients"
            " (parked in Sends to schedule)"
        ) in notifications(app)


@scenario
async def test_test_send_from_h_goes_to_the_address_typed(db, relays):
    relay = relays()
    done = _completed(db, "Spring sale")
    async with open_dashboard(db.store, test_relay=relay_for_tests(relay.url)) as (app, pilot):
        await _open_h(pilot, done)
        await pilot.press("enter")
        await wait_for_screen(pilot, ActionsMenu)
        await choose(pilot, "test_send")
        await wait_for_screen(pilot, SendTestModal)
        await pilot.press(*"me@example.org", "enter")
        await until(pilot, lambda: relay.received, "the test")
    assert relay.recipients() == ["me@example.org"]


@scenario
async def test_p_in_h_previews_the_message_as_recipient_n(db):
    done = _completed(db, "Spring sale")
    async with open_dashboard(db.store) as (app, pilot):
        await _open_h(pilot, done)
        await pilot.press("p")
        preview = await wait_for_screen(pilot, PreviewScreen)
        message = preview.query_one("#message", Static)
        await until(pilot, lambda: "To: person0@example.com" in text_of(message), "recipient 1")
        assert "From: Shop <news@shop.example.com>" in text_of(message)
        assert "Subject: Hello Person 0" in text_of(message)
        assert text_of(message).endswith("\n\nHi Person 0")
        await pilot.press("backspace", "3")
        await until(pilot, lambda: "To: person2@example.com" in text_of(message), "recipient 3")
        await pilot.press("backspace", "9")
        await until(pilot, lambda: "no number 9" in text_of(message), "past the last")


@scenario
async def test_slash_in_h_searches_every_completed_mailing_by_name_or_id(db):
    old = _completed(db, "Black Friday 2029", finished=FIXED_NOW - timedelta(days=100))
    today = _completed(db, "Spring sale")
    other = _completed(db, "Friday digest", finished=FIXED_NOW - timedelta(days=2))
    async with open_dashboard(db.store) as (app, pilot):
        screen = await _open_h(pilot)
        assert screen.mailing_ids == [today]
        await pilot.press("slash", *"friday")
        await until(pilot, lambda: screen.mailing_ids == [other, old], "the search")
        title = str(screen.query_one("#completed-title", Label).render())
        assert title == "Completed mailings matching “friday” (2), finishing times in Europe/Rome"
        row = [str(c) for c in screen.query_one(DataTable).get_row_at(1)]
        assert row[:3] == [str(old), "Black Friday 2029", "2029-11-24 10:00"]
        await pilot.press("enter")  # to the results, acted on as the others
        await pilot.pause()
        assert isinstance(app.focused, DataTable)
        assert screen.selected().mailing_id == other

        await pilot.press("slash", *["backspace"] * 6, *str(old))
        await until(pilot, lambda: screen.mailing_ids == [old], "the id")
        await pilot.press("escape")  # clears the search: today's again
        await until(pilot, lambda: screen.mailing_ids == [today], "today's")
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is app.dashboard
