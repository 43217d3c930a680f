"""Recipient bookkeeping for the engine: claim a batch, record what the relay said.

A recipient goes pending -> in_flight (claimed) -> sent | failed | deferred (-> pending
again when its retry time comes, by being claimable). Counters on the mailing change in the
same transaction as the recipients they count. Whatever is in flight when an engine dies is
"in doubt": the next engine puts it back to pending and counts it (it may be sent twice).
"""

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, select

from .models import DeliveryError, Mailing, Recipient, RecipientStatus, UTCDateTime, utc_now

PENDING, IN_FLIGHT, SENT, DEFERRED, FAILED = (
    RecipientStatus.PENDING,
    RecipientStatus.IN_FLIGHT,
    RecipientStatus.SENT,
    RecipientStatus.DEFERRED,
    RecipientStatus.FAILED,
)
ERRORS_KEPT = 50  # per mailing, for the operator


@dataclass(frozen=True)
class Claimed:
    id: int
    email: str
    field_values: str | None
    attempts: int


@dataclass(frozen=True)
class Outcome:
    """What became of one claimed recipient."""

    recipient: Claimed
    status: str  # SENT, FAILED, DEFERRED or PENDING (handed back untried)
    reply: str | None = None
    retry_at: datetime | None = None


def claim(
    session: Session, mailing_id: int, limit: int, now: datetime | None = None
) -> list[Claimed]:
    """Marks up to ``limit`` recipients due for sending as in flight, in id order."""
    now = now or utc_now()
    cursor, mark = _driver_cursor(session)
    # two queries, not one with OR: each walks the (mailing_id, status) index in id order
    # and stops after ``limit`` rows; the OR made SQLite read and sort every recipient of
    # the mailing on each claim (0.3 s for a million)
    try:
        cursor.execute(
            "SELECT id, email, field_values, attempts FROM recipient"
            f" WHERE mailing_id = {mark} AND status = {mark} ORDER BY id LIMIT {mark}",
            (mailing_id, PENDING, limit),
        )
        pending = cursor.fetchall()
    finally:
        cursor.close()
    retries = session.exec(
        select(Recipient.id, Recipient.email, Recipient.field_values, Recipient.attempts)
        .where(
            Recipient.mailing_id == mailing_id,
            Recipient.status == DEFERRED,
            Recipient.next_attempt_at <= now,
        )
        .order_by(Recipient.id)
        .limit(limit)
    ).all()
    rows = sorted([*pending, *retries], key=lambda row: row[0])[:limit] if retries else pending
    if not rows:
        return []
    # ids come from the database as integers: written into the statement, they spare the
    # driver 200 parameters
    ids = ", ".join(str(int(row[0])) for row in rows)
    session.connection().exec_driver_sql(
        f"UPDATE recipient SET status = '{IN_FLIGHT}' WHERE id IN ({ids})"
    )
    if retries:
        claimed_retries = {row[0] for row in retries} & {row[0] for row in rows}
        mailing = session.get(Mailing, mailing_id, with_for_update=True)
        mailing.deferred -= len(claimed_retries)
    return [Claimed(*row) for row in rows]


def record(session: Session, mailing_id: int, outcomes: list[Outcome]) -> None:
    """Writes a batch's outcomes and the mailing's counters, in the caller's transaction."""
    if not outcomes:
        return
    now = utc_now()
    cursor, mark = _driver_cursor(session)
    to_driver = _datetime_to_driver(session)
    try:
        # straight to the driver: SQLAlchemy's executemany cost more than SQLite's work
        cursor.executemany(
            f"UPDATE recipient SET status = {mark}, attempts = attempts + {mark},"
            f" last_reply = {mark}, next_attempt_at = {mark} WHERE id = {mark}",
            [
                (
                    o.status,
                    0 if o.status == PENDING else 1,
                    o.reply,
                    None if o.retry_at is None else to_driver(o.retry_at),
                    o.recipient.id,
                )
                for o in outcomes
            ],
        )
    finally:
        cursor.close()
    counts = Counter(o.status for o in outcomes)
    mailing = session.get(Mailing, mailing_id, with_for_update=True)
    mailing.sent += counts[SENT]
    mailing.failed += counts[FAILED]
    mailing.deferred += counts[DEFERRED]
    mailing.updated_at = now
    errors = [
        DeliveryError(mailing_id=mailing_id, email=o.recipient.email, reply=o.reply, at=now)
        for o in outcomes
        if o.status in (FAILED, DEFERRED) and o.reply
    ]
    session.add_all(errors)
    session.flush()
    if errors:
        _prune_errors(session, mailing_id)


def _driver_cursor(session: Session):
    """A DB-API cursor in the session's transaction, and the driver's parameter marker."""
    connection = session.connection()
    mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    return connection.connection.cursor(), mark


def _datetime_to_driver(session: Session):
    """Converts an aware datetime the way a UTCDateTime column stores it, for the driver."""
    dialect = session.get_bind().dialect
    return UTCDateTime().dialect_impl(dialect).bind_processor(dialect)


def recover_in_flight(session: Session) -> dict[int, int]:
    """After an engine died: puts in-flight recipients back to pending and counts them per
    mailing as in doubt. Returns {mailing id: count}."""
    counts = dict(
        session.exec(
            select(Recipient.mailing_id, sa.func.count())
            .where(Recipient.status == IN_FLIGHT)
            .group_by(Recipient.mailing_id)
        ).all()
    )
    if counts:
        session.execute(
            sa.update(Recipient).where(Recipient.status == IN_FLIGHT).values(status=PENDING)
        )
        for mailing_id, count in counts.items():
            mailing = session.get(Mailing, mailing_id, with_for_update=True)
            mailing.resent_in_doubt += count
        session.flush()
    return counts


def _prune_errors(session: Session, mailing_id: int, keep: int = ERRORS_KEPT) -> None:
    newest = (
        select(DeliveryError.id)
        .where(DeliveryError.mailing_id == mailing_id)
        .order_by(DeliveryError.id.desc())
        .limit(keep)
    )
    session.execute(
        sa.delete(DeliveryError).where(
            DeliveryError.mailing_id == mailing_id,
            DeliveryError.id.not_in(newest.scalar_subquery()),
        )
    )


def last_errors(session: Session, mailing_id: int, limit: int = 10) -> list[DeliveryError]:
    return list(
        session.exec(
            select(DeliveryError)
            .where(DeliveryError.mailing_id == mailing_id)
            .order_by(DeliveryError.id.desc())
            .limit(limit)
        )
    )


def back_off(attempts: int, base: timedelta) -> timedelta:
    """The wait before retry number ``attempts`` (1, 2, ...): doubling, at most an hour."""
    return min(base * (2 ** (attempts - 1)), timedelta(hours=1))
