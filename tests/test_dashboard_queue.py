"""Reordering the sequential queue from the dashboard: the keys and the Actions menu."""

import pytest

from sendstatus_tui.core.model import audit, lifecycle
from sendstatus_tui.core.model.queue import Direction
from sendstatus_tui.core.model.states import State
from sendstatus_tui.tui.screens.actions_menu import ActionsMenu

from .helpers import (
    choose,
    notifications,
    open_dashboard,
    scenario,
    select_mailing,
    settle,
    wait_for_screen,
)


@scenario
async def test_shift_arrows_and_plus_minus_move_a_queued_mailing_and_the_cursor_follows(db):
    _, (de, fr, it, es) = db.queue_of_four()
    async with open_dashboard(db.store) as (app, pilot):
        table = await select_mailing(pilot, it)
        steps = [
            ("shift+up", [de, it, fr, es]),
            ("plus", [it, de, fr, es]),
            ("plus", [it, de, fr, es]),  # already at the top: stays
            ("shift+down", [de, it, fr, es]),
            ("minus", [de, fr, it, es]),
            ("minus", [de, fr, es, it]),
            ("shift+down", [de, fr, es, it]),  # already at the bottom: stays
        ]
        for key, expected in steps:
            await pilot.press(key)
            await settle(pilot)
            assert db.queue() == expected, key
            assert table.mailing_ids == expected, key
            assert app.dashboard.selected().mailing_id == it, key
            assert table.cursor_row == expected.index(it), key
            cells = table.row_for(it).cells
            assert cells[3] == f"queue #{expected.index(it) + 1}", key


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("move_top", lambda de, fr, it, es: [it, de, fr, es]),
        ("move_bottom", lambda de, fr, it, es: [de, fr, es, it]),
        ("move_up", lambda de, fr, it, es: [de, it, fr, es]),
        ("move_down", lambda de, fr, it, es: [de, fr, es, it]),
    ],
)
@scenario
async def test_actions_menu_moves_in_the_queue(db, option, expected):
    _, (de, fr, it, es) = db.queue_of_four()
    async with open_dashboard(db.store) as (app, pilot):
        table = await select_mailing(pilot, it)
        await pilot.press("enter")
        await wait_for_screen(pilot, ActionsMenu)
        await choose(pilot, option)
        await settle(pilot)
        order = expected(de, fr, it, es)
        assert db.queue() == order
        assert table.mailing_ids == order
        assert app.dashboard.selected().mailing_id == it


@scenario
async def test_move_keys_do_nothing_to_a_mailing_that_is_not_queued(db):
    parked = db.add("Spring sale")
    _, queued = db.queue_of_four()
    async with open_dashboard(db.store) as (app, pilot):
        await select_mailing(pilot, parked)
        assert app.dashboard.check_action("move_up", ()) is False
        await pilot.press("plus", "shift+up", "minus", "shift+down")
        await settle(pilot)
        assert db.queue() == queued
        assert db.state(parked) == (State.STANDBY, None, None)


@scenario
async def test_a_move_that_changes_nothing_says_why_and_records_nothing(db):
    """Up or to the top from the head of the queue, down or to the bottom from its tail:
    the operator is told "already first" / "already last", and the trail stays as it was."""
    _, (de, fr, it, es) = db.queue_of_four()
    with db.store.read() as session:
        entries_before = len(audit.history(session))
    async with open_dashboard(db.store) as (app, pilot):
        for mailing_id, action, said in [
            (de, "move_up", "“DE” is already first in the queue"),
            (de, "move_top", "“DE” is already first in the queue"),
            (es, "move_down", "“ES” is already last in the queue"),
            (es, "move_bottom", "“ES” is already last in the queue"),
        ]:
            app._notifications.clear()
            await select_mailing(pilot, mailing_id)
            await app.dashboard.run_action(action)
            await settle(pilot)
            assert notifications(app) == [said], action
            assert db.queue() == [de, fr, it, es]
    with db.store.read() as session:
        assert len(audit.history(session)) == entries_before


def test_the_command_line_records_no_move_that_changes_nothing(db):
    _, (de, fr, it, es) = db.queue_of_four()
    with db.store.read() as session:
        entries_before = len(audit.history(session))
    assert db.do(lifecycle.move, de, Direction.UP).after == 1
    assert db.do(lifecycle.move, es, Direction.BOTTOM).after == 4
    with db.store.read() as session:
        assert len(audit.history(session)) == entries_before
    assert db.do(lifecycle.move, es, Direction.UP).after == 3  # a real move is recorded
    with db.store.read() as session:
        assert len(audit.history(session)) == entries_before + 1
