"""Retry and test send from the dashboard's Actions menu, with the command line's
confirmations and errors."""

from email import message_from_bytes

from sendstatus_tui.core.model import lifecycle
from sendstatus_tui.engine.send_test import relay_for_tests
from sendstatus_tui.tui.screens.actions_menu import ActionsMenu
from sendstatus_tui.tui.screens.confirm import ConfirmModal
from sendstatus_tui.tui.screens.send_test import SendTestModal

from .helpers import choose, open_dashboard, press_on, scenario, settle, text_of, until


def notifications(app) -> list[str]:
    return [n.message for n in app._notifications]


@scenario
async def test_retry_from_the_actions_menu_asks_then_parks_the_failed(db):
    mailing_id = db.sending("Spring sale", recipients=5)
    db.deliver(mailing_id, sent=2, failed=2)
    db.do(lifecycle.stop, mailing_id)
    async with open_dashboard(db.store) as (app, pilot):
        await press_on(pilot, mailing_id, "enter", ActionsMenu)
        await choose(pilot, "retry")
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the question")
        assert "2 failed recipients (5xx, 4xx) go back to pending" in text_of(
            app.screen.query_one("#message")
        )
        await pilot.press("y")
        await settle(pilot)
        retried = db.get(mailing_id)
        assert (retried.state, retried.state_reason, retried.failed) == ("standby", "2 to retry", 0)
        assert "Spring sale: 2 to retry" in notifications(app)

        # nothing left to retry: the command line's error, no question
        await press_on(pilot, mailing_id, "enter", ActionsMenu)
        await choose(pilot, "retry")
        await settle(pilot)
        assert f"mailing {mailing_id} has no failed recipients of class 5xx, 4xx" in (
            notifications(app)
        )


@scenario
async def test_test_send_from_the_actions_menu_goes_to_the_addresses_typed(db, relays):
    relay = relays()
    mailing_id = db.add("Spring sale")
    test_relay = relay_for_tests(relay.url)
    async with open_dashboard(db.store, test_relay=test_relay) as (app, pilot):
        await press_on(pilot, mailing_id, "enter", ActionsMenu)
        await choose(pilot, "test_send")
        modal = await wait_until_modal(pilot)
        assert relay.url in text_of(modal.query_one("#through"))
        await pilot.press(*"me@example")
        assert modal.query_one("#send").disabled
        await pilot.press(*".org", "comma", "space", *"x@y")
        assert text_of(modal.query_one("#feedback")).startswith("'x@y':")
        await pilot.press("backspace", "backspace", "backspace")
        await pilot.press(*"boss@example.org")
        assert not modal.query_one("#send").disabled
        await pilot.press("enter")
        await until(pilot, lambda: len(relay.received) == 2, "the two tests")
        await until(pilot, lambda: len(notifications(app)) == 2, "what the relay said")
    assert relay.recipients() == ["me@example.org", "boss@example.org"]
    assert message_from_bytes(relay.received[0].data)["Subject"] == "[TEST] Hello Person 0"
    assert notifications(app) == [
        "test of Spring sale to me@example.org: 250 2.0.0 queued",
        "test of Spring sale to boss@example.org: 250 2.0.0 queued",
    ]
    assert db.get(mailing_id).sent == 0


async def wait_until_modal(pilot) -> SendTestModal:
    await until(pilot, lambda: isinstance(pilot.app.screen, SendTestModal), "the modal")
    await pilot.pause()
    return pilot.app.screen
