"""The keys, and what the panes mean."""

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# Send Status

**Sending now**: what is going out. A mailing that was just sent shows a blinking
*starting up* under Start date while it is prepared.
**Scheduled sendings**: mailings set for a date and time, then the sequential queue (sent
one after the other, in the order shown).
**Sends to schedule**: parked mailings (decided later, stopped, or interrupted), waiting
for an action.

| key | action |
|---|---|
| ↑ ↓ | move the cursor |
| tab | next pane |
| enter | the Actions menu for the selected mailing |
| s | send now |
| t | schedule at a date and time |
| e | send sequentially (enqueue) |
| x | stop |
| shift+↑ / K | move up in the sequential queue |
| shift+↓ / J | move down in the sequential queue |
| d | details |
| n | new mailing |
| delete | delete a parked mailing |
| / | filter by name |
| ? | this help |
| q | quit |
"""


class HelpScreen(ModalScreen):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 80; height: 90%; border: thick $accent; background: $surface;
    }
    """
    BINDINGS = [Binding("escape,q,question_mark", "app.pop_screen", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Markdown(HELP)
