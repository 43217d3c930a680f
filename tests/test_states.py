"""The state rules of DESIGN.md §1, as a table: every action from every state."""

import pytest

from sendstatus_tui.core.model.states import (
    AREA_OF_STATE,
    STATE_WORDS,
    Action,
    Area,
    State,
    TransitionRefused,
    allowed_operator_actions,
    next_state,
)

S = State
ALLOWED = {
    (Action.SEND_NOW, S.STANDBY): S.STARTING,
    (Action.SEND_NOW, S.SCHEDULED): S.STARTING,
    (Action.SEND_NOW, S.QUEUED): S.STARTING,
    (Action.SCHEDULE_AT, S.STANDBY): S.SCHEDULED,
    (Action.SCHEDULE_AT, S.SCHEDULED): S.SCHEDULED,  # reschedule
    (Action.SCHEDULE_AT, S.QUEUED): S.SCHEDULED,
    (Action.ENQUEUE, S.STANDBY): S.QUEUED,
    (Action.ENQUEUE, S.SCHEDULED): S.QUEUED,
    (Action.STOP, S.SCHEDULED): S.STANDBY,
    (Action.STOP, S.QUEUED): S.STANDBY,
    (Action.STOP, S.STARTING): S.STANDBY,
    (Action.STOP, S.SENDING): S.STANDBY,
    (Action.DELETE, S.STANDBY): None,
    (Action.MOVE, S.QUEUED): S.QUEUED,
    (Action.RETRY, S.COMPLETED): S.STANDBY,  # its failed recipients back to pending
    (Action.RETRY, S.STANDBY): S.STANDBY,  # a stopped one's
    # a window is given with a send choice, before it sends (issue 20)
    (Action.SET_WINDOW, S.STANDBY): S.STANDBY,
    (Action.SET_WINDOW, S.SCHEDULED): S.SCHEDULED,
    (Action.SET_WINDOW, S.QUEUED): S.QUEUED,
    # and so are the relays it goes through
    (Action.SET_RELAYS, S.STANDBY): S.STANDBY,
    (Action.SET_RELAYS, S.SCHEDULED): S.SCHEDULED,
    (Action.SET_RELAYS, S.QUEUED): S.QUEUED,
    (Action.TIME_ARRIVED, S.SCHEDULED): S.STARTING,
    (Action.PROMOTE, S.QUEUED): S.STARTING,
    (Action.PREPARED, S.STARTING): S.SENDING,
    (Action.INTERRUPT, S.STARTING): S.STANDBY,
    (Action.INTERRUPT, S.SENDING): S.STANDBY,
    (Action.COMPLETE, S.SENDING): S.COMPLETED,
}
EVERY_PAIR = [(action, state) for action in Action for state in State]


@pytest.mark.parametrize(("action", "state"), EVERY_PAIR)
def test_every_action_from_every_state(action, state):
    if (action, state) in ALLOWED:
        assert next_state(state, action) == ALLOWED[(action, state)]
    else:
        with pytest.raises(TransitionRefused) as refused:
            next_state(state, action, mailing_id=7)
        message = str(refused.value)
        # in the operator's words: the stored name "standby" never reaches them
        assert "mailing 7" in message and f"it is {STATE_WORDS[state]}" in message
        assert "standby" not in message


def test_refusal_names_the_states_that_allow_it():
    with pytest.raises(TransitionRefused, match=r"delete applies to a mailing that is parked"):
        next_state(State.SENDING, Action.DELETE, mailing_id=3)


def test_completed_is_final_but_for_a_retry_of_its_failed_recipients():
    assert allowed_operator_actions(State.COMPLETED) == [Action.RETRY]


def test_actions_menu_offers_only_what_the_state_allows():
    assert allowed_operator_actions(State.STANDBY) == [
        Action.SEND_NOW,
        Action.SCHEDULE_AT,
        Action.ENQUEUE,
        Action.DELETE,
        Action.RETRY,
    ]
    assert allowed_operator_actions(State.QUEUED) == [
        Action.SEND_NOW,
        Action.SCHEDULE_AT,
        Action.MOVE,
        Action.STOP,
    ]
    assert allowed_operator_actions(State.SENDING) == [Action.STOP]


def test_each_state_shows_in_its_pane():
    assert AREA_OF_STATE == {
        S.STANDBY: Area.STANDBY,
        S.SCHEDULED: Area.SCHEDULED,
        S.QUEUED: Area.SCHEDULED,
        S.STARTING: Area.NOW,
        S.SENDING: Area.NOW,
        S.COMPLETED: Area.DONE,
    }
