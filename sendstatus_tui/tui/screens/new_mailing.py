"""A new mailing, as ``mailing add`` takes it: name, subject, sender, body files,
recipients CSV (and whether to skip its invalid rows), the unsubscribe URL and address,
then one of the four choices (Send now, Schedule…, Sequentially, Decide later). The form
posts a Submitted message with its request; whoever creates the mailing answers with
``show_errors`` (the form stays open, nothing created) or ``dismiss``. Fits 80×24 with its
buttons in view."""

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Static

# (key, label, example): the examples show as placeholders, marked "e.g." and dimmed
FIELDS = (
    ("name", "Name", "November newsletter"),
    ("subject", "Subject", "News for {first_name}"),
    ("from", "From", "Shop <news@shop.example.com>"),
    ("text", "Text body file", "body.txt"),
    ("html", "HTML body file", "body.html (optional)"),
    ("recipients", "Recipients CSV", "people.csv (an email column)"),
    ("unsubscribe-url", "Unsubscribe URL", "https://shop.example.com/u/{unsubscribe_token}"),
    ("unsubscribe-mailto", "Unsubscribe email", "unsubscribe@shop.example.com"),
)
# where neither is given, the mailing takes the stored defaults (`config set unsubscribe_url`)
OPTIONAL = {"html", "unsubscribe-url", "unsubscribe-mailto"}
FIELD_KEYS = tuple(key for key, _, _ in FIELDS)
# (button id, label): the four ways to plan a new mailing, Cancel first
CHOICES = (
    ("later", "Decide later"),
    ("sequential", "Sequentially"),
    ("schedule", "Schedule…"),
    ("now", "Send now"),
)


@dataclass(frozen=True)
class NewMailingRequest:
    name: str
    subject: str
    sender: str
    text_path: Path | None
    html_path: Path | None
    recipients_path: Path | None
    choice: str  # "now", "schedule", "sequential" or "later"
    when: datetime | None = None  # for "schedule", once the time is chosen
    skip_invalid: bool = False  # import the valid rows of the CSV, skip the invalid ones
    unsubscribe_url: str | None = None  # None: the stored default, if any
    unsubscribe_mailto: str | None = None


class NewMailingForm(ModalScreen[None]):
    class Submitted(Message):
        """The form's request; the form waits for ``show_errors`` or ``dismiss``."""

        def __init__(self, form: "NewMailingForm", request: NewMailingRequest):
            super().__init__()
            self.form, self.request = form, request

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-frame"):
            yield Label("New mailing", id="title")
            for key, label, example in FIELDS:
                with Horizontal(classes="field"):
                    yield Label(label, classes="field-label")
                    optional = (
                        " (optional)" if key in OPTIONAL and "optional" not in example else ""
                    )
                    yield Input(
                        placeholder=f"e.g. {example}{optional}", id=f"field-{key}", compact=True
                    )
                yield Static("", id=f"error-{key}", classes="field-error")
                if key == "recipients":
                    yield Checkbox(
                        "Skip invalid rows (import the valid ones)",
                        id="skip-invalid",
                        compact=True,
                    )
            with Horizontal(id="buttons"):
                yield Button("Cancel", id="cancel", compact=True)
                for choice, label in CHOICES:
                    yield Button(
                        label,
                        id=choice,
                        variant="primary" if choice == "now" else "default",
                        compact=True,
                    )

    def on_mount(self) -> None:
        self.query_one("#field-name", Input).focus()

    submitting = False

    def on_screen_resume(self) -> None:
        if self.submitting:  # back from the preview, creating: a stray enter cancels nothing
            name = self.query_one("#field-name", Input)
            self.call_after_refresh(name.focus)

    def show_errors(self, errors: dict[str, str]) -> None:
        """Shows every refusal at its field at once (``body`` errors at the text body, any
        other at the recipients: CSV problems), the first of them focused; none: the form
        is ready for another try."""
        self._set_submitting(False)
        self.clear_errors()
        by_field: dict[str, list[str]] = {}
        for field, message in errors.items():
            field = {"body": "text"}.get(field, field)
            by_field.setdefault(field if field in FIELD_KEYS else "recipients", []).append(message)
        for field, messages in by_field.items():
            error = self.query_one(f"#error-{field}", Static)
            error.update("\n".join(messages))
            error.add_class("shown")
        first = next((key for key in FIELD_KEYS if key in by_field), None)
        if first is not None:
            self.query_one(f"#field-{first}", Input).focus()

    def show_error(self, field: str, message: str) -> None:
        self.show_errors({field: message})

    def clear_errors(self) -> None:
        for key in FIELD_KEYS:
            error = self.query_one(f"#error-{key}", Static)
            error.update("")
            error.remove_class("shown")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.dismiss(None)
            return
        if self.submitting:
            return  # one mailing per form, however often a button is pressed
        choice = event.button.id
        assert choice is not None  # every button of the form has an id
        self.clear_errors()
        self._set_submitting(True)
        self.post_message(self.Submitted(self, self.request(choice)))

    def request(self, choice: str) -> NewMailingRequest:
        value = {key: self.query_one(f"#field-{key}", Input).value.strip() for key in FIELD_KEYS}

        def path(key: str) -> Path | None:
            return Path(value[key]).expanduser() if value[key] else None

        return NewMailingRequest(
            name=value["name"],
            subject=value["subject"],
            sender=value["from"],
            text_path=path("text"),
            html_path=path("html"),
            recipients_path=path("recipients"),
            choice=choice,
            skip_invalid=self.query_one("#skip-invalid", Checkbox).value,
            unsubscribe_url=value["unsubscribe-url"] or None,
            unsubscribe_mailto=value["unsubscribe-mailto"] or None,
        )

    def _set_submitting(self, submitting: bool) -> None:
        self.submitting = submitting
        for button in self.query(Button):
            button.disabled = submitting and button.id != "cancel"
