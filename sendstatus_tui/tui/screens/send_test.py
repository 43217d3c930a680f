"""Send a test: the addresses to send the selected mailing to, checked as you type."""

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from sendstatus_tui.core.reads.trial import BadTestAddress, parse_test_addresses
from sendstatus_tui.views.cells import quoted


class SendTestModal(ModalScreen[list[str] | None]):
    """Dismisses with the addresses to send the test to, or None."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, mailing_name: str, relay: str):
        super().__init__()
        self._mailing_name, self._relay = mailing_name, relay
        self._addresses: list[str] | None = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-frame"):
            yield Label(f"Send a test of {quoted(self._mailing_name)}", id="title")
            yield Static(f"as its first recipient, now, through {self._relay}", id="through")
            yield Input(placeholder="you@example.com, colleague@example.com", id="to")
            yield Static("", id="feedback")
            with Horizontal():
                yield Button("Cancel", id="cancel")
                yield Button("Send test", id="send", variant="primary", disabled=True)

    def on_input_changed(self, event: Input.Changed) -> None:
        feedback = self.query_one("#feedback", Static)
        try:
            self._addresses = parse_test_addresses(event.value)
            feedback.update("")
        except BadTestAddress as exc:
            self._addresses = None
            feedback.update(str(exc) if event.value.strip() else "")
        self.query_one("#send", Button).disabled = self._addresses is None

    def on_input_submitted(self) -> None:
        if self._addresses is not None:
            self.dismiss(self._addresses)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(self._addresses if event.button.id == "send" else None)
