"""A new mailing: name, subject, sender, body file, recipients CSV, then Send now,
Schedule or Decide later. The form posts a Submitted message with its request; whoever
creates the mailing answers with ``show_error`` (the form stays open) or ``dismiss``."""

from dataclasses import dataclass
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

FIELDS = (
    ("name", "Name", "November newsletter"),
    ("subject", "Subject", "News for {first_name}"),
    ("from", "From", "Shop <news@shop.example.com>"),
    ("text", "Text body file", "body.txt"),
    ("html", "HTML body file", "body.html (optional)"),
    ("recipients", "Recipients CSV", "people.csv (an email column)"),
)


@dataclass(frozen=True)
class NewMailingRequest:
    name: str
    subject: str
    sender: str
    text_path: Path | None
    html_path: Path | None
    recipients_path: Path
    choice: str  # "now", "schedule" or "later"


class NewMailingForm(ModalScreen[None]):
    class Submitted(Message):
        """The form's request; the form waits for ``show_error`` or ``dismiss``."""

        def __init__(self, form: "NewMailingForm", request: NewMailingRequest):
            super().__init__()
            self.form, self.request = form, request

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="modal-frame"):
            yield Label("New mailing", id="title")
            for key, label, placeholder in FIELDS:
                yield Label(label, classes="field-label")
                yield Input(placeholder=placeholder, id=f"field-{key}", compact=True)
                yield Static("", id=f"error-{key}", classes="field-error")
            with Horizontal():
                yield Button("Cancel", id="cancel")
                yield Button("Decide later", id="later")
                yield Button("Schedule…", id="schedule")
                yield Button("Send now", id="now", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#field-name", Input).focus()

    submitting = False

    def show_error(self, field: str, message: str) -> None:
        """Shows a refusal at its field (``body`` errors go to the text body)."""
        self._set_submitting(False)
        field = {"body": "text"}.get(field, field)
        if field not in {key for key, _, _ in FIELDS}:
            field = "recipients"  # CSV problems
        self.query_one(f"#error-{field}", Static).update(message)
        self.query_one(f"#field-{field}", Input).focus()

    def clear_errors(self) -> None:
        for key, _, _ in FIELDS:
            self.query_one(f"#error-{key}", Static).update("")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.dismiss(None)
            return
        if self.submitting:
            return  # one mailing per form, however often a button is pressed
        self.clear_errors()
        value = {key: self.query_one(f"#field-{key}", Input).value.strip() for key, _, _ in FIELDS}
        if not value["recipients"]:
            self.show_error("recipients", "a CSV file with an email column is needed")
            return
        choice = event.button.id
        assert choice is not None  # every button of the form has an id
        request = NewMailingRequest(
            name=value["name"],
            subject=value["subject"],
            sender=value["from"],
            text_path=Path(value["text"]).expanduser() if value["text"] else None,
            html_path=Path(value["html"]).expanduser() if value["html"] else None,
            recipients_path=Path(value["recipients"]).expanduser(),
            choice=choice,
        )
        self._set_submitting(True)
        self.post_message(self.Submitted(self, request))

    def _set_submitting(self, submitting: bool) -> None:
        self.submitting = submitting
        for button in self.query(Button):
            button.disabled = submitting and button.id != "cancel"
