"""What operators and the engine do to mailings: each a transition of DESIGN.md §1.

Every function works inside the caller's write transaction (``store.write()``), so that a
command and everything it implies (leaving the queue, promoting the next sequential
mailing, its entries in the audit trail) commit together or not at all. ``actor`` says who
acts: by default this process's operator for operators' actions (``audit.operator``), the
engine for the engine's.
"""

from dataclasses import dataclass
from datetime import datetime, tzinfo

from sqlmodel import Session, col, func, select

from sendstatus_tui.core.model import audit, queue
from sendstatus_tui.core.model.audit import Actor, Change
from sendstatus_tui.core.model.models import Mailing, Recipient, RecipientStatus, utc_now
from sendstatus_tui.core.model.queue import Direction, Moved
from sendstatus_tui.core.model.retry import reset_failed
from sendstatus_tui.core.model.states import (
    STATE_WORDS,
    Action,
    Mode,
    State,
    TransitionRefused,
    next_state,
)
from sendstatus_tui.core.model.when import check_horizon, format_named
from sendstatus_tui.core.store.store import lock_transitions
from sendstatus_tui.errors import SendStatusError

STOPPED = "stopped by an operator"
# the largest id each database's id column holds (SQLite INTEGER, PostgreSQL INTEGER)
_LARGEST_ID = {"sqlite": 2**63 - 1, "postgresql": 2**31 - 1}


class MailingNotFound(SendStatusError, LookupError):
    def __init__(self, mailing_id: int):
        super().__init__(f"no mailing with id {mailing_id}")


class TimeInPast(SendStatusError, ValueError):
    def __init__(self, when: datetime, now: datetime):
        super().__init__(
            f"{when:%Y-%m-%d %H:%M} UTC is in the past (it is now {now:%Y-%m-%d %H:%M} UTC)"
        )
        self.when, self.now = when, now

    def in_zone(self, local_zone: tzinfo) -> str:
        """The message in the zone the operator typed the time in, named."""
        return (
            f"{format_named(self.when, local_zone)} is in the past"
            f" (it is now {format_named(self.now, local_zone)})"
        )


class StillInFlight(TransitionRefused):
    """A delete while an engine still holds recipients of the mailing (a TransitionRefused:
    whoever handles a refused action handles this one)."""

    def __init__(self, mailing_id: int, count: int):
        SendStatusError.__init__(
            self,
            f"cannot delete mailing {mailing_id} yet: an engine is still handing {count}"
            f" of its recipients to the relay; try again in a few seconds",
        )
        self.action, self.state, self.mailing_id = Action.DELETE, State.STANDBY, mailing_id


@dataclass(frozen=True)
class Enqueued:
    mailing: Mailing
    position: int | None  # None when it was promoted straight into Sending now
    promoted: bool


def get(session: Session, mailing_id: int) -> Mailing:
    """The mailing with this id; MailingNotFound if there is none."""
    mailing = find(session, mailing_id)
    if mailing is None:
        raise MailingNotFound(mailing_id)
    return mailing


def find(session: Session, mailing_id: int) -> Mailing | None:
    """The mailing with this id, or None (also while its recipients are being imported)."""
    mailing = session.get(Mailing, mailing_id) if can_exist(session, mailing_id) else None
    return None if mailing is None or mailing.importing else mailing


def get_for_update(session: Session, mailing_id: int) -> Mailing:
    """Loads a mailing and locks its row until the transaction ends; the row is read
    fresh under the lock, also when the session holds an older copy (store/locks.py)."""
    if not can_exist(session, mailing_id):
        raise MailingNotFound(mailing_id)
    mailing = session.exec(
        select(Mailing)
        .where(Mailing.id == mailing_id, col(Mailing.importing).is_(False))
        .with_for_update()
    ).first()
    if mailing is None:
        raise MailingNotFound(mailing_id)
    return mailing


def send_now(
    session: Session, mailing_id: int, now: datetime | None = None, *, actor: Actor | None = None
) -> Mailing:
    actor = actor or audit.operator()
    mailing = _transition(session, mailing_id, Action.SEND_NOW, now, actor)
    mailing.mode = Mode.IMMEDIATE
    _unschedule(mailing)
    audit.record(session, Change.SEND_NOW, mailing, actor=actor, now=now)
    return mailing


def schedule_at(
    session: Session,
    mailing_id: int,
    when: datetime,
    now: datetime | None = None,
    *,
    actor: Actor | None = None,
    zone_name: str | None = None,
) -> Mailing:
    """Schedules it at ``when``; ``zone_name`` is the zone the operator typed it in
    (None when they gave an offset), shown beside each reader's own."""
    now = now or utc_now()
    if when <= now:
        raise TimeInPast(when, now)
    check_horizon(when, now)
    actor = actor or audit.operator()
    mailing = _transition(session, mailing_id, Action.SCHEDULE_AT, now, actor)
    mailing.mode = Mode.AT
    mailing.scheduled_at = when
    mailing.scheduled_zone = zone_name
    audit.record(session, Change.SCHEDULED, mailing, actor=actor, now=now, scheduled_at=when)
    return mailing


def enqueue(
    session: Session, mailing_id: int, now: datetime | None = None, *, actor: Actor | None = None
) -> Enqueued:
    """Appends to the sequential queue; starts at once if no sequential mailing is ahead."""
    actor = actor or audit.operator()
    mailing = _transition(session, mailing_id, Action.ENQUEUE, now, actor)
    mailing.mode = Mode.SEQUENTIAL
    _unschedule(mailing)
    position = queue.append(session, mailing)
    audit.record(session, Change.ENQUEUED, mailing, f"position {position}", actor=actor, now=now)
    if promote_head(session, now, actor=actor) is mailing:
        return Enqueued(mailing, None, promoted=True)
    return Enqueued(mailing, position, promoted=False)


def set_window(
    session: Session, mailing_id: int, window: str | None, *, actor: Actor | None = None
) -> Mailing:
    """Gives a mailing the sending window ``window`` (as stored: core/model/window.py; None:
    any hour), before it is sent or scheduled: a mailing sending keeps the window it has."""
    mailing = get_for_update(session, mailing_id)
    next_state(mailing.state, Action.SET_WINDOW, mailing_id)
    if mailing.window != window:
        mailing.window = window
        audit.record(session, Change.WINDOW, mailing, window or "always", actor=actor)
    return mailing


def set_relays(
    session: Session, mailing_id: int, relays: str | None, *, actor: Actor | None = None
) -> Mailing:
    """Gives a mailing the relays it goes through (as stored: ``a,b``, each checked against
    the relays table by ``relays.chosen``; None: every relay), before it is sent or
    scheduled, as ``set_window`` does its window."""
    mailing = get_for_update(session, mailing_id)
    next_state(mailing.state, Action.SET_RELAYS, mailing_id)
    if mailing.relays != relays:
        mailing.relays = relays
        audit.record(session, Change.RELAYS, mailing, relays or "every relay", actor=actor)
    return mailing


def stop(
    session: Session,
    mailing_id: int,
    now: datetime | None = None,
    *,
    actor: Actor | None = None,
    reason: str = STOPPED,
) -> Mailing:
    """Parks a mailing. Its recipients are left as they are: the engine hands back the ones
    it had claimed, and sending again later goes only to those not yet sent. ``reason``:
    why, when not an operator's stop (the guard's)."""
    actor = actor or audit.operator()
    lock_transitions(session)
    was = get_for_update(session, mailing_id).state
    mailing = _transition(session, mailing_id, Action.STOP, now, actor)
    _park(mailing, reason)
    detail = f"was {STATE_WORDS[was]}, {mailing.sent:,} of {mailing.total:,} sent"
    if reason != STOPPED:
        detail = f"{reason}; {detail}"
    audit.record(session, Change.STOPPED, mailing, detail, actor=actor, now=now)
    return mailing


def retry(
    session: Session, mailing_id: int, classes: tuple[str, ...], *, actor: Actor | None = None
) -> int:
    """Puts a completed or stopped mailing's failed recipients of ``classes`` back to
    pending and parks it in Sends to schedule as "N to retry"; returns N. Those who were
    sent it are not touched: sending it again goes only to the N."""
    # an error below rolls the whole transaction back, the state change with it
    mailing = _transition(session, mailing_id, Action.RETRY)
    if mailing.started_at is None:
        raise NothingToRetry(f"mailing {mailing_id} has not been sent yet: nothing to retry")
    reset = reset_failed(session, mailing_id, classes)
    count = reset.count
    if count == 0:
        raise NothingToRetry(
            f"mailing {mailing_id} has no failed recipients of class {', '.join(classes)}"
        )
    mailing.failed -= count
    # a recipient that failed in doubt may have received the message: sending it again
    # may be a second copy, counted like every resend in doubt (when it is decided)
    mailing.resent_in_doubt += reset.in_doubt
    mailing.finished_at = None
    _park(mailing, f"{count:,} to retry")
    detail = f"{count:,} recipient{'' if count == 1 else 's'} of class {', '.join(classes)}"
    if reset.in_doubt:
        detail += f" ({reset.in_doubt:,} in doubt: may receive a second copy)"
    audit.record(session, Change.RETRIED, mailing, detail, actor=actor)
    return count


class NothingToRetry(SendStatusError, ValueError):
    pass


def check_deletable(session: Session, mailing: Mailing) -> None:
    """Refuses to delete a mailing that is not parked, or whose recipients an engine still
    holds: stopped while a batch was out, the engine records that batch within seconds."""
    assert mailing.id is not None
    next_state(mailing.state, Action.DELETE, mailing.id)
    in_flight = session.exec(
        select(func.count())
        .select_from(Recipient)
        .where(Recipient.mailing_id == mailing.id, Recipient.status == RecipientStatus.IN_FLIGHT)
    ).one()
    if in_flight:
        raise StillInFlight(mailing.id, in_flight)


def delete(session: Session, mailing_id: int, *, actor: Actor | None = None) -> Mailing:
    lock_transitions(session)
    mailing = get_for_update(session, mailing_id)
    check_deletable(session, mailing)
    detail = (
        f"{mailing.total:,} recipient{'' if mailing.total == 1 else 's'}, {mailing.sent:,} sent"
    )
    audit.record(session, Change.DELETED, mailing, detail, actor=actor)
    session.delete(mailing)  # recipients go with it (ON DELETE CASCADE)
    session.flush()
    return mailing


def move(
    session: Session, mailing_id: int, direction: Direction, *, actor: Actor | None = None
) -> Moved:
    """Moves a queued mailing within the queue; says where it was and where it is. At
    either end nothing changes, and nothing is recorded."""
    mailing = _transition(session, mailing_id, Action.MOVE)
    moved = queue.move(session, mailing, direction)
    if moved.changed:
        detail = f"{direction.value}: position {moved.before} to {moved.after}"
        audit.record(session, Change.MOVED, mailing, detail, actor=actor)
    return moved


def sequential_ahead(session: Session) -> list[Mailing]:
    """The sequential mailings a newly queued one would wait behind: the one in Sending now
    (if any), then the queue in order."""
    active = queue.active_sequential(session)
    return ([active] if active else []) + queue.queued(session)


# --- what the engine does ----------------------------------------------------------------


def start_due(
    session: Session, now: datetime | None = None, *, actor: Actor | None = None
) -> list[Mailing]:
    """Moves every scheduled mailing whose time has come into Sending now (``starting``)."""
    now = now or utc_now()
    actor = actor or audit.engine()
    lock_transitions(session)
    due = session.exec(
        select(Mailing)
        .where(Mailing.state == State.SCHEDULED, col(Mailing.scheduled_at) <= now)
        .with_for_update()
    ).all()
    for mailing in due:
        assert mailing.id is not None
        _transition(session, mailing.id, Action.TIME_ARRIVED, now, actor)
        audit.record(session, Change.STARTED, mailing, "its time came", actor=actor, now=now)
    return list(due)


def promote_head(
    session: Session, now: datetime | None = None, *, actor: Actor | None = None
) -> Mailing | None:
    """Starts the head of the queue if no sequential mailing is in Sending now. ``actor``:
    whoever made room for it (the engine by default)."""
    lock_transitions(session)
    if queue.active_sequential(session) is not None:
        return None
    waiting = queue.queued(session)
    if not waiting:
        return None
    head_id = waiting[0].id
    assert head_id is not None
    actor = actor or audit.engine()
    mailing = _transition(session, head_id, Action.PROMOTE, now, actor)
    detail = "first in the sequential queue, into Sending now"
    audit.record(session, Change.PROMOTED, mailing, detail, actor=actor, now=now)
    return mailing


def mark_prepared(session: Session, mailing_id: int, now: datetime | None = None) -> Mailing:
    """Starting up is done: messages start to go out."""
    now = now or utc_now()
    mailing = _transition(session, mailing_id, Action.PREPARED, now)
    mailing.started_at = mailing.started_at or now
    mailing.guard_from = mailing.tries  # each sending has a window of its own (guard.py)
    return mailing


def interrupt(
    session: Session,
    mailing_id: int,
    reason: str,
    now: datetime | None = None,
    *,
    actor: Actor | None = None,
) -> Mailing:
    """A fatal error (bad credentials, refused sender): parked with the reason."""
    actor = actor or audit.engine()
    mailing = _transition(session, mailing_id, Action.INTERRUPT, now, actor)
    _park(mailing, f"interrupted: {reason}")
    audit.record(session, Change.INTERRUPTED, mailing, reason, actor=actor, now=now)
    return mailing


def complete(
    session: Session, mailing_id: int, now: datetime | None = None, *, actor: Actor | None = None
) -> Mailing:
    now = now or utc_now()
    actor = actor or audit.engine()
    mailing = _transition(session, mailing_id, Action.COMPLETE, now, actor)
    mailing.finished_at = now
    detail = f"{mailing.sent:,} sent, {mailing.failed:,} failed"
    audit.record(session, Change.COMPLETED, mailing, detail, actor=actor, now=now)
    return mailing


def complete_if_done(session: Session, mailing_id: int) -> Mailing | None:
    """Completes a sending mailing whose every recipient is final, as read afresh under
    the lock (the engine's view may be stale: another engine completed it, an operator
    stopped it or put recipients back to pending meanwhile); None when it does not."""
    lock_transitions(session)  # first (the lock order: core/store/locks.py)
    mailing = find(session, mailing_id) and get_for_update(session, mailing_id)
    if mailing is None or mailing.state != State.SENDING or mailing.remaining != 0:
        return None
    return complete(session, mailing_id)


# --- the one place where a mailing changes state -------------------------------------------


def _transition(
    session: Session,
    mailing_id: int,
    action: Action,
    now: datetime | None = None,
    actor: Actor | None = None,
) -> Mailing:
    """Applies ``action``'s state change with what it implies for the queue (a promotion
    it makes room for is recorded as ``actor``'s)."""
    lock_transitions(session)
    mailing = get_for_update(session, mailing_id)
    target = next_state(mailing.state, action, mailing.id)
    assert target is not None  # only a delete leads nowhere, and it is no transition
    was_queued = mailing.state == State.QUEUED
    was_active_sequential = mailing.mode == Mode.SEQUENTIAL and mailing.state in (
        State.STARTING,
        State.SENDING,
    )
    if was_queued and target != State.QUEUED:
        queue.withdraw(session, mailing)
    mailing.state = target
    mailing.state_reason = None
    # what the engine waited for belongs to the state it waited in
    mailing.waiting_kind = mailing.waiting_reason = None
    mailing.waiting_since = mailing.waiting_until = None
    mailing.updated_at = now or utc_now()
    session.flush()
    if was_active_sequential and target not in (State.STARTING, State.SENDING):
        promote_head(session, now, actor=actor)
    return mailing


def can_exist(session: Session, mailing_id: int) -> bool:
    """Whether the id can exist at all: a larger one would overflow the driver's integer."""
    return 0 < mailing_id <= _LARGEST_ID[session.get_bind().dialect.name]


def _unschedule(mailing: Mailing) -> None:
    mailing.scheduled_at = None
    mailing.scheduled_zone = None


def _park(mailing: Mailing, reason: str) -> None:
    mailing.mode = None
    _unschedule(mailing)
    mailing.state_reason = reason
