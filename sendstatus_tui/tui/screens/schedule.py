"""Schedule at a date and time: validated as you type, the past refused, the zone shown;
with the sending window it may send in, prefilled with the mailing's own."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo

from sqlmodel import Session
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from sendstatus_tui.core.model import lifecycle
from sendstatus_tui.core.model.when import (
    ACCEPTED_FORMS,
    WhenError,
    format_local,
    parse_when,
    zone_label,
)
from sendstatus_tui.core.model.window import parse_window
from sendstatus_tui.errors import SendStatusError
from sendstatus_tui.views.cells import quoted


@dataclass(frozen=True)
class Scheduled:
    """What the dialog was confirmed with: the time, and the window as stored (None: any
    hour)."""

    when: datetime
    window: str | None


def schedule_in_window(
    session: Session,
    mailing_id: int,
    scheduled: Scheduled,
    now: datetime,
    *,
    zone_name: str | None,
) -> None:
    """The dialog's choice, in one transaction: the window, then the time."""
    lifecycle.set_window(session, mailing_id, scheduled.window)
    lifecycle.schedule_at(session, mailing_id, scheduled.when, now, zone_name=zone_name)


class ScheduleModal(ModalScreen[Scheduled | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(
        self,
        mailing_name: str,
        zone: tzinfo,
        zone_name: str | None,
        clock: Callable[[], datetime],
        initial: str = "",
        window: str | None = None,
    ):
        """``window``: the mailing's own (a new mailing's: the default), to keep or edit."""
        super().__init__()
        self._mailing_name, self._zone, self._zone_name = mailing_name, zone, zone_name
        self._clock, self._initial, self._initial_window = clock, initial, window or ""
        self._when: datetime | None = None
        self._window: str | None = None
        self._window_ok = True

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-frame"):
            yield Label(f"Schedule {quoted(self._mailing_name)}", id="title")
            yield Static(f"Date and time in {self._zone} ({ACCEPTED_FORMS})")
            yield Input(value=self._initial, placeholder="YYYY-MM-DD HH:MM", id="when")
            yield Static("", id="feedback")
            yield Static("Sending window, e.g. Mon-Fri 09:00-18:00 (empty: any hour)")
            yield Input(value=self._initial_window, placeholder="any hour", id="window")
            yield Static("", id="window-feedback")
            with Horizontal():
                yield Button("Cancel", id="cancel")
                yield Button("Schedule", id="schedule", variant="primary", disabled=True)

    def on_mount(self) -> None:
        self._check_window(self._initial_window)
        self._validate(self._initial)
        self.query_one("#when", Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "window":
            self._check_window(event.value)
        else:
            self._validate(event.value)
        self._enable()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if self._when is not None and self._window_ok:
            self.dismiss(Scheduled(self._when, self._window))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "schedule" and self._when is not None:
            self.dismiss(Scheduled(self._when, self._window))
        else:
            self.dismiss(None)

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
        _tell(feedback, message, ok)
        self._enable()

    def _check_window(self, text: str) -> None:
        """A window that names no zone is read in the dashboard's."""
        feedback = self.query_one("#window-feedback", Static)
        self._window, self._window_ok = None, True
        if not text.strip():
            _tell(feedback, "", True)
            return
        try:
            parsed = parse_window(text, zone_label(self._zone))
        except SendStatusError as exc:
            self._window_ok = False
            _tell(feedback, str(exc), False)
            return
        self._window = None if parsed is None else parsed.text
        _tell(feedback, f"sends only {self._window}" if self._window else "any hour", True)

    def _enable(self) -> None:
        ready = self._when is not None and self._window_ok
        self.query_one("#schedule", Button).disabled = not ready


def _tell(feedback: Static, message: str, ok: bool) -> None:
    feedback.update(message)
    feedback.set_class(bool(message) and not ok, "error")
    feedback.set_class(ok and bool(message), "ok")
