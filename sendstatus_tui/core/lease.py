"""One active engine per database: a lease row with a holder and an expiry.

The holder renews it while alive; another engine takes it over once it has expired (its
holder died). A holder that finds the lease taken by someone else must stop sending.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session

from .models import EngineLease, utc_now
from .store import lock_transitions

LEASE_NAME = "engine"


@dataclass(frozen=True)
class LeaseState:
    held: bool
    holder: str
    expires_at: datetime


def acquire(
    session: Session, holder: str, ttl: timedelta, now: datetime | None = None
) -> LeaseState:
    """Takes or renews the lease for ``holder`` unless someone else holds it unexpired."""
    now = now or utc_now()
    lock_transitions(session)  # two engines starting at once must not both insert the row
    lease = session.get(EngineLease, LEASE_NAME, with_for_update=True)
    if lease is None:
        lease = EngineLease(name=LEASE_NAME, holder=holder, expires_at=now + ttl)
        session.add(lease)
    elif lease.holder == holder or lease.expires_at <= now:
        lease.holder, lease.expires_at = holder, now + ttl
    else:
        return LeaseState(False, lease.holder, lease.expires_at)
    session.flush()
    return LeaseState(True, holder, lease.expires_at)


def release(session: Session, holder: str, now: datetime | None = None) -> None:
    """Lets the next engine take over at once (a clean shutdown)."""
    lease = session.get(EngineLease, LEASE_NAME, with_for_update=True)
    if lease is not None and lease.holder == holder:
        lease.expires_at = now or utc_now()
        session.flush()


def current(session: Session) -> EngineLease | None:
    return session.get(EngineLease, LEASE_NAME)
