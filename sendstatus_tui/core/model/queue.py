"""The sequential queue: queued mailings at dense, unique positions 1..n (1 = next).

At most one sequential mailing is in Sending now (``starting`` or ``sending``): the head that
was promoted. It has no position; the reorderable queue is what waits behind it.
Callers hold the transitions lock (``store.lock_transitions``) for the whole transaction.
"""

from enum import StrEnum
from typing import NamedTuple

from sqlmodel import Session, col, select

from sendstatus_tui.core.model.models import Mailing
from sendstatus_tui.core.model.states import Mode, State


class Direction(StrEnum):
    UP = "up"
    DOWN = "down"
    TOP = "top"
    BOTTOM = "bottom"


def queue_end(direction: Direction) -> str:
    """The end a move goes towards: "first" or "last"."""
    return "first" if direction in (Direction.UP, Direction.TOP) else "last"


def queued(session: Session) -> list[Mailing]:
    """The queued mailings in queue order."""
    statement = select(Mailing).where(Mailing.state == State.QUEUED).order_by(col(Mailing.position))
    return list(session.exec(statement))


def active_sequential(session: Session) -> Mailing | None:
    """The sequential mailing in Sending now, if any."""
    statement = select(Mailing).where(
        Mailing.mode == Mode.SEQUENTIAL,
        col(Mailing.state).in_([State.STARTING, State.SENDING]),
    )
    return session.exec(statement).first()


def append(session: Session, mailing: Mailing) -> int:
    """Puts ``mailing`` at the tail of the queue; returns its position."""
    mailing.position = sum(1 for m in queued(session) if m.id != mailing.id) + 1
    session.flush()
    return mailing.position


def withdraw(session: Session, mailing: Mailing) -> None:
    """Takes ``mailing`` out of the queue and closes the gap it leaves."""
    rest = [m for m in queued(session) if m.id != mailing.id]
    mailing.position = None
    session.flush()
    _renumber(session, rest)


class Moved(NamedTuple):
    """A queued mailing's place before and after a move (the same at either end)."""

    before: int
    after: int

    @property
    def changed(self) -> bool:
        return self.before != self.after


def move(session: Session, mailing: Mailing, direction: Direction) -> Moved:
    """Moves a queued mailing; says where it was and where it is (one to n)."""
    order = queued(session)
    index = next(i for i, m in enumerate(order) if m.id == mailing.id)
    order.pop(index)
    target = {
        Direction.UP: max(index - 1, 0),
        Direction.DOWN: min(index + 1, len(order)),
        Direction.TOP: 0,
        Direction.BOTTOM: len(order),
    }[direction]
    order.insert(target, mailing)
    _renumber(session, order)
    return Moved(index + 1, target + 1)  # the positions _renumber gave it


def _renumber(session: Session, order: list[Mailing]) -> None:
    """Gives ``order`` the positions 1..n without ever breaking their uniqueness.

    Databases check a unique constraint row by row, so a shift like "every position + 1"
    can collide half-way; moved rows go through a negative position first.
    """
    moved = [(m, n) for n, m in enumerate(order, start=1) if m.position != n]
    for mailing, new_position in moved:
        mailing.position = -new_position
    session.flush()
    for mailing, new_position in moved:
        mailing.position = new_position
    session.flush()
