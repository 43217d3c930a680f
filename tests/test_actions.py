"""The action registry (actions.py): each action declared once, and everything that offers
actions built from it."""

import re
from collections import Counter

import pytest

from sendstatus_tui.core.model.states import State, allowed_operator_actions
from sendstatus_tui.tui.actions import ACTIONS, bindings, keys_shown, menu_entries
from sendstatus_tui.tui.app import SendStatusApp
from sendstatus_tui.tui.screens.dashboard import DashboardScreen
from sendstatus_tui.tui.screens.help import help_text


def test_every_action_has_the_method_that_does_it():
    for action in ACTIONS:
        owner = SendStatusApp if action.scope == "app" else DashboardScreen
        assert callable(getattr(owner, f"action_{action.name}", None)), action.name


def test_no_key_does_two_things():
    keys = Counter(key for action in ACTIONS if action.keys for key in action.keys.split(","))
    assert [key for key, uses in keys.items() if uses > 1] == []


def test_the_app_and_the_dashboard_bind_what_the_registry_declares():
    declared = {(action.keys, action.name) for action in ACTIONS if action.keys}
    # and, after them, each key acting on the selection once more, hidden: says why not
    explained = {
        (action.keys, f"why('{action.name}')")
        for action in ACTIONS
        if action.keys and action.on_selection
    }
    bound = [(b.key, b.action) for b in bindings("app") + bindings("dashboard")]
    assert set(bound) == declared | explained
    assert all(
        bound.index((keys, name)) < bound.index((keys, f"why('{name}')"))
        for keys, name in declared
        if (keys, f"why('{name}')") in explained
    )
    assert {b.action for b in bindings("app")} == {"help", "quit_dashboard"}


@pytest.mark.parametrize("state", [s for s in State if s != State.COMPLETED])
def test_the_menu_offers_what_the_lifecycle_allows_then_details(state):
    offered = [action.name for action in menu_entries(state)]
    assert offered[-1] == "details"
    assert {action.rule for action in menu_entries(state) if action.rule} == set(
        allowed_operator_actions(state)
    )


def test_the_help_screen_lists_every_key_with_its_meaning_on_one_80x24_screen():
    text = help_text()
    lines = text.splitlines()
    for action in ACTIONS:
        if action.keys:
            assert any(
                re.search(rf"(^| ){re.escape(keys_shown(action))} +{action.title}", line)
                for line in lines
            ), action.name
    assert re.search(r"shift\+↑ / \+ +Move up in the queue", text)
    assert re.search(r"g / Home +First row", text)
    # inside a frame of 80 columns (border and padding: 4), and under 24 lines with its
    # title, margins and frame
    assert max(len(line) for line in lines) <= 76
    assert len(lines) <= 24 - 6
