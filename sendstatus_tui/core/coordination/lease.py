"""One leading engine per database: a lease row with a holder, an expiry and a generation.

The holder renews it while alive; another engine takes it over once it has expired (its
holder died or stalled). Each taking after an expiry starts a new generation, and every write the
leader makes checks, in its own transaction, that the lease is still its generation
(``check``): a leader that stalled past its lease and woke up cannot write any more.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session

from sendstatus_tui.core.model import audit
from sendstatus_tui.core.model.models import EngineLease, utc_now
from sendstatus_tui.core.store.store import lock_transitions

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
    it (nor the generation, when it is the holder)."""
    now = now or utc_now()
    expired_by = min(expired_by or now, now)
    lock_transitions(session)  # two engines starting at once must not both insert the row
    lease = session.get(EngineLease, LEASE_NAME, with_for_update=True)
    if lease is None:
        lease = EngineLease(name=LEASE_NAME, holder=holder, expires_at=now + ttl, generation=1)
        session.add(lease)
    elif lease.holder == holder and lease.expires_at > expired_by:
        lease.expires_at = now + ttl
    elif lease.expires_at <= expired_by:
        # a new generation, also for the same holder: while it had expired, another engine
        # may have acted on what this holder was doing (it does, in the tests' interleavings)
        if lease.holder != holder:
            detail = f"engine {holder} took the lead from {lease.holder} (stopped or silent)"
            audit.record(session, audit.Change.TAKEOVER, detail=detail, actor=audit.engine())
        lease.holder, lease.expires_at = holder, now + ttl
        lease.generation += 1
    else:
        return LeaseState(False, lease.holder, lease.expires_at, lease.generation)
    session.flush()
    return LeaseState(True, holder, lease.expires_at, lease.generation)


def check(session: Session, holder: str, generation: int) -> None:
    """Raises LeaseLost unless ``holder`` still holds the lease of ``generation``.

    Called first in each of the leader's write transactions. The row is locked for share on
    PostgreSQL, so that a takeover waits for the transaction (on SQLite, BEGIN IMMEDIATE
    already serialises writers)."""
    lease = session.get(EngineLease, LEASE_NAME, with_for_update={"read": True})
    if lease is None or lease.holder != holder or lease.generation != generation:
        raise LeaseLost(holder, generation, lease)


def release(session: Session, holder: str, now: datetime | None = None) -> None:
    """Lets the next engine take over at once (a clean shutdown)."""
    lease = session.get(EngineLease, LEASE_NAME, with_for_update=True)
    if lease is not None and lease.holder == holder:
        lease.expires_at = now or utc_now()
        session.flush()


def current(session: Session) -> EngineLease | None:
    return session.get(EngineLease, LEASE_NAME)
