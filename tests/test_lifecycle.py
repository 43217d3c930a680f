"""Every transition of DESIGN.md §1 against a real database (SQLite, and PostgreSQL)."""

from datetime import timedelta

import pytest
from sqlmodel import select

from sendstatus_tui.core.coordination import deliveries
from sendstatus_tui.core.model import lifecycle
from sendstatus_tui.core.model.models import Mailing, Recipient
from sendstatus_tui.core.model.queue import Direction
from sendstatus_tui.core.model.states import STATE_WORDS, Mode, State, TransitionRefused
from sendstatus_tui.core.model.waiting import WaitingKind

from .helpers import in_minutes


def fetch(store, mailing_id) -> Mailing:
    with store.read() as session:
        return session.get(Mailing, mailing_id)


def act(store, operation, *args, **kwargs):
    with store.write() as session:
        return operation(session, *args, **kwargs)


def queue_of(store) -> list[tuple[int, int]]:
    """(id, position) of the queued mailings, in order."""
    with store.read() as session:
        rows = session.exec(
            select(Mailing.id, Mailing.position)
            .where(Mailing.state == State.QUEUED)
            .order_by(Mailing.position)
        ).all()
    return [tuple(row) for row in rows]


def sending(store, mailing_id):
    act(store, lifecycle.send_now, mailing_id)
    act(store, lifecycle.mark_prepared, mailing_id)


# --- created, decided later ---------------------------------------------------------------


def test_a_new_mailing_is_parked_until_decided(store, make_mailing):
    mailing = fetch(store, make_mailing(recipients=5))
    assert (mailing.state, mailing.mode, mailing.state_reason) == (
        State.STANDBY,
        None,
        "decided later",
    )
    assert (mailing.total, mailing.sent, mailing.failed, mailing.remaining) == (5, 0, 0, 5)


# --- send now -----------------------------------------------------------------------------


def test_send_now_from_standby_starts_up(store, make_mailing):
    mailing_id = make_mailing()
    act(store, lifecycle.send_now, mailing_id)
    mailing = fetch(store, mailing_id)
    assert (mailing.state, mailing.mode, mailing.started_at) == (
        State.STARTING,
        Mode.IMMEDIATE,
        None,
    )


def test_send_now_from_scheduled_drops_the_time(store, make_mailing):
    mailing_id = make_mailing()
    act(store, lifecycle.schedule_at, mailing_id, in_minutes(30))
    act(store, lifecycle.send_now, mailing_id)
    mailing = fetch(store, mailing_id)
    assert (mailing.state, mailing.mode, mailing.scheduled_at) == (
        State.STARTING,
        Mode.IMMEDIATE,
        None,
    )


def test_send_now_from_the_queue_closes_the_gap(store, make_mailing):
    head, a, b, c = (make_mailing() for _ in range(4))
    for mailing_id in (head, a, b, c):
        act(store, lifecycle.enqueue, mailing_id)
    act(store, lifecycle.send_now, b)
    assert queue_of(store) == [(a, 1), (c, 2)]
    assert fetch(store, b).state == State.STARTING
    assert fetch(store, b).position is None


# --- schedule at a time -------------------------------------------------------------------


def test_schedule_at_a_time(store, make_mailing):
    mailing_id = make_mailing()
    when = in_minutes(90)
    act(store, lifecycle.schedule_at, mailing_id, when)
    mailing = fetch(store, mailing_id)
    assert (mailing.state, mailing.mode, mailing.state_reason) == (State.SCHEDULED, Mode.AT, None)
    assert abs(mailing.scheduled_at - when) < timedelta(milliseconds=1)


def test_reschedule_changes_the_time(store, make_mailing):
    mailing_id = make_mailing()
    act(store, lifecycle.schedule_at, mailing_id, in_minutes(90))
    later = in_minutes(240)
    act(store, lifecycle.schedule_at, mailing_id, later)
    assert abs(fetch(store, mailing_id).scheduled_at - later) < timedelta(milliseconds=1)


def test_a_time_in_the_past_is_refused_and_nothing_changes(store, make_mailing):
    mailing_id = make_mailing()
    with pytest.raises(lifecycle.TimeInPast, match="in the past"):
        act(store, lifecycle.schedule_at, mailing_id, in_minutes(-1))
    mailing = fetch(store, mailing_id)
    assert (mailing.state, mailing.scheduled_at) == (State.STANDBY, None)


def test_schedule_a_queued_mailing_takes_it_out_of_the_queue(store, make_mailing):
    head, a, b = (make_mailing() for _ in range(3))
    for mailing_id in (head, a, b):
        act(store, lifecycle.enqueue, mailing_id)
    act(store, lifecycle.schedule_at, a, in_minutes(10))
    assert queue_of(store) == [(b, 1)]
    assert (fetch(store, a).state, fetch(store, a).mode) == (State.SCHEDULED, Mode.AT)


# --- sequentially -------------------------------------------------------------------------


def test_first_sequential_mailing_starts_at_once(store, make_mailing):
    mailing_id = make_mailing()
    result = act(store, lifecycle.enqueue, mailing_id)
    assert result.promoted and result.position is None
    mailing = fetch(store, mailing_id)
    assert (mailing.state, mailing.mode, mailing.position) == (
        State.STARTING,
        Mode.SEQUENTIAL,
        None,
    )


def test_later_sequential_mailings_wait_in_order(store, make_mailing):
    head, a, b = (make_mailing() for _ in range(3))
    act(store, lifecycle.enqueue, head)
    assert act(store, lifecycle.enqueue, a).position == 1
    assert act(store, lifecycle.enqueue, b).position == 2
    assert queue_of(store) == [(a, 1), (b, 2)]
    with store.read() as session:
        assert [m.id for m in lifecycle.sequential_ahead(session)] == [head, a, b]


def test_enqueue_a_scheduled_mailing_drops_its_time(store, make_mailing):
    head, a = make_mailing(), make_mailing()
    act(store, lifecycle.enqueue, head)
    act(store, lifecycle.schedule_at, a, in_minutes(10))
    act(store, lifecycle.enqueue, a)
    mailing = fetch(store, a)
    assert (mailing.state, mailing.mode, mailing.scheduled_at, mailing.position) == (
        State.QUEUED,
        Mode.SEQUENTIAL,
        None,
        1,
    )


def test_immediate_mailings_do_not_hold_up_the_queue(store, make_mailing):
    immediate, sequential = make_mailing(), make_mailing()
    sending(store, immediate)
    assert act(store, lifecycle.enqueue, sequential).promoted


# --- stop ---------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["scheduled", "starting", "sending"])
def test_stop_parks_the_mailing(store, make_mailing, state):
    mailing_id = make_mailing()
    if state == "scheduled":
        act(store, lifecycle.schedule_at, mailing_id, in_minutes(5))
    elif state == "starting":
        act(store, lifecycle.send_now, mailing_id)
    else:
        sending(store, mailing_id)
    act(store, lifecycle.stop, mailing_id)
    mailing = fetch(store, mailing_id)
    assert (mailing.state, mailing.mode, mailing.scheduled_at, mailing.state_reason) == (
        State.STANDBY,
        None,
        None,
        "stopped by an operator",
    )


def test_a_state_change_forgets_what_the_engine_waited_for(store, make_mailing):
    """A mailing stopped while the relay was down, and sent again, must not show the old
    'waiting: …' while it sends."""
    mailing_id = make_mailing()
    act(store, lifecycle.send_now, mailing_id)
    act(
        store,
        deliveries.show_waiting,
        mailing_id,
        WaitingKind.RELAY_DOWN,
        "relay unavailable",
        in_minutes(1),
    )
    act(store, lifecycle.stop, mailing_id)
    act(store, lifecycle.send_now, mailing_id)
    mailing = fetch(store, mailing_id)
    assert (mailing.waiting_kind, mailing.waiting_reason) == (None, None)
    assert (mailing.waiting_since, mailing.waiting_until) == (None, None)


def test_failures_without_a_class_count_with_the_refusals(store, make_mailing):
    mailing_id = make_mailing(recipients=3)
    with store.write() as session:
        claimed = deliveries.claim(session, mailing_id, 3, claimant="test")
        refused = [
            deliveries.Outcome(r, deliveries.FAILED, "550 no", failure_class="5xx")
            for r in claimed[:2]
        ]
        unclassed = [deliveries.Outcome(claimed[2], deliveries.FAILED, "550 no")]
        deliveries.record(session, mailing_id, refused + unclassed, claimant="test")
    with store.read() as session:
        assert deliveries.failed_by_class(session, mailing_id) == {"5xx": 3}


def test_stop_a_queued_mailing_closes_the_gap(store, make_mailing):
    head, a, b, c = (make_mailing() for _ in range(4))
    for mailing_id in (head, a, b, c):
        act(store, lifecycle.enqueue, mailing_id)
    act(store, lifecycle.stop, a)
    assert queue_of(store) == [(b, 1), (c, 2)]
    assert fetch(store, a).position is None


def test_stopping_the_sending_sequential_mailing_promotes_the_next(store, make_mailing):
    head, a, b = (make_mailing() for _ in range(3))
    for mailing_id in (head, a, b):
        act(store, lifecycle.enqueue, mailing_id)
    act(store, lifecycle.mark_prepared, head)
    act(store, lifecycle.stop, head)
    promoted = fetch(store, a)
    assert (promoted.state, promoted.mode, promoted.position) == (
        State.STARTING,
        Mode.SEQUENTIAL,
        None,
    )
    assert queue_of(store) == [(b, 1)]


def test_stop_keeps_what_was_sent(store, make_mailing):
    mailing_id = make_mailing(recipients=4)
    sending(store, mailing_id)
    with store.write() as session:  # as the engine records deliveries
        mailing = session.get(Mailing, mailing_id)
        mailing.sent = 2
    act(store, lifecycle.stop, mailing_id)
    act(store, lifecycle.send_now, mailing_id)
    mailing = fetch(store, mailing_id)
    assert (mailing.sent, mailing.remaining) == (2, 2)


@pytest.mark.parametrize("state", ["standby", "completed"])
def test_stop_is_refused_when_nothing_runs(store, make_mailing, state):
    mailing_id = make_mailing()
    if state == "completed":
        sending(store, mailing_id)
        act(store, lifecycle.complete, mailing_id)
    with pytest.raises(
        TransitionRefused,
        match=f"cannot stop mailing {mailing_id}: it is {STATE_WORDS[State(state)]}",
    ):
        act(store, lifecycle.stop, mailing_id)
    assert fetch(store, mailing_id).state == state


# --- delete -------------------------------------------------------------------------------


def test_delete_a_parked_mailing_with_its_recipients(store, make_mailing):
    keep, gone = make_mailing(recipients=2), make_mailing(recipients=3)
    act(store, lifecycle.delete, gone)
    assert fetch(store, gone) is None
    with store.read() as session:
        owners = session.exec(select(Recipient.mailing_id)).all()
    assert sorted(set(owners)) == [keep] and len(owners) == 2


@pytest.mark.parametrize("state", ["scheduled", "queued", "starting", "sending", "completed"])
def test_delete_is_refused_unless_parked(store, make_mailing, state):
    mailing_id = make_mailing()
    if state == "scheduled":
        act(store, lifecycle.schedule_at, mailing_id, in_minutes(5))
    elif state == "queued":
        act(store, lifecycle.enqueue, make_mailing())
        act(store, lifecycle.enqueue, mailing_id)
    elif state == "starting":
        act(store, lifecycle.send_now, mailing_id)
    else:
        sending(store, mailing_id)
        if state == "completed":
            act(store, lifecycle.complete, mailing_id)
    assert fetch(store, mailing_id).state == state
    with pytest.raises(TransitionRefused, match=f"cannot delete mailing {mailing_id}"):
        act(store, lifecycle.delete, mailing_id)
    assert fetch(store, mailing_id).state == state


def test_acting_on_a_missing_mailing_says_so(store):
    with pytest.raises(lifecycle.MailingNotFound, match="no mailing with id 404"):
        act(store, lifecycle.send_now, 404)


# --- reorder ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mover", "direction", "expected"),
    [
        ("b", Direction.UP, "bacd"),
        ("b", Direction.DOWN, "acbd"),
        ("c", Direction.TOP, "cabd"),
        ("a", Direction.BOTTOM, "bcda"),
        ("a", Direction.UP, "abcd"),  # already first: stays
        ("d", Direction.DOWN, "abcd"),  # already last: stays
    ],
)
def test_move_within_the_queue(store, make_mailing, mover, direction, expected):
    head = make_mailing()
    act(store, lifecycle.enqueue, head)
    ids = {name: make_mailing(name) for name in "abcd"}
    for name in "abcd":
        act(store, lifecycle.enqueue, ids[name])
    moved = act(store, lifecycle.move, ids[mover], direction)
    order = expected
    assert queue_of(store) == [(ids[name], n) for n, name in enumerate(order, start=1)]
    assert moved.before == "abcd".index(mover) + 1
    assert moved.after == order.index(mover) + 1
    assert moved.changed == (order != "abcd")


@pytest.mark.parametrize("state", ["standby", "starting"])
def test_move_is_refused_outside_the_queue(store, make_mailing, state):
    mailing_id = make_mailing()
    if state == "starting":
        act(store, lifecycle.enqueue, mailing_id)  # the head that is sending is not reorderable
    with pytest.raises(TransitionRefused, match="move in the queue applies to .* queued"):
        act(store, lifecycle.move, mailing_id, Direction.UP)


# --- what the engine does -----------------------------------------------------------------


def test_scheduled_mailings_start_when_their_time_comes(store, make_mailing, now):
    due, later = make_mailing(), make_mailing()
    act(store, lifecycle.schedule_at, due, now + timedelta(minutes=1), now=now)
    act(store, lifecycle.schedule_at, later, now + timedelta(minutes=10), now=now)
    started = act(store, lifecycle.start_due, now + timedelta(minutes=2))
    assert [m.id for m in started] == [due]
    assert (fetch(store, due).state, fetch(store, due).mode) == (State.STARTING, Mode.AT)
    assert fetch(store, later).state == State.SCHEDULED


def test_prepared_mailing_starts_sending_and_records_the_start(store, make_mailing, now):
    mailing_id = make_mailing()
    act(store, lifecycle.send_now, mailing_id)
    act(store, lifecycle.mark_prepared, mailing_id, now)
    mailing = fetch(store, mailing_id)
    assert mailing.state == State.SENDING
    assert abs(mailing.started_at - now) < timedelta(milliseconds=1)


@pytest.mark.parametrize("state", ["starting", "sending"])
def test_interrupted_mailing_is_parked_with_the_reason(store, make_mailing, state):
    mailing_id = make_mailing()
    if state == "starting":
        act(store, lifecycle.send_now, mailing_id)
    else:
        sending(store, mailing_id)
    act(store, lifecycle.interrupt, mailing_id, "relay refused the credentials (535)")
    mailing = fetch(store, mailing_id)
    assert (mailing.state, mailing.state_reason) == (
        State.STANDBY,
        "interrupted: relay refused the credentials (535)",
    )


def test_completing_the_sequential_mailing_promotes_the_next(store, make_mailing, now):
    head, a = make_mailing(), make_mailing()
    act(store, lifecycle.enqueue, head)
    act(store, lifecycle.enqueue, a)
    act(store, lifecycle.mark_prepared, head)
    act(store, lifecycle.complete, head, now)
    done = fetch(store, head)
    assert done.state == State.COMPLETED
    assert abs(done.finished_at - now) < timedelta(milliseconds=1)
    assert (fetch(store, a).state, queue_of(store)) == (State.STARTING, [])


def test_promote_waits_while_a_sequential_mailing_sends(store, make_mailing):
    head, a = make_mailing(), make_mailing()
    act(store, lifecycle.enqueue, head)
    act(store, lifecycle.enqueue, a)
    assert act(store, lifecycle.promote_head) is None
    assert queue_of(store) == [(a, 1)]


def test_complete_is_refused_while_starting(store, make_mailing):
    mailing_id = make_mailing()
    act(store, lifecycle.send_now, mailing_id)
    with pytest.raises(TransitionRefused, match="it is starting"):
        act(store, lifecycle.complete, mailing_id)


def test_pane_rows_match_the_full_listing(store, make_mailing, now):
    """The panes' light read gives what the full listing gives, in the same order."""
    from sendstatus_tui.core.model.states import Area
    from sendstatus_tui.core.reads.listing import list_mailings, list_pane_rows

    ids = [make_mailing() for _ in range(6)]
    act(store, lifecycle.schedule_at, ids[0], now + timedelta(hours=2), now)
    act(store, lifecycle.schedule_at, ids[1], now + timedelta(hours=1), now)
    for mailing_id in ids[2:5]:
        act(store, lifecycle.enqueue, mailing_id)
    act(store, lifecycle.mark_prepared, ids[2], now)
    sending(store, ids[5])
    act(store, lifecycle.complete, ids[5], now)
    areas = (Area.NOW, Area.SCHEDULED, Area.STANDBY)
    fields = ("id", "name", "state", "mode", "state_reason", "position", "scheduled_at",
              "started_at", "finished_at", "total", "sent", "failed")  # fmt: skip
    with store.read() as session:
        full = [m for m in list_mailings(session) if m.state != State.COMPLETED]
        light = list_pane_rows(session, areas)
        expected = [tuple(getattr(m, f) for f in fields) for m in full]
        assert [tuple(getattr(r, f) for f in fields) for r in light] == expected
    assert ids[5] not in [r.id for r in light]
