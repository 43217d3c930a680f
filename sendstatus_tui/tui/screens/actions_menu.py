"""The Actions menu: only what the selected mailing's state allows."""

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from sendstatus_tui.core.model.states import State
from sendstatus_tui.tui.actions import menu_entries
from sendstatus_tui.views.cells import quoted, state_shown


class ActionsMenu(ModalScreen[str | None]):
    """Dismisses with the chosen action's name, or None."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Close")]

    def __init__(self, mailing_name: str, state: State):
        super().__init__()
        self._mailing_name, self._state = mailing_name, state

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-frame"):
            yield Label(f"Actions: {quoted(self._mailing_name)} ({state_shown(self._state)})")
            yield OptionList(
                *[Option(action.menu_label, id=action.name) for action in menu_entries(self._state)]
            )

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)
