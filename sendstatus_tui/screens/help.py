"""The keys, and what the panes mean: the keys' lines come from the action registry."""

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

from ..actions import ACTIONS, keys_shown

PANES = """\
# Send Status

**Sending now**: what is going out. A mailing that was just sent shows a blinking
*starting up* under Start date while it is prepared.
**Scheduled sendings**: mailings set for a date and time, then the sequential queue (sent
one after the other, in the order shown).
**Sends to schedule**: parked mailings (decided later, stopped, or interrupted), waiting
for an action.
"""
# the tables' and the focus's own keys, which are not actions of ours
MOVING = (("↑ ↓", "move the cursor"), ("tab", "next pane"))


def help_text() -> str:
    rows = [*MOVING, *((keys_shown(a), a.help) for a in ACTIONS if a.keys)]
    table = "\n".join(f"| {keys} | {meaning} |" for keys, meaning in rows)
    return f"{PANES}\n| key | action |\n|---|---|\n{table}\n"


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,q,question_mark", "app.pop_screen", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="modal-frame"):
            yield Markdown(help_text())
