"""One habit for dialogs: a question about a destructive action (stop, delete, retry, quit
while this dashboard's engine sends) has Cancel focused, any other Confirm; every dialog
quotes the mailing's name the same way."""

import pytest
from textual.widgets import Label

from sendstatus_tui.core.model import lifecycle
from sendstatus_tui.engine.send_test import relay_for_tests
from sendstatus_tui.tui.screens.actions_menu import ActionsMenu
from sendstatus_tui.tui.screens.confirm import ConfirmModal
from sendstatus_tui.tui.screens.schedule import ScheduleModal
from sendstatus_tui.tui.screens.send_test import SendTestModal

from .helpers import (
    Mailings,
    choose,
    open_dashboard,
    press_on,
    scenario,
    settle,
    text_of,
    until,
    wait_for_screen,
)


async def _answer_with_enter(pilot) -> None:
    await pilot.press("enter")
    await until(pilot, lambda: not isinstance(pilot.app.screen, ConfirmModal), "the answer")
    await settle(pilot)


@scenario
async def test_retry_asks_with_cancel_focused_and_the_name_quoted(db):
    stopped = db.sending("Spring sale", recipients=4)
    db.deliver(stopped, sent=2, failed=2)
    db.do(lifecycle.stop, stopped)
    async with open_dashboard(db.store) as (app, pilot):
        await press_on(pilot, stopped, "enter", ActionsMenu)
        await choose(pilot, "retry")
        modal = await wait_for_screen(pilot, ConfirmModal)
        assert text_of(modal.query_one("#title")) == "Retry “Spring sale”?"
        assert modal.focused is modal.query_one("#cancel")
        await _answer_with_enter(pilot)  # a stray enter retries nothing
        assert db.get(stopped).failed == 2


@pytest.mark.parametrize(("key", "name"), [("x", "Flash sale"), ("delete", "Old draft")])
@scenario
async def test_stop_and_delete_ask_with_cancel_focused(db, key, name):
    mailing_id = db.sending(name) if key == "x" else db.add(name)
    async with open_dashboard(db.store) as (app, pilot):
        modal = await press_on(pilot, mailing_id, key, ConfirmModal)
        assert text_of(modal.query_one("#title")).endswith(f"“{name}”?")
        assert modal.focused is modal.query_one("#cancel")


@scenario
async def test_the_sequential_warning_is_not_destructive_confirm_is_focused(db):
    db.queue_of_four()
    parked = db.add("Late news")
    async with open_dashboard(db.store) as (app, pilot):
        modal = await press_on(pilot, parked, "e", ConfirmModal)
        assert "“Late news” will be number 5" in text_of(modal.query_one("#message"))
        assert modal.focused is modal.query_one("#confirm")
        await _answer_with_enter(pilot)
        assert db.get(parked).position == 5


def test_quitting_while_the_engine_here_sends_asks_with_cancel_focused(
    store, tmp_path, relay, engine_for
):
    mailings = Mailings(store, tmp_path)
    mailings.sending("Flash sale", recipients=50)
    engine = engine_for(relay)

    @scenario
    async def quit_asked() -> None:
        async with open_dashboard(store, engine=engine) as (app, pilot):
            await pilot.press("q")
            modal = await wait_for_screen(pilot, ConfirmModal)
            assert text_of(modal.query_one("#title")) == "Quit and pause sending?"
            assert modal.focused is modal.query_one("#cancel")
            await pilot.press("enter")  # a stray enter keeps the dashboard open
            await until(pilot, lambda: not isinstance(app.screen, ConfirmModal), "the answer")
            assert app.is_running

    quit_asked()


@scenario
async def test_every_dialog_quotes_the_name_alike(db, relays):
    parked = db.add("Spring sale")
    async with open_dashboard(db.store, test_relay=relay_for_tests(relays().url)) as (app, pilot):
        titles = []
        for key_or_action, screen_type in (
            ("t", ScheduleModal),
            ("test_send", SendTestModal),
            ("enter", ActionsMenu),
        ):
            if key_or_action == "test_send":
                await press_on(pilot, parked, "enter", ActionsMenu)
                await choose(pilot, "test_send")
                modal = await wait_for_screen(pilot, screen_type)
            else:
                modal = await press_on(pilot, parked, key_or_action, screen_type)
            titles.append(str(modal.query(Label).first().render()))
            await pilot.press("escape")
            await settle(pilot)
        assert titles == [
            "Schedule “Spring sale”",
            "Send a test of “Spring sale”",
            "Actions: “Spring sale” (parked)",
        ]
