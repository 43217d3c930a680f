"""One leading engine per database: a lease row with a holder, an expiry and a generation.

The holder renews it while alive; another engine takes it over once it has expired (its
holder died or stalled). Each taking after an expiry starts a new generation, and every write the
leader makes checks, in its own transaction, that the lease is still its generation
(``check``): a leader that stalled past its lease and woke up cannot write any more.
"""

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col

from sendstatus_tui.core.model import audit
from sendstatus_tui.core.model.models import EngineLease, utc_now
from sendstatus_tui.core.store.store import lock_transitions
from sendstatus_tui.core.store.together import Reading, columns_of, read_one, rows_as

LEASE_NAME = "engine"


class LeaseLost(Exception):
    """This engine no longer holds the lease it took: it must not write nor send."""

    def __init__(self, holder: str, generation: int, current: EngineLease | None):
        now_held_by = f"{current.holder} (generation {current.generation})" if current else "nobody"
        super().__init__(
            f"engine {holder} lost the lease of generation {generation}; now held by {now_held_by}"
        )


@dataclass(frozen=True)
class LeaseState:
    held: bool
    holder: str
    expires_at: datetime
    generation: int


def acquire(
    session: Session,
    holder: str,
    ttl: timedelta,
    now: datetime | None = None,
    *,
    expired_by: datetime | None = None,
) -> LeaseState:
    """Takes or renews the lease for ``holder`` unless someone else holds it unexpired.

    A lease counts as expired when it expired by ``expired_by`` (by default now). An
    engine whose writes have just waited long for the database passes the time the wait
    began: the holder could not renew meanwhile either, and must not lose the lease for
    it (nor the generation, when it is the holder). The new expiry counts from ``now``,
    by default the time the row was locked: a renewal that waited for the row is not
    shortened by the wait.

    A renewal locks the row ``FOR NO KEY UPDATE``, which the leader's writes under way
    (``check``: ``FOR KEY SHARE``) do not hold up; a takeover locks it ``FOR UPDATE``
    and so waits for them (the lock order: core/store/locks.py)."""
    _insert_if_missing(session, holder, ttl, now)
    lease = session.get_one(EngineLease, LEASE_NAME, with_for_update={"key_share": True})
    expired_by = min(expired_by or now or utc_now(), now or utc_now())
    if lease.holder == holder and lease.expires_at > expired_by:
        lease.expires_at = (now or utc_now()) + ttl
    elif lease.expires_at <= expired_by:
        # a takeover waits for the writes of the leader it replaces; the row is read
        # again under that lock, and decided on again
        lease = session.get_one(EngineLease, LEASE_NAME, with_for_update=True)
        if lease.expires_at > expired_by:
            return acquire(session, holder, ttl, now, expired_by=expired_by)
        # a new generation, also for the same holder: while it had expired, another engine
        # may have acted on what this holder was doing (it does, in the tests' interleavings)
        if lease.holder != holder:
            detail = f"engine {holder} took the lead from {lease.holder} (stopped or silent)"
            audit.record(session, audit.Change.TAKEOVER, detail=detail, actor=audit.engine())
        lease.holder, lease.expires_at = holder, (now or utc_now()) + ttl
        lease.generation += 1
    else:
        return LeaseState(False, lease.holder, lease.expires_at, lease.generation)
    session.flush()
    return LeaseState(True, holder, lease.expires_at, lease.generation)


def _insert_if_missing(session: Session, holder: str, ttl: timedelta, now: datetime | None) -> None:
    """The lease row, held by ``holder`` (generation 1), unless it exists: two engines
    starting at once insert it once, without a lock that would put the first beat of
    each in the order of the others' transitions."""
    if session.get(EngineLease, LEASE_NAME) is not None:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    values = {
        "name": LEASE_NAME,
        "holder": holder,
        "expires_at": (now or utc_now()) - ttl,  # expired: the first acquire takes it
        "generation": 0,
    }
    session.execute(insert(EngineLease).values(values).on_conflict_do_nothing())


def check(session: Session, holder: str, generation: int) -> None:
    """Raises LeaseLost unless ``holder`` still holds the lease of ``generation``.

    Called first in each of the leader's write transactions: it takes the transitions
    lock, then locks the row ``FOR KEY SHARE`` on PostgreSQL, so that a takeover waits for
    the transaction (on SQLite, BEGIN IMMEDIATE already serialises writers) while renewals
    do not (the lock order: core/store/locks.py)."""
    lock_transitions(session)
    lease = session.get(EngineLease, LEASE_NAME, with_for_update={"read": True, "key_share": True})
    if lease is None or lease.holder != holder or lease.generation != generation:
        raise LeaseLost(holder, generation, lease)


def release(session: Session, holder: str, now: datetime | None = None) -> None:
    """Lets the next engine take over at once (a clean shutdown)."""
    lease = session.get(EngineLease, LEASE_NAME, with_for_update=True)
    if lease is not None and lease.holder == holder:
        lease.expires_at = now or utc_now()
        session.flush()


def current(session: Session) -> EngineLease | None:
    """The lease as stored (detached: to read, not to change), None before any engine."""
    return read_one(session, current_reading())


@functools.cache
def current_reading() -> Reading[EngineLease | None]:
    statement = sa.select(*columns_of(EngineLease)).where(col(EngineLease.name) == LEASE_NAME)
    leases = rows_as(EngineLease)
    return Reading(statement, lambda rows: next(iter(leases(rows)), None))
