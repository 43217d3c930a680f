"""Each mailing's outcomes counted per minute, shared by every engine of the database.

An engine adds a batch's counts to the minute it records them in, in the transaction that
writes the outcomes: one upsert per batch. ``INSERT ... ON CONFLICT DO UPDATE`` adds to
the row atomically on SQLite and on PostgreSQL alike, so engines recording into the same
minute at once lose nothing (on PostgreSQL the second waits for the first's row lock, then
adds to what it committed).

The rows are kept for MINUTES_KEPT: the screens read the last hour; a day lets the details
of a mailing sent this morning still draw how it went and how its bounces came back,
while the table stays small (at most 1,440 rows per mailing). The totals are on the
mailing's row for ever.
"""

import functools
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col

from sendstatus_tui.core.model.models import SendMinute, UTCDateTime
from sendstatus_tui.core.store.driver import parameter_mark

MINUTES_KEPT = timedelta(hours=24)

_ADD_OUTCOMES = (
    "INSERT INTO send_minute"
    " (mailing_id, minute, sent, failed, bounced, complained, first_at, last_at)"
    " VALUES ({m}, {m}, {m}, {m}, 0, 0, {m}, {m})"
    " ON CONFLICT (mailing_id, minute) DO UPDATE SET"
    " sent = send_minute.sent + excluded.sent,"
    " failed = send_minute.failed + excluded.failed,"
    " first_at = COALESCE(send_minute.first_at, excluded.first_at),"
    " last_at = excluded.last_at"
)
_ADD_FEEDBACK = (
    "INSERT INTO send_minute (mailing_id, minute, sent, failed, bounced, complained)"
    " VALUES ({m}, {m}, 0, 0, {m}, {m})"
    " ON CONFLICT (mailing_id, minute) DO UPDATE SET"
    " bounced = send_minute.bounced + excluded.bounced,"
    " complained = send_minute.complained + excluded.complained"
)


def minute_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def add_outcomes(session: Session, mailing_id: int, sent: int, failed: int, now: datetime) -> None:
    """Adds ``sent`` and ``failed`` outcomes, recorded ``now``, to their minute."""
    if sent or failed:
        at = _to_driver(session, now)
        minute = _to_driver(session, minute_of(now))
        _execute(session, _ADD_OUTCOMES, (mailing_id, minute, sent, failed, at, at))


def outcomes_statement(
    session: Session, mailing_id: int, sent: int, failed: int, now: datetime
) -> tuple[str, tuple[object, ...]] | None:
    """``add_outcomes``'s statement and its values, for PostgreSQL's driver (``%s``), to
    send along with others; None when there is nothing to add."""
    if not (sent or failed):
        return None
    at = _to_driver(session, now)
    minute = _to_driver(session, minute_of(now))
    return _ADD_OUTCOMES.format(m="%s"), (mailing_id, minute, sent, failed, at, at)


def add_feedback(
    session: Session, mailing_id: int, bounced: int, complained: int, now: datetime
) -> None:
    """Adds bounces (and blocks) and complaints that came back ``now`` to their minute."""
    if bounced or complained:
        minute = _to_driver(session, minute_of(now))
        _execute(session, _ADD_FEEDBACK, (mailing_id, minute, bounced, complained))


def prune(session: Session, now: datetime, keep: timedelta = MINUTES_KEPT) -> int:
    """Deletes the minutes older than ``keep``; returns how many."""
    result = session.connection().execute(
        sa.delete(SendMinute).where(col(SendMinute.minute) < minute_of(now - keep))
    )
    return result.rowcount


def _execute(session: Session, statement: str, values: tuple[object, ...]) -> None:
    # straight to the driver: once per batch, SQLAlchemy's compiling would cost more
    connection = session.connection()
    connection.exec_driver_sql(statement.format(m=parameter_mark(connection.dialect)), values)


def _to_driver(session: Session, moment: datetime) -> object:
    """``moment`` as a UTCDateTime column stores it, for the driver."""
    convert = _bind_processor(session.get_bind().dialect)
    return moment if convert is None else convert(moment)


@functools.cache
def _bind_processor(dialect: sa.Dialect) -> Callable[[Any], Any] | None:
    # made once per dialect: making it costs more than the upsert's own work
    return UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
