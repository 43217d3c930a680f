"""The keys, and what the panes mean, on one 80×24 screen: the keys' lines come from the
action registry."""

from itertools import zip_longest

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from sendstatus_tui.tui.actions import ACTIONS, keys_shown

PANES = """\
Sending now: what goes out, or why it waits (no engine, the relay down).
Scheduled sendings: at a date and time, then the sequential queue in order.
Sends to schedule: parked mailings (decided later, stopped, interrupted)."""
# the focus's own key, which is not an action of ours
MOVING = (("tab", "Next pane"),)
GAP = 1


def key_lines() -> list[tuple[str, str]]:
    """(keys, meaning) for every key, the cursor's first."""
    return [*MOVING, *((keys_shown(a), a.title) for a in ACTIONS if a.keys)]


def help_text() -> str:
    lines = key_lines()
    key_width = max(len(keys) for keys, _ in lines) + 2
    entries = [f"{keys:<{key_width}}{meaning}" for keys, meaning in lines]
    half = (len(entries) + 1) // 2
    left_width = max(len(entry) for entry in entries[:half]) + GAP
    columns = zip_longest(entries[:half], entries[half:], fillvalue="")
    keys = "\n".join(f"{left:<{left_width}}{right}".rstrip() for left, right in columns)
    return f"{PANES}\n\n{keys}"


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,q,question_mark", "app.pop_screen", "Close")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-frame"):
            yield Label("Send Status: keys and panes", id="title")
            yield Static(help_text(), id="help")
            yield Label("escape, ? or q closes", id="closes")
