"""What operators and the engine do to mailings: each a transition of DESIGN.md §1.

Every function works inside the caller's write transaction (``store.write()``), so that a
command and everything it implies (leaving the queue, promoting the next sequential
mailing) commit together or not at all.
"""

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, func, select

from ..errors import SendStatusError
from . import failed, queue
from .models import Mailing, Recipient, RecipientStatus, utc_now
from .queue import Direction
from .states import Action, Mode, State, TransitionRefused, next_state
from .store import lock_transitions
from .when import check_horizon

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
    mailing = session.get(Mailing, mailing_id) if _fits(session, mailing_id) else None
    if mailing is None:
        raise MailingNotFound(mailing_id)
    return mailing


def get_for_update(session: Session, mailing_id: int) -> Mailing:
    """Loads a mailing and locks its row until the transaction ends."""
    if not _fits(session, mailing_id):
        raise MailingNotFound(mailing_id)
    mailing = session.exec(
        select(Mailing).where(Mailing.id == mailing_id).with_for_update()
    ).first()
    if mailing is None:
        raise MailingNotFound(mailing_id)
    return mailing


def send_now(session: Session, mailing_id: int, now: datetime | None = None) -> Mailing:
    mailing = _transition(session, mailing_id, Action.SEND_NOW, now)
    mailing.mode = Mode.IMMEDIATE
    mailing.scheduled_at = None
    return mailing


def schedule_at(
    session: Session, mailing_id: int, when: datetime, now: datetime | None = None
) -> Mailing:
    now = now or utc_now()
    if when <= now:
        raise TimeInPast(when, now)
    check_horizon(when, now)
    mailing = _transition(session, mailing_id, Action.SCHEDULE_AT, now)
    mailing.mode = Mode.AT
    mailing.scheduled_at = when
    return mailing


def enqueue(session: Session, mailing_id: int, now: datetime | None = None) -> Enqueued:
    """Appends to the sequential queue; starts at once if no sequential mailing is ahead."""
    mailing = _transition(session, mailing_id, Action.ENQUEUE, now)
    mailing.mode = Mode.SEQUENTIAL
    mailing.scheduled_at = None
    position = queue.append(session, mailing)
    if promote_head(session, now) is mailing:
        return Enqueued(mailing, None, promoted=True)
    return Enqueued(mailing, position, promoted=False)


def stop(session: Session, mailing_id: int, now: datetime | None = None) -> Mailing:
    """Parks a mailing. Its recipients are left as they are: the engine hands back the ones
    it had claimed, and sending again later goes only to those not yet sent."""
    mailing = _transition(session, mailing_id, Action.STOP, now)
    _park(mailing, STOPPED)
    return mailing


def retry(session: Session, mailing_id: int, classes: tuple[str, ...]) -> int:
    """Puts a completed or stopped mailing's failed recipients of ``classes`` back to
    pending and parks it in Sends to schedule as "N to retry"; returns N. Those who were
    sent it are not touched: sending it again goes only to the N."""
    # an error below rolls the whole transaction back, the state change with it
    mailing = _transition(session, mailing_id, Action.RETRY)
    if mailing.started_at is None:
        raise NothingToRetry(f"mailing {mailing_id} has not been sent yet: nothing to retry")
    count = failed.reset_failed(session, mailing_id, classes)
    if count == 0:
        raise NothingToRetry(
            f"mailing {mailing_id} has no failed recipients of class {', '.join(classes)}"
        )
    mailing.failed -= count
    mailing.finished_at = None
    _park(mailing, f"{count:,} to retry")
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


def delete(session: Session, mailing_id: int) -> Mailing:
    lock_transitions(session)
    mailing = get_for_update(session, mailing_id)
    check_deletable(session, mailing)
    session.delete(mailing)  # recipients go with it (ON DELETE CASCADE)
    session.flush()
    return mailing


def move(session: Session, mailing_id: int, direction: Direction) -> int:
    """Moves a queued mailing within the queue; returns its new position."""
    mailing = _transition(session, mailing_id, Action.MOVE)
    return queue.move(session, mailing, direction)


def sequential_ahead(session: Session) -> list[Mailing]:
    """The sequential mailings a newly queued one would wait behind: the one in Sending now
    (if any), then the queue in order."""
    active = queue.active_sequential(session)
    return ([active] if active else []) + queue.queued(session)


# --- what the engine does ----------------------------------------------------------------


def start_due(session: Session, now: datetime | None = None) -> list[Mailing]:
    """Moves every scheduled mailing whose time has come into Sending now (``starting``)."""
    now = now or utc_now()
    lock_transitions(session)
    due = session.exec(
        select(Mailing)
        .where(Mailing.state == State.SCHEDULED, col(Mailing.scheduled_at) <= now)
        .with_for_update()
    ).all()
    for mailing in due:
        assert mailing.id is not None
        _transition(session, mailing.id, Action.TIME_ARRIVED, now)
    return list(due)


def promote_head(session: Session, now: datetime | None = None) -> Mailing | None:
    """Starts the head of the queue if no sequential mailing is in Sending now."""
    lock_transitions(session)
    if queue.active_sequential(session) is not None:
        return None
    waiting = queue.queued(session)
    if not waiting:
        return None
    head_id = waiting[0].id
    assert head_id is not None
    return _transition(session, head_id, Action.PROMOTE, now)


def mark_prepared(session: Session, mailing_id: int, now: datetime | None = None) -> Mailing:
    """Starting up is done: messages start to go out."""
    now = now or utc_now()
    mailing = _transition(session, mailing_id, Action.PREPARED, now)
    mailing.started_at = mailing.started_at or now
    return mailing


def interrupt(
    session: Session, mailing_id: int, reason: str, now: datetime | None = None
) -> Mailing:
    """A fatal error (bad credentials, refused sender): parked with the reason."""
    mailing = _transition(session, mailing_id, Action.INTERRUPT, now)
    _park(mailing, f"interrupted: {reason}")
    return mailing


def complete(session: Session, mailing_id: int, now: datetime | None = None) -> Mailing:
    now = now or utc_now()
    mailing = _transition(session, mailing_id, Action.COMPLETE, now)
    mailing.finished_at = now
    return mailing


# --- the one place where a mailing changes state -------------------------------------------


def _transition(
    session: Session, mailing_id: int, action: Action, now: datetime | None = None
) -> Mailing:
    """Applies ``action``'s state change with what it implies for the queue."""
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
    mailing.waiting_reason = mailing.waiting_until = None
    mailing.updated_at = now or utc_now()
    session.flush()
    if was_active_sequential and target not in (State.STARTING, State.SENDING):
        promote_head(session, now)
    return mailing


def _fits(session: Session, mailing_id: int) -> bool:
    """Whether the id can exist at all: a larger one would overflow the driver's integer."""
    return 0 < mailing_id <= _LARGEST_ID[session.get_bind().dialect.name]


def _park(mailing: Mailing, reason: str) -> None:
    mailing.mode = None
    mailing.scheduled_at = None
    mailing.state_reason = reason
