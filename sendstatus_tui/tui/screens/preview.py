"""A preview of a message as its N-th recipient gets it: the headers and the text,
personalised. ``p`` on a mailing; the new-mailing form shows it before creating (then it
asks: Create, or back to the form)."""

from collections.abc import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from sendstatus_tui.errors import SendStatusError
from sendstatus_tui.tui.trouble import guarded
from sendstatus_tui.views.preview import Preview


class PreviewScreen(ModalScreen[bool]):
    """Dismisses with True when its question (``confirm_label``) is confirmed, else False."""

    BINDINGS = [Binding("escape", "dismiss(False)", "Close")]

    def __init__(
        self,
        title: str,
        load: Callable[[int], Preview],
        *,
        confirm_label: str | None = None,
        first: Preview | None = None,
    ):
        """``load(number)`` reads the preview as recipient ``number`` (in a thread: it reads
        the database or a file); ``first``: recipient 1's, already read."""
        super().__init__()
        self._title, self._load, self._confirm_label, self._first = (
            title,
            load,
            confirm_label,
            first,
        )

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-frame"):
            yield Label(self._title, id="title")
            with Horizontal(id="as"):
                yield Label("As recipient number ")
                yield Input("1", restrict=r"\d*", max_length=9, id="number", compact=True)
                yield Static("", id="persona")
            with VerticalScroll(id="scroll"):
                yield Static("", id="message")
            with Horizontal(id="buttons"):
                if self._confirm_label:
                    yield Button("Back", id="cancel", compact=True)
                    yield Button(self._confirm_label, id="confirm", variant="primary", compact=True)
                else:
                    yield Label("a number: another recipient · escape closes", id="closes")

    def on_mount(self) -> None:
        if self._first is not None:
            self._show(self._first, None)
        else:
            self.load(1)
        focused = "#confirm" if self._confirm_label else "#number"
        self.query_one(focused).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.value.isdigit() and int(event.value) >= 1:
            self.load(int(event.value))

    @guarded(thread=True, exclusive=True, group="preview")
    def load(self, number: int) -> None:
        try:
            preview, error = self._load(number), None
        except SendStatusError as exc:  # no such recipient, an unreadable file
            preview, error = None, str(exc)
        self.app.call_from_thread(self._show, preview, error)

    def _show(self, preview: Preview | None, error: str | None) -> None:
        persona = self.query_one("#persona", Static)
        message = self.query_one("#message", Static)
        if preview is None:
            persona.update("")
            message.update(error or "")
            return
        lacks = ", ".join("{" + name + "}" for name in preview.empty_fields)
        persona.update(f" {preview.email}" + (f" (no value for {lacks})" if lacks else ""))
        message.update(preview.text)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm")
