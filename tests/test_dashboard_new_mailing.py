"""n: the new-mailing form, with real files; refusals shown at their field."""

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import select
from textual.widgets import Button, Input, Static

from sendstatus_tui.core.importing import suppression
from sendstatus_tui.core.model.models import Mailing
from sendstatus_tui.core.model.states import Area, Mode, State
from sendstatus_tui.tui.screens.confirm import ConfirmModal
from sendstatus_tui.tui.screens.new_mailing import NewMailingForm
from sendstatus_tui.tui.screens.preview import PreviewScreen
from sendstatus_tui.tui.screens.schedule import ScheduleModal

from .helpers import (
    notifications,
    open_dashboard,
    scenario,
    settle,
    text_of,
    until,
    wait_for_screen,
)


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    """Real files for the new-mailing form."""
    (tmp_path / "body.txt").write_text("Hello {first_name}\n", encoding="utf-8")
    (tmp_path / "body.html").write_text("<p>Hello {first_name}</p>\n", encoding="utf-8")
    (tmp_path / "people.csv").write_text(
        "email,first_name\nanna@example.com,Anna\nben@example.com,Ben\n", encoding="utf-8"
    )
    (tmp_path / "bad.csv").write_text(
        "email,first_name\nanna@example.com,Anna\nnot-an-address,Ben\nalso bad,Chloé\n",
        encoding="utf-8",
    )
    return {p.stem: p for p in tmp_path.iterdir() if p.suffix in (".txt", ".html", ".csv")}


async def _fill_form(pilot, **values: str) -> NewMailingForm:
    await pilot.press("n")
    form = await wait_for_screen(pilot, NewMailingForm)
    assert form.focused is form.query_one("#field-name", Input)
    await pilot.press(*values.pop("name"))  # typed, like an operator
    for key, value in values.items():  # long paths: set directly
        form.query_one(f"#field-{key}", Input).value = value
    await pilot.pause()
    return form


async def _press_button(pilot, form: NewMailingForm, button_id: str) -> None:
    button = form.query_one(f"#{button_id}", Button)
    button.focus()
    await pilot.pause()
    # a button ignores enter while it still shows its last press (Textual: 0.2 s)
    await until(pilot, lambda: not button.has_class("-active"), f"{button_id} to take a press")
    await pilot.press("enter")


async def _create(pilot, form: NewMailingForm, button_id: str) -> PreviewScreen:
    """Presses a plan button, then Create in the preview shown before anything is
    created; returns the preview."""
    await _press_button(pilot, form, button_id)
    preview = await wait_for_screen(pilot, PreviewScreen)
    assert preview.focused is preview.query_one("#confirm")  # nothing destructive
    await pilot.press("enter")
    return preview


def _form_values(files, **changes) -> dict[str, str]:
    values = {
        "name": "March newsletter",
        "subject": "News for {first_name}",
        "from": "Shop <news@shop.example.com>",
        "text": str(files["body"].with_suffix(".txt")),
        "html": str(files["body"].with_suffix(".html")),
        "recipients": str(files["people"]),
    }
    values.update(changes)
    return values


@scenario
async def test_new_mailing_send_now_creates_a_starting_mailing(db, files):
    async with open_dashboard(db.store) as (app, pilot):
        form = await _fill_form(pilot, **_form_values(files))
        await _create(pilot, form, "now")
        await until(pilot, lambda: not isinstance(app.screen, NewMailingForm), "form closed")
        await settle(pilot)
        with db.store.read() as session:
            (mailing,) = session.exec(select(Mailing)).all()
        assert (mailing.name, mailing.state, mailing.mode) == (
            "March newsletter",
            State.STARTING,
            Mode.IMMEDIATE,
        )
        assert (mailing.subject, mailing.sender) == (
            "News for {first_name}",
            "Shop <news@shop.example.com>",
        )
        assert mailing.text_body == "Hello {first_name}\n"
        assert mailing.html_body == "<p>Hello {first_name}</p>\n"
        assert mailing.total == 2
        assert app.dashboard.table(Area.NOW).mailing_ids == [mailing.id]


@scenario
async def test_new_mailing_decide_later_parks_it(db, files):
    async with open_dashboard(db.store) as (app, pilot):
        form = await _fill_form(pilot, **_form_values(files, html=""))
        await _create(pilot, form, "later")
        await until(pilot, lambda: not isinstance(app.screen, NewMailingForm), "form closed")
        await settle(pilot)
        with db.store.read() as session:
            (mailing,) = session.exec(select(Mailing)).all()
        assert (mailing.state, mailing.state_reason) == (State.STANDBY, "decided later")
        assert mailing.html_body is None
        assert app.dashboard.table(Area.STANDBY).mailing_ids == [mailing.id]


@scenario
async def test_new_mailing_says_what_the_import_dropped(db, files, tmp_path):
    """As `mailing add` does: duplicates and suppressed addresses dropped are counted."""
    people = tmp_path / "dropped.csv"
    people.write_text(
        "email,first_name\nanna@example.com,Anna\nANNA@example.com,Anna\n"
        "ben@example.com,Ben\nzoe@example.com,Zoe\n",
        encoding="utf-8",
    )
    with db.store.write() as session:
        suppression.add(session, ["zoe@example.com"])
    async with open_dashboard(db.store) as (app, pilot):
        form = await _fill_form(pilot, **_form_values(files, recipients=str(people)))
        await _create(pilot, form, "later")
        await until(pilot, lambda: not isinstance(app.screen, NewMailingForm), "form closed")
        await settle(pilot)
        assert (
            "“March newsletter” created with 2 recipients, 1 duplicate dropped,"
            " 1 suppressed dropped (parked in Sends to schedule)"
        ) in notifications(app)


@scenario
async def test_new_mailing_schedule_opens_the_schedule_modal(db, files):
    async with open_dashboard(db.store) as (app, pilot):
        form = await _fill_form(pilot, **_form_values(files))
        await _create(pilot, form, "schedule")
        modal = await wait_for_screen(pilot, ScheduleModal)
        assert text_of(modal.query_one("#title")) == "Schedule “March newsletter”"
        await pilot.press(*"2030-03-04 12:00", "enter")
        await settle(pilot)
        with db.store.read() as session:
            (mailing,) = session.exec(select(Mailing)).all()
        assert (mailing.state, mailing.mode) == (State.SCHEDULED, Mode.AT)
        assert mailing.scheduled_at == datetime(2030, 3, 4, 11, 0, tzinfo=UTC)


@scenario
async def test_new_mailing_bad_sender_is_shown_at_from_and_nothing_is_created(db, files):
    async with open_dashboard(db.store) as (app, pilot):
        form = await _fill_form(pilot, **_form_values(files, **{"from": "Shop <news@>"}))
        await _press_button(pilot, form, "now")
        await until(pilot, lambda: text_of(form.query_one("#error-from", Static)), "the error")
        await settle(pilot)
        assert app.screen is form  # still open, to be corrected
        assert "news@" in text_of(form.query_one("#error-from", Static))
        assert form.focused is form.query_one("#field-from", Input)
        for other in ("name", "subject", "text", "html", "recipients"):
            assert text_of(form.query_one(f"#error-{other}", Static)) == "", other
        assert db.names() == set()

        # corrected: created, and the error is gone with the form
        form.query_one("#field-from", Input).value = "news@shop.example.com"
        await _create(pilot, form, "later")
        await until(pilot, lambda: db.names() == {"March newsletter"}, "creation")
        await settle(pilot)


@scenario
async def test_new_mailing_csv_with_invalid_rows_is_shown_at_recipients(db, files):
    async with open_dashboard(db.store) as (app, pilot):
        form = await _fill_form(pilot, **_form_values(files, recipients=str(files["bad"])))
        await _create(pilot, form, "now")
        error = form.query_one("#error-recipients", Static)
        await until(pilot, lambda: text_of(error), "the error")
        await settle(pilot)
        assert app.screen is form
        message = text_of(error)
        assert "2 invalid rows, nothing imported" in message
        assert "line 3:" in message and "line 4:" in message
        assert form.focused is form.query_one("#field-recipients", Input)
        assert db.names() == set()


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"text": "/nonexistent/body.txt"}, "text", "no such file"),
        ({"text": "", "html": ""}, "text", "a text body, an HTML body or both"),
        ({"recipients": ""}, "recipients", "a CSV file with an email column"),
        ({"subject": "Hi {nickname}"}, "subject", "{nickname} is not a column"),
        ({"recipients": "/nonexistent/people.csv"}, "recipients", "no such file"),
    ],
)
@scenario
async def test_new_mailing_other_refusals_are_shown_at_their_field(
    db, files, changes, field, words
):
    async with open_dashboard(db.store) as (app, pilot):
        form = await _fill_form(pilot, **_form_values(files, **changes))
        await _press_button(pilot, form, "now")
        error = form.query_one(f"#error-{field}", Static)
        await until(pilot, lambda: text_of(error), "the error")
        await settle(pilot)
        assert words in text_of(error)
        assert db.names() == set()
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, NewMailingForm)
        assert db.names() == set()


@scenario
async def test_new_mailing_pressed_twice_creates_it_once(db, files):
    async with open_dashboard(db.store) as (app, pilot):
        form = await _fill_form(pilot, **_form_values(files))
        form.query_one("#now", Button).focus()
        await pilot.pause()
        # a big CSV, or the engine holding the write lock: creating takes a while
        with db.store.write():
            await pilot.press("enter")
            await wait_for_screen(pilot, PreviewScreen)
            await pilot.press("enter")  # Create
            await until(pilot, lambda: app.screen is form, "back to the form")
            # past the button's 0.2 s debounce, nothing seems to happen: press again
            await pilot.pause(0.5)
            assert app.screen is form  # still creating
            await pilot.press("enter")
            await pilot.pause(0.1)
            assert app.screen is form  # still creating: the enter cancelled nothing
        await until(
            pilot, lambda: not app.workers or not app.is_running, "the creations", timeout=20
        )
        await pilot.pause()
        with db.store.read() as session:
            created = session.exec(select(Mailing)).all()
        assert [(m.name, m.state) for m in created] == [("March newsletter", State.STARTING)]
        assert app.is_running


@scenario
async def test_new_mailing_shows_every_fields_error_at_once(db, files):
    async with open_dashboard(db.store) as (app, pilot):
        values = _form_values(
            files, name=" ", **{"from": "Shop <news@>"}, text="/nonexistent/body.txt"
        )
        values["recipients"] = ""
        form = await _fill_form(pilot, **values)
        await _press_button(pilot, form, "now")
        error = form.query_one("#error-recipients", Static)
        await until(pilot, lambda: text_of(error), "the errors")
        await settle(pilot)
        shown = {key: text_of(form.query_one(f"#error-{key}", Static)) for key in _FIELDS}
        assert "must not be empty" in shown["name"]
        assert "news@" in shown["from"]
        assert "no such file" in shown["text"]
        assert "a CSV file with an email column" in shown["recipients"]
        assert shown["subject"] == shown["html"] == shown["unsubscribe-url"] == ""
        assert form.focused is form.query_one("#field-name", Input)  # the first of them
        assert db.names() == set()


_FIELDS = (
    "name",
    "subject",
    "from",
    "text",
    "html",
    "recipients",
    "unsubscribe-url",
    "unsubscribe-mailto",
)


@scenario
async def test_new_mailing_schedule_then_escape_leaves_nothing_behind(db, files):
    async with open_dashboard(db.store) as (app, pilot):
        form = await _fill_form(pilot, **_form_values(files))
        await _create(pilot, form, "schedule")
        await wait_for_screen(pilot, ScheduleModal)
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is form, "back to the form")
        await settle(pilot)
        assert db.names() == set()  # no parked mailing left behind
        assert not form.query_one("#now", Button).disabled  # ready for another choice
        await _create(pilot, form, "later")
        await until(pilot, lambda: db.names() == {"March newsletter"}, "creation")


@scenario
async def test_new_mailing_sequentially_joins_the_queue_after_the_warning(db, files):
    head, queued = db.queue_of_four()
    async with open_dashboard(db.store) as (app, pilot):
        form = await _fill_form(pilot, **_form_values(files))
        await _create(pilot, form, "sequential")
        warning = await wait_for_screen(pilot, ConfirmModal)
        assert "will be number 5 in the sequential queue" in text_of(
            warning.query_one("#message", Static)
        )
        await pilot.press("y")
        await until(pilot, lambda: "March newsletter" in db.names(), "creation")
        await settle(pilot)
        with db.store.read() as session:
            (created,) = session.exec(select(Mailing).where(Mailing.name == "March newsletter"))
        assert (created.state, created.mode, created.position) == (
            State.QUEUED,
            Mode.SEQUENTIAL,
            5,
        )
        # the new mailing is the one highlighted
        assert app.dashboard.selected().mailing_id == created.id


@scenario
async def test_new_mailing_placeholders_are_examples_not_values(db):
    async with open_dashboard(db.store) as (app, pilot):
        await pilot.press("n")
        form = await wait_for_screen(pilot, NewMailingForm)
        for key in _FIELDS:
            field = form.query_one(f"#field-{key}", Input)
            assert field.value == "" and field.placeholder.startswith("e.g. "), key
        labels = [str(button.label) for button in form.query(Button)]
        assert labels == ["Cancel", "Decide later", "Sequentially", "Schedule…", "Send now"]


@scenario
async def test_new_mailing_previews_the_message_as_recipient_n_before_creating(db, files):
    async with open_dashboard(db.store) as (app, pilot):
        form = await _fill_form(pilot, **_form_values(files, html=""))
        await _press_button(pilot, form, "now")
        preview = await wait_for_screen(pilot, PreviewScreen)
        assert text_of(preview.query_one("#title")) == (
            "Preview of “March newsletter”: not created yet"
        )
        message = preview.query_one("#message", Static)
        assert text_of(message) == (
            "From: Shop <news@shop.example.com>\n"
            "To: anna@example.com\n"
            "Subject: News for Anna\n"
            "\n"
            "Hello Anna"
        )
        preview.query_one("#number", Input).value = "2"
        await until(pilot, lambda: "To: ben@example.com" in text_of(message), "recipient 2")
        assert "Subject: News for Ben" in text_of(message)
        preview.query_one("#number", Input).value = "3"
        await until(pilot, lambda: "has no recipient number 3" in text_of(message), "no 3rd")
        assert db.names() == set()  # a preview creates nothing

        await _press_button(pilot, preview, "cancel")  # Back: to the form, as it was
        await until(pilot, lambda: app.screen is form, "back to the form")
        await settle(pilot)
        assert db.names() == set()
        assert not form.query_one("#now", Button).disabled


@scenario
async def test_new_mailing_can_skip_invalid_rows_and_says_which(db, files):
    async with open_dashboard(db.store) as (app, pilot):
        form = await _fill_form(pilot, **_form_values(files, recipients=str(files["bad"])))
        await _press_button(pilot, form, "later")
        preview = await wait_for_screen(pilot, PreviewScreen)
        preview.query_one("#number", Input).value = "2"  # line 3 of the file
        message = preview.query_one("#message", Static)
        await until(pilot, lambda: "This row is no recipient" in text_of(message), "row 2")
        assert text_of(message).startswith("'not-an-address': An email address must have")
        await pilot.press("enter")  # Create
        error = form.query_one("#error-recipients", Static)
        await until(pilot, lambda: text_of(error), "the refusal")
        assert "2 invalid rows, nothing imported (“Skip invalid rows” imports the 1 valid one)" in (
            text_of(error)
        )
        await settle(pilot)
        assert db.names() == set()

        await pilot.click("#skip-invalid")
        await _create(pilot, form, "later")
        await until(pilot, lambda: db.names() == {"March newsletter"}, "creation")
        await settle(pilot)
        (mailing,) = [db.get(m) for m in app.dashboard.table(Area.STANDBY).mailing_ids]
        assert mailing.total == 1
        assert (
            "skipped 2 invalid rows: line 3: 'not-an-address': An email address must have an"
            " @-sign.; line 4: 'also bad': An email address must have an @-sign."
        ) in notifications(app)


@scenario
async def test_new_mailing_takes_the_unsubscribe_url_and_address(db, files):
    async with open_dashboard(db.store) as (app, pilot):
        values = _form_values(files, **{"unsubscribe-url": "http://shop.example.com/u"})
        form = await _fill_form(pilot, **values)
        await _press_button(pilot, form, "later")
        error = form.query_one("#error-unsubscribe-url", Static)
        await until(pilot, lambda: text_of(error), "the refusal")
        assert "https" in text_of(error)
        assert db.names() == set()

        form.query_one(
            "#field-unsubscribe-url", Input
        ).value = "https://shop.example.com/u/{unsubscribe_token}"
        form.query_one("#field-unsubscribe-mailto", Input).value = "leave@shop.example.com"
        await _press_button(pilot, form, "later")
        preview = await wait_for_screen(pilot, PreviewScreen)
        shown = text_of(preview.query_one("#message", Static))
        assert "List-Unsubscribe: <https://shop.example.com/u/" in shown
        assert ", <mailto:leave@shop.example.com>" in shown
        await pilot.press("enter")  # Create
        await until(pilot, lambda: db.names() == {"March newsletter"}, "creation")
        await settle(pilot)
        with db.store.read() as session:
            (mailing,) = session.exec(select(Mailing)).all()
        assert (mailing.unsubscribe_url, mailing.unsubscribe_mailto) == (
            "https://shop.example.com/u/{unsubscribe_token}",
            "leave@shop.example.com",
        )
