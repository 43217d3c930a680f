"""Export the failed recipients: the CSV file to write them to (``sendstatus failed ID
--csv FILE`` writes the same file)."""

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from sendstatus_tui.views.cells import quoted


class ExportFailedModal(ModalScreen[Path | None]):
    """Dismisses with the file to write, or None."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, mailing_name: str, suggested: Path):
        super().__init__()
        self._mailing_name, self._suggested = mailing_name, suggested

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-frame"):
            yield Label(f"Export the failed recipients of {quoted(self._mailing_name)}", id="title")
            yield Static(
                "to a CSV file with their fields, class and reply (`mailing add` takes it back)"
            )
            yield Input(value=str(self._suggested), id="path")
            with Horizontal():
                yield Button("Cancel", id="cancel")
                yield Button("Export", id="export", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#export", Button).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.query_one("#export", Button).disabled = not event.value.strip()

    def on_input_submitted(self) -> None:
        self._export()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "export":
            self._export()
        else:
            self.dismiss(None)

    def _export(self) -> None:
        text = self.query_one("#path", Input).value.strip()
        if text:
            self.dismiss(Path(text).expanduser())
