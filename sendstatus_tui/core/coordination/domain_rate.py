"""The shared rate of a group of recipient domains, and its slowing down when the provider
throttles us.

Each group (core/model/domain_limits.py) has a NextSlot row ``domain:KEY`` from which every
engine reserves send slots, as from a relay's (coordination/shared_rate.py). A 4xx with an
enhanced status 4.7.x for a recipient of the group (Gmail's 421 4.7.28) halves the group's
rate, in that row, for every engine; it then recovers by RECOVERY per clean minute (a
minute without another such reply) up to the configured rate. A domain in no group is not
slowed (engine/domain_pace.py), and the row of a group no longer configured limits nothing.

The effective rate is a function of the row and the clock, so that recovering needs no
writer: whoever reserves computes it.
"""

import time
from dataclasses import dataclass

from sqlmodel import Session, col, select

from sendstatus_tui.core.coordination.shared_rate import (
    HORIZON_SECONDS,
    ReservedSlots,
    locked_row,
    reserve_ahead,
)
from sendstatus_tui.core.model.models import NextSlot

PREFIX = "domain:"
RECOVERY = 1.10  # the rate's growth per clean minute
MIN_PER_SECOND = 1 / 60  # halving stops at one message a minute
# replies within this long of a halving are its echo (the messages in flight then), not
# another throttling: they do not halve again
SETTLE_SECONDS = 5.0


def row_name(key: str) -> str:
    return f"{PREFIX}{key}"  # keys are at most 25 characters (domain_limits.KEY_LENGTH)


@dataclass(frozen=True)
class Throttle:
    """A group (or a domain) slowed down, as the operator sees it."""

    key: str
    domain: str  # the domain whose reply slowed it
    status: str  # the enhanced status, e.g. 4.7.28
    per_second: float  # its effective rate now
    ceiling: float  # the rate it recovers up to
    since: float  # epoch seconds of the last throttling reply


def effective(row: NextSlot | None, configured: float, now: float) -> float:
    """The rate of a group's row now: its throttled rate recovered so far, up to the
    ceiling noted when it was throttled, then ``configured``."""
    if row is None or row.throttled_per_second is None or row.throttled_at is None:
        return configured
    ceiling = min(configured, row.throttle_ceiling or configured)
    minutes = max(0, int((now - row.throttled_at) // 60))
    recovered = row.throttled_per_second * RECOVERY ** min(minutes, 200)
    if recovered >= ceiling:
        return configured
    return recovered


def reserve(
    session: Session, key: str, configured: float, now: float | None = None
) -> ReservedSlots:
    """About HORIZON_SECONDS of slots of the group ``key`` at its effective rate, in the
    caller's transaction."""
    now = time.time() if now is None else now
    name = row_name(key)
    per_second = effective(locked_row(session, now, name), configured, now)
    return reserve_ahead(session, name, max(1, int(per_second * HORIZON_SECONDS)), per_second, now)


def throttle(
    session: Session,
    key: str,
    domain: str,
    status: str,
    configured: float,
    now: float | None = None,
) -> None:
    """A 4.7.x reply for ``domain`` of the group ``key`` (configured at ``configured``):
    halves the group's effective rate, unless it was halved within SETTLE_SECONDS."""
    now = time.time() if now is None else now
    row = locked_row(session, now, row_name(key))
    current = effective(row, configured, now)
    settling = row.throttled_at is not None and now - row.throttled_at < SETTLE_SECONDS
    if not settling or row.throttled_per_second is None:
        row.throttle_ceiling = configured
        row.throttled_per_second = max(MIN_PER_SECOND, current / 2)
    else:
        row.throttled_per_second = current
    row.throttled_at, row.throttle_status, row.throttled_domain = now, status, domain
    session.add(row)
    session.flush()


def throttles(
    session: Session, configured: dict[str, float], now: float | None = None
) -> list[Throttle]:
    """The groups slowed down now, most recently throttled first; ``configured``: the
    configured rate of each group's key (a row of another key limits nothing)."""
    now = time.time() if now is None else now
    rows = session.exec(
        select(NextSlot)
        .where(col(NextSlot.name).startswith(PREFIX), col(NextSlot.throttled_at).is_not(None))
        .order_by(col(NextSlot.throttled_at).desc())
    ).all()
    found = []
    for row in rows:
        key = row.name.removeprefix(PREFIX)
        if key not in configured:
            continue
        per_second = effective(row, configured[key], now)
        if per_second >= configured[key]:
            continue
        assert row.throttled_at is not None  # selected so
        found.append(
            Throttle(
                key,
                row.throttled_domain or key,
                row.throttle_status or "4.7.x",
                per_second,
                configured[key],
                row.throttled_at,
            )
        )
    return found
