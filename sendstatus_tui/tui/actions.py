"""Every action of the dashboard, declared once: its keys, its labels, the states it applies
to and the method that does it. The key bindings, the footer, the Actions menu, the command
palette and the help screen are all built from this list, so they cannot disagree.

An action named ``x`` is done by the ``action_x`` method of the dashboard screen, or of the
app for the few that work on every screen (``scope="app"``).
"""

from dataclasses import dataclass
from typing import Literal

from textual.binding import Binding, BindingType

from sendstatus_tui.core.model.states import OPERATOR_ACTIONS, TRANSITIONS, Action, State


@dataclass(frozen=True)
class DashboardAction:
    name: str
    keys: str  # Textual key names, comma-separated; "" for the menu and palette only
    footer: str  # the footer's short label
    title: str  # the Actions menu's and the palette's label
    help: str  # the palette's and the help screen's explanation
    rule: Action | None = None  # the lifecycle rule that says which states it applies to
    on_selection: bool = False  # acts on the selected mailing (so needs one)
    asks: bool = False  # opens a dialog first: the menu says so with "…"
    menu: bool = False
    palette: bool = True
    scope: Literal["dashboard", "app"] = "dashboard"
    # checked before the focused widget (which may want the key too), only where it applies
    priority: bool = False
    footer_shown: bool = True  # cursor keys are in the help, not in the footer
    moves_cursor: bool = False  # only while a pane has the focus (not the filter field)

    def applies_to(self, state: State | None) -> bool:
        """Whether it makes sense with ``state`` selected (None: nothing is selected)."""
        if not self.on_selection:
            return True
        return state is not None and (self.rule is None or state in TRANSITIONS[self.rule])

    @property
    def menu_label(self) -> str:
        return self.title + ("…" if self.asks else "")

    def binding(self) -> Binding:
        return Binding(
            self.keys, self.name, self.footer, show=self.footer_shown, priority=self.priority
        )


def _on_selection(name: str, keys: str, footer: str, title: str, help: str, **more):
    return DashboardAction(name, keys, footer, title, help, on_selection=True, menu=True, **more)


def _cursor(name: str, keys: str, title: str) -> DashboardAction:
    # moving the cursor: in the help, not in the footer, the menu or the palette; before
    # the table's own home/end (which scroll without moving the cursor)
    return DashboardAction(
        name,
        keys,
        "",
        title,
        title,
        palette=False,
        footer_shown=False,
        priority=True,
        moves_cursor=True,
    )


ACTIONS = (
    _cursor("cursor_down", "down,j", "Cursor down"),
    _cursor("cursor_up", "up,k", "Cursor up"),
    _cursor("first_row", "g,home", "First row"),
    _cursor("last_row", "G,end", "Last row"),
    # the table under the cursor would take enter as its own "select"
    DashboardAction(
        "actions",
        "enter",
        "Actions",
        "Actions",
        "the Actions menu: what the selected mailing's state allows",
        on_selection=True,
        palette=False,
        priority=True,
    ),
    _on_selection(
        "send_now", "s", "Send", "Send now", "start the selected mailing now", rule=Action.SEND_NOW
    ),
    _on_selection(
        "schedule",
        "t",
        "Schedule",
        "Schedule at a date and time",
        "schedule (or reschedule) the selected mailing",
        rule=Action.SCHEDULE_AT,
        asks=True,
    ),
    _on_selection(
        "enqueue",
        "e",
        "Queue",
        "Send sequentially",
        "append the selected mailing to the sequential queue",
        rule=Action.ENQUEUE,
    ),
    _on_selection(
        "stop",
        "x",
        "Stop",
        "Stop",
        "park the selected mailing in Sends to schedule",
        rule=Action.STOP,
        asks=True,
    ),
    _on_selection(
        "move_up",
        "shift+up,plus",
        "Up",
        "Move up in the queue",
        "move up in the sequential queue",
        rule=Action.MOVE,
    ),
    _on_selection(
        "move_down",
        "shift+down,minus",
        "Down",
        "Move down in the queue",
        "move down in the sequential queue",
        rule=Action.MOVE,
    ),
    _on_selection(
        "move_top",
        "",
        "Top",
        "Move to the top of the queue",
        "first in the sequential queue",
        rule=Action.MOVE,
    ),
    _on_selection(
        "move_bottom",
        "",
        "Bottom",
        "Move to the bottom of the queue",
        "last in the sequential queue",
        rule=Action.MOVE,
    ),
    _on_selection(
        "retry",
        "",
        "Retry",
        "Retry the failed recipients",
        "put the refused (5xx) and deferred (4xx) recipients of a stopped mailing back to"
        " pending, to send them again",
        rule=Action.RETRY,
        asks=True,
    ),
    _on_selection(
        "test_send",
        "",
        "Test",
        "Send a test",
        "send the selected mailing to a few addresses now, personalised as its first"
        " recipient (nothing is counted)",
        asks=True,
    ),
    _on_selection(
        "export_failed",
        "",
        "Export",
        "Export the failed recipients",
        "write the failed recipients to a CSV file (with why each failed), as `sendstatus"
        " failed ID --csv FILE` does",
        asks=True,
    ),
    _on_selection(
        "copy",
        "",
        "Copy",
        "Copy as a new parked mailing",
        "a new mailing in Sends to schedule with the same message, recipients and settings,"
        " none of its outcomes",
        asks=True,
    ),
    _on_selection(
        "preview",
        "p",
        "Preview",
        "Preview the message",
        "the message as its N-th recipient gets it: headers and text, personalised",
    ),
    _on_selection(
        "details",
        "d",
        "Details",
        "Details",
        "counters, send rate and errors of the selected mailing",
    ),
    _on_selection(
        "delete",
        "delete",
        "Delete",
        "Delete",
        "delete the selected parked mailing",
        rule=Action.DELETE,
        asks=True,
    ),
    DashboardAction(
        "completed_today",
        "H",
        "Completed",
        "Completed today",
        "the mailings completed today, with their counters",
        footer_shown=False,
    ),
    DashboardAction(
        "activity",
        "A",
        "Activity",
        "Activity",
        "who changed what, when: every change to the mailings, newest first",
        footer_shown=False,
    ),
    DashboardAction(
        "engines",
        "E",
        "Engines",
        "Engines",
        "the engines on this database: who leads, what each sends, its relay connections",
        footer_shown=False,
    ),
    DashboardAction(
        "new_mailing", "n", "New", "New mailing", "name, subject, sender, body, recipients"
    ),
    DashboardAction(
        "filter",
        "slash",
        "Filter",
        "Filter by name",
        "show only mailings whose name (or id) matches",
    ),
    DashboardAction("help", "question_mark", "Help", "Help", "keys and panes", scope="app"),
    DashboardAction(
        "quit_dashboard",
        "q",
        "Quit",
        "Quit",
        "quit (asks first while this dashboard's engine is sending)",
        palette=False,
        scope="app",
    ),
)
BY_NAME = {action.name: action for action in ACTIONS}
ALWAYS_IN_FOOTER = ("help", "quit_dashboard")


def bindings(
    scope: Literal["dashboard", "app"], *, selection_only: bool = False
) -> list[BindingType]:
    """The bindings of ``scope`` (``selection_only``: of the actions on the selected mailing
    alone, for H); each key that acts on the selection has a second, hidden binding after
    its own, ``why(name)``, which Textual tries when the first does not apply: the key
    then says why instead of doing nothing."""
    own = [
        action
        for action in ACTIONS
        if action.keys and action.scope == scope and (action.on_selection or not selection_only)
    ]
    return [action.binding() for action in own] + [
        Binding(action.keys, f"why('{action.name}')", "", show=False, priority=action.priority)
        for action in own
        if action.on_selection
    ]


def menu_entries(state: State) -> list[DashboardAction]:
    """What the Actions menu offers for ``state``, in the order of the lifecycle (send,
    schedule, enqueue, move, stop, delete), then the rest."""

    def lifecycle_order(action: DashboardAction) -> int:
        return OPERATOR_ACTIONS.index(action.rule) if action.rule else len(OPERATOR_ACTIONS)

    offered = [action for action in ACTIONS if action.menu and action.applies_to(state)]
    return sorted(offered, key=lifecycle_order)


_KEY_SHOWN = {
    "up": "↑",
    "down": "↓",
    "slash": "/",
    "question_mark": "?",
    "plus": "+",
    "minus": "-",
    "home": "Home",
    "end": "End",
}


def keys_shown(action: DashboardAction) -> str:
    """The keys as the help screen writes them, e.g. ``shift+↑ / K``."""

    def shown(key: str) -> str:
        modifiers, _, name = key.rpartition("+")
        return (modifiers + "+" if modifiers else "") + _KEY_SHOWN.get(name, name)

    return " / ".join(shown(key) for key in action.keys.split(","))
