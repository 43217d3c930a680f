"""Schedule at a date and time: validated as you type, the past refused, the zone shown."""

from collections.abc import Callable
from datetime import datetime, tzinfo

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from sendstatus_tui.core.model.when import ACCEPTED_FORMS, WhenError, format_local, parse_when
from sendstatus_tui.views.cells import quoted


class ScheduleModal(ModalScreen[datetime | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(
        self,
        mailing_name: str,
        zone: tzinfo,
        zone_name: str | None,
        clock: Callable[[], datetime],
        initial: str = "",
    ):
        super().__init__()
        self._mailing_name, self._zone, self._zone_name = mailing_name, zone, zone_name
        self._clock, self._initial = clock, initial
        self._when: datetime | None = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-frame"):
            yield Label(f"Schedule {quoted(self._mailing_name)}", id="title")
            yield Static(f"Date and time in {self._zone} ({ACCEPTED_FORMS})")
            yield Input(value=self._initial, placeholder="YYYY-MM-DD HH:MM", id="when")
            yield Static("", id="feedback")
            with Horizontal():
                yield Button("Cancel", id="cancel")
                yield Button("Schedule", id="schedule", variant="primary", disabled=True)

    def on_mount(self) -> None:
        self._validate(self._initial)

    def on_input_changed(self, event: Input.Changed) -> None:
        self._validate(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if self._when is not None:
            self.dismiss(self._when)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(self._when if event.button.id == "schedule" else None)

    def _validate(self, text: str) -> None:
        feedback = self.query_one("#feedback", Static)
        self._when = None
        message, ok = "", False
        if text.strip():
            try:
                when = parse_when(text, self._zone_name)
            except WhenError as exc:
                message = str(exc)
            else:
                now = self._clock()
                if when <= now:
                    message = (
                        f"{format_local(when, self._zone)} is in the past"
                        f" (it is now {format_local(now, self._zone)}); use Send now instead"
                    )
                else:
                    self._when, ok = when, True
                    message = f"starts {format_local(when, self._zone)} ({self._zone})"
        feedback.update(message)
        feedback.set_class(bool(message) and not ok, "error")
        feedback.set_class(ok, "ok")
        self.query_one("#schedule", Button).disabled = not ok
