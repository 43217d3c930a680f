"""A yes/no question in a modal: stop, delete, retry, the sequential warning, quitting.

One habit for every question: one about a destructive action (stop, delete, retry, quit
while this dashboard's engine sends) is asked ``safe``, with Cancel focused; any other has
Confirm focused. Mailing names in the question are ``views.cells.quoted``."""

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static


class ConfirmModal(ModalScreen[bool]):
    BINDINGS = [
        Binding("escape", "answer(False)", "Cancel"),
        Binding("y", "answer(True)", "Yes", show=False),
        Binding("n", "answer(False)", "No", show=False),
    ]

    def __init__(
        self, title: str, message: str, confirm_label: str = "Confirm", *, safe: bool = False
    ):
        """``safe``: the question is about something destructive (it cannot be undone, or
        stops a sending); Cancel has the focus, so that a stray enter changes nothing."""
        super().__init__()
        self._title, self._message, self._confirm_label = title, message, confirm_label
        self._safe = safe

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-frame"):
            yield Label(self._title, id="title")
            yield Static(self._message, id="message")
            with Horizontal():
                yield Button("Cancel", id="cancel")
                yield Button(self._confirm_label, id="confirm", variant="warning")

    def on_mount(self) -> None:
        self.query_one("#cancel" if self._safe else "#confirm", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)
