"""The change marker: every transaction that adds, deletes or changes the state (or the
time, place, window or relays) of a mailing, or changes a setting or a relay, bumps one
counter as its last write, whoever commits it. An engine reads that counter a few times a
second, and reads what it follows only when the counter moved.

It is done here, by session events, so that no writer can forget it. The bump comes just
before the commit, after every other write of the transaction: the marker's row lock is
the last one taken and held only while committing, so it never joins a lock cycle."""

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, UOWTransaction
from sqlmodel import Session, col

from sendstatus_tui.core.model.models import ChangeMarker, Mailing, Relay, Setting

# a mailing's columns an engine acts on; not its counters, which change with every batch
MAILING_COLUMNS = frozenset({"state", "scheduled_at", "position", "window", "relays", "importing"})
_CHANGED = "sendstatus.changed"  # in Session.info: a followed change awaits its commit
_FOLLOWED_TABLES = {"mailing", "setting", "relay"}


def read(session: Session) -> int:
    """The counter now."""
    counter: int = session.execute(sa.select(col(ChangeMarker.counter))).scalar_one()
    return counter


def _followed(session: Session) -> bool:
    for row in (*session.new, *session.deleted):
        if isinstance(row, (Mailing, Setting, Relay)):
            return True
    for row in session.dirty:
        if isinstance(row, (Setting, Relay)) and session.is_modified(row):
            return True
        if isinstance(row, Mailing):
            attributes = sa.inspect(row).attrs
            if any(attributes[name].history.has_changes() for name in MAILING_COLUMNS):
                return True
    return False


@event.listens_for(Session, "after_flush")
def _note_flushed(session: Session, _context: UOWTransaction) -> None:
    if _followed(session):
        session.info[_CHANGED] = True


@event.listens_for(Session, "do_orm_execute")
def _note_statement(state: ORMExecuteState) -> None:
    """Bulk UPDATE and DELETE statements go by the unit of work: looked at here."""
    if not (state.is_update or state.is_delete):
        return
    statement = state.statement
    if not isinstance(statement, (sa.Update, sa.Delete)):
        return
    table = getattr(statement.table, "name", None)
    if table not in _FOLLOWED_TABLES:
        return
    if isinstance(statement, sa.Update) and table == "mailing":
        touched = set(statement.compile().params)
        if not touched & MAILING_COLUMNS:
            return
    state.session.info[_CHANGED] = True


@event.listens_for(Session, "before_commit")
def _bump(session: Session) -> None:
    session.flush()  # what the commit would flush, noted first
    if session.info.pop(_CHANGED, False):
        session.execute(sa.update(ChangeMarker).values(counter=col(ChangeMarker.counter) + 1))


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_CHANGED, None)
