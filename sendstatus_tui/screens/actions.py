"""The Actions menu: only what the selected mailing's state allows."""

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from ..core.states import Action, State, allowed_operator_actions

# (id, label) for each menu entry an action allows
_ENTRIES = {
    Action.SEND_NOW: [("send_now", "Send now")],
    Action.SCHEDULE_AT: [("schedule", "Schedule at a date and time…")],
    Action.ENQUEUE: [("enqueue", "Send sequentially")],
    Action.MOVE: [
        ("move_up", "Move up in the queue"),
        ("move_down", "Move down in the queue"),
        ("move_top", "Move to the top of the queue"),
        ("move_bottom", "Move to the bottom of the queue"),
    ],
    Action.STOP: [("stop", "Stop…")],
    Action.DELETE: [("delete", "Delete…")],
}


def menu_entries(state: State) -> list[tuple[str, str]]:
    entries = [entry for action in allowed_operator_actions(state) for entry in _ENTRIES[action]]
    entries.append(("details", "Details"))
    return entries


class ActionsMenu(ModalScreen[str | None]):
    DEFAULT_CSS = """
    ActionsMenu { align: center middle; }
    ActionsMenu > Vertical {
        width: 50; height: auto; border: thick $accent; background: $surface; padding: 0 1;
    }
    ActionsMenu Label { text-style: bold; padding: 1 1 0 1; }
    ActionsMenu OptionList { height: auto; border: none; }
    """
    BINDINGS = [Binding("escape", "dismiss(None)", "Close")]

    def __init__(self, mailing_name: str, state: State):
        super().__init__()
        self._name, self._state = mailing_name, state

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Actions: {self._name} ({self._state})")
            yield OptionList(*[Option(label, id=key) for key, label in menu_entries(self._state)])

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)
