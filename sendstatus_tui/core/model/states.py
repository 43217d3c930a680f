"""The mailing states of DESIGN.md §1 and the transitions between them, as pure rules."""

from enum import StrEnum

from sendstatus_tui.errors import SendStatusError


class State(StrEnum):
    STANDBY = "standby"
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    STARTING = "starting"
    SENDING = "sending"
    COMPLETED = "completed"


class Mode(StrEnum):
    IMMEDIATE = "immediate"
    AT = "at"
    SEQUENTIAL = "sequential"


class Area(StrEnum):
    """The pane a mailing shows in (``done`` is the history, not a pane)."""

    NOW = "now"
    SCHEDULED = "scheduled"
    STANDBY = "standby"
    DONE = "done"


AREA_OF_STATE = {
    State.STANDBY: Area.STANDBY,
    State.SCHEDULED: Area.SCHEDULED,
    State.QUEUED: Area.SCHEDULED,
    State.STARTING: Area.NOW,
    State.SENDING: Area.NOW,
    State.COMPLETED: Area.DONE,
}


class Action(StrEnum):
    # what an operator does
    SEND_NOW = "send-now"
    SCHEDULE_AT = "schedule"
    ENQUEUE = "enqueue"
    STOP = "stop"
    DELETE = "delete"
    MOVE = "move"
    RETRY = "retry"  # the failed recipients back to pending
    SET_WINDOW = "set-window"  # with a send choice: the days and hours it may send in
    SET_RELAYS = "set-relays"  # with a send choice: the relays it goes through
    # what the engine (or the queue) does
    TIME_ARRIVED = "time-arrived"
    PROMOTE = "promote"
    PREPARED = "prepared"
    INTERRUPT = "interrupt"
    COMPLETE = "complete"


OPERATOR_ACTIONS = (
    Action.SEND_NOW,
    Action.SCHEDULE_AT,
    Action.ENQUEUE,
    Action.MOVE,
    Action.STOP,
    Action.DELETE,
    Action.RETRY,
)

# action -> {state it applies to: state it leads to}; None means the mailing is removed.
TRANSITIONS: dict[Action, dict[State, State | None]] = {
    Action.SEND_NOW: {
        State.STANDBY: State.STARTING,
        State.SCHEDULED: State.STARTING,
        State.QUEUED: State.STARTING,
    },
    # from SCHEDULED this is a reschedule
    Action.SCHEDULE_AT: {
        State.STANDBY: State.SCHEDULED,
        State.SCHEDULED: State.SCHEDULED,
        State.QUEUED: State.SCHEDULED,
    },
    Action.ENQUEUE: {State.STANDBY: State.QUEUED, State.SCHEDULED: State.QUEUED},
    Action.STOP: {
        State.SCHEDULED: State.STANDBY,
        State.QUEUED: State.STANDBY,
        State.STARTING: State.STANDBY,
        State.SENDING: State.STANDBY,
    },
    Action.DELETE: {State.STANDBY: None},
    Action.MOVE: {State.QUEUED: State.QUEUED},
    # from STANDBY: a stopped (or interrupted) mailing; it stays parked, to be sent again
    Action.RETRY: {State.COMPLETED: State.STANDBY, State.STANDBY: State.STANDBY},
    # before it sends: a mailing sending keeps its window and its relays (stop it to
    # change them)
    Action.SET_WINDOW: {
        State.STANDBY: State.STANDBY,
        State.SCHEDULED: State.SCHEDULED,
        State.QUEUED: State.QUEUED,
    },
    Action.SET_RELAYS: {
        State.STANDBY: State.STANDBY,
        State.SCHEDULED: State.SCHEDULED,
        State.QUEUED: State.QUEUED,
    },
    Action.TIME_ARRIVED: {State.SCHEDULED: State.STARTING},
    Action.PROMOTE: {State.QUEUED: State.STARTING},
    Action.PREPARED: {State.STARTING: State.SENDING},
    Action.INTERRUPT: {State.STARTING: State.STANDBY, State.SENDING: State.STANDBY},
    Action.COMPLETE: {State.SENDING: State.COMPLETED},
}

# a state in the operator's words (human-readable output; JSON keeps the stored names)
STATE_WORDS = {
    State.STANDBY: "parked",
    State.SCHEDULED: "scheduled",
    State.QUEUED: "queued",
    State.STARTING: "starting up",
    State.SENDING: "sending",
    State.COMPLETED: "completed",
}

_VERB = {
    Action.SEND_NOW: "send now",
    Action.SCHEDULE_AT: "schedule",
    Action.ENQUEUE: "enqueue sequentially",
    Action.STOP: "stop",
    Action.DELETE: "delete",
    Action.MOVE: "move in the queue",
    Action.RETRY: "retry the failed recipients of",
    Action.SET_WINDOW: "change the sending window of",
    Action.SET_RELAYS: "change the relays of",
    Action.TIME_ARRIVED: "start at its time",
    Action.PROMOTE: "promote",
    Action.PREPARED: "start sending",
    Action.INTERRUPT: "interrupt",
    Action.COMPLETE: "complete",
}
# the action as the subject of "... applies to a mailing that is ...", where its verb
# phrase does not read as one
_RULE = {
    Action.RETRY: "retrying the failed recipients",
    Action.SET_WINDOW: "changing the sending window",
    Action.SET_RELAYS: "changing the relays",
}


class TransitionRefused(SendStatusError):
    """An action that the mailing's current state does not allow."""

    def __init__(self, action: Action, state: State, mailing_id: int | None = None):
        self.action, self.state, self.mailing_id = action, state, mailing_id
        allowed = ", ".join(STATE_WORDS[s] for s in TRANSITIONS[action])
        subject = f"mailing {mailing_id}" if mailing_id is not None else "a mailing"
        super().__init__(
            f"cannot {_VERB[action]} {subject}: it is {STATE_WORDS[state]}"
            f" ({_RULE.get(action, _VERB[action])} applies to a mailing that is {allowed})"
        )


def next_state(state: State, action: Action, mailing_id: int | None = None) -> State | None:
    """The state ``action`` leads to from ``state``; raises TransitionRefused if not allowed."""
    targets = TRANSITIONS[action]
    if state not in targets:
        raise TransitionRefused(action, state, mailing_id)
    return targets[state]


def allowed_operator_actions(state: State) -> list[Action]:
    """What an operator may do to a mailing in ``state`` (what an Actions menu offers)."""
    return [action for action in OPERATOR_ACTIONS if state in TRANSITIONS[action]]
